"""The benchmark scripts run end to end with tiny settings and print their JSON line last.

Not timing assertions: speed targets are checked by reading the scripts' ratios, not by tests. What is
checked is that each script works (real processes, sockets and buffers), reports every figure its
README promises, and that the figures are sane numbers.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A learner that costs little, so that the short runs measure something on a busy machine.
TINY_SAC = ["policy.hidden=[32,32]", "sac.batch_size=32", "runner.log_every_s=0.1"]


def run_script(*args: str, timeout: float = 120.0) -> dict:
    """Runs a benchmark script; returns the JSON object on its last line of output."""
    done = subprocess.run([sys.executable, *args, "--json"], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    last = done.stdout.strip().splitlines()[-1]
    return json.loads(last)


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_replay_benchmark_reports_rates_and_image_memory():
    result = run_script("benchmarks/replay.py", "--seconds", "0.05", "--rounds", "1", "--vision-mb", "20",
                        "--state-capacity", "2000")
    assert result["benchmark"] == "replay"
    assert set(result["results"]) == {"pendulum", "franka_state", "franka_vision"}
    for figures in result["results"].values():
        for key in ("insert_chunks_per_s", "insert_transitions_per_s", "insert_vs_memcpy", "sample_batches_per_s",
                    "sample_transitions_per_s", "sample_vs_gather", "sample_vs_memcpy"):
            assert positive(figures[key]), (key, figures)
    memory = result["image_memory"]
    assert memory["raw_frame_bytes"] == 2 * 128 * 128 * 3
    # Observations are stored once: a little more than the frames, about half an (s, a, r, s') table.
    assert 1.0 < memory["bytes_vs_raw_frames"] < 1.1
    assert memory["bytes_vs_sars_table"] < 0.6


def test_actor_throughput_benchmark_measures_both_sides_and_plots(tmp_path):
    out = tmp_path / "actors.json"
    result = run_script("benchmarks/actor_throughput.py", "--configs", "pendulum_sac_mlp", "--actors", "1",
                        "--chunk-lens", "16", "--seconds", "1.0", "--rounds", "1", "--out", str(out), *TINY_SAC)
    assert result["benchmark"] == "actor_throughput"
    assert list(result["efficiency"]) == ["pendulum_sac_mlp N=1 chunk=16"]
    (row,) = result["results"]
    for key in ("system_env_steps_per_s", "bare_env_steps_per_s", "efficiency", "cpu_efficiency",
                "system_learner_updates_per_s", "bare_learner_updates_per_s"):
        assert positive(row[key]), (key, row)
    assert json.loads(out.read_text()) == result
    plotted = subprocess.run([sys.executable, "benchmarks/plot_scaling.py", str(out)], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert plotted.returncode == 0, plotted.stderr
    assert out.with_suffix(".png").stat().st_size > 1000


def test_learner_throughput_benchmark_measures_both_sides():
    result = run_script("benchmarks/learner_throughput.py", "--configs", "pendulum_sac_mlp", "--seconds", "1.0",
                        "--rounds", "1", *TINY_SAC)
    assert result["benchmark"] == "learner_throughput"
    (row,) = result["results"]
    assert row["device"] == "cpu" and row["batch_size"] == 32
    for key in ("system_updates_per_s", "bare_updates_per_s", "efficiency", "cpu_efficiency"):
        assert positive(row[key]), (key, row)


def test_transport_benchmark_reports_every_method():
    result = run_script("benchmarks/transport.py", "--seconds", "0", "--chunks", "1", "--rounds", "1")
    for key in ("GBps", "GBps_shm", "GBps_ipc", "GBps_tcp", "memcpy_GBps", "ratio_vs_memcpy", "ratio_vs_memcpy_frames",
                "speedup_vs_pickle_lz4", "speedup_vs_torch_save", "speedup_vs_pickle_lz4_frames",
                "speedup_vs_torch_save_frames", "raw_frames_GBps", "pickle_lz4_GBps", "torch_save_GBps"):
        assert positive(result[key]), (key, result)
    assert result["bytes_per_chunk"] == 256 * (2 * 128 * 128 * 3 + 7 * 4 + 4 * 4 + 4 + 1)
    assert result["GBps"] == max(result["GBps_shm"], result["GBps_ipc"], result["GBps_tcp"])


def test_multi_gpu_benchmark_writes_its_summary_without_gpus(tmp_path):
    result = run_script("benchmarks/multi_gpu.py", "--config", "pendulum_sac_mlp", "--num-gpus", "0", "--seconds", "8",
                        "--warmup-s", "3", "--out", str(tmp_path), *TINY_SAC, timeout=300)
    assert result["num_gpus"] == 0 and set(result["results"]) == {"separate k=1", "collocated k=1"}
    for row in result["results"].values():
        assert positive(row["env_steps_per_s"]) and row["actors"] == 2, row
    assert result["scaling_efficiency"] == {"separate k=1": 1.0, "collocated k=1": 1.0}
    assert json.loads((tmp_path / "summary.json").read_text()) == result


def test_env_speed_benchmark_reports_physics_and_env_rates():
    result = run_script("benchmarks/env_speed.py", "--seconds", "0.5")
    for key in ("mj_step_per_s", "state_steps_per_s", "state_efficiency"):
        assert positive(result[key]), (key, result)


def test_snapshot_stall_benchmark_compares_inline_and_background_snapshots(tmp_path):
    result = run_script("benchmarks/snapshot_stall.py", "--mb", "20", "--dir", str(tmp_path))
    assert set(result["results"]) == {"inline", "background"}
    for figures in result["results"].values():
        for key in ("snapshot_s", "longest_gap_s", "idle_batches_per_s", "serving_ratio"):
            assert positive(figures[key]), (key, figures)
    assert positive(result["stall_ratio"])
    assert len(list((tmp_path / "background").glob("snapshot-*"))) == 1  # the child's snapshot is complete
