"""Env steps/s of a run as actors spread over more GPUs: how well actor pinning scales.

    python benchmarks/multi_gpu.py [--json] [--config C] [--num-gpus N] [--actors-per-gpu A]
                                   [--seconds S] [--warmup-s W] [--out DIR] [key=value ...]

Each configuration is a whole run (``launch/run_async.py CONFIG``, every process real) of
``--seconds`` once its env steps move (a slow start does not eat into it), with the rate limiter off (``replay.rate_limit.updates_per_step=0``) so that the
actors run as fast as their GPUs and CPUs let them while the learner trains beside them, and no
evaluator. Two layouts on a machine with N GPUs:

* ``separate``: the learner alone on GPU 0, ``A`` actors on each of GPUs 1..k, for k = 1 .. N-1;
* ``collocated``: the learner on GPU 0, ``A`` actors on each of GPUs 0..k-1, for k = 1 .. N.

Env steps/s is the replay service's stored-steps counter over the part of the run after
``--warmup-s`` (process start, first weights, CUDA and renderer start-up excluded), from the run's
``metrics.jsonl``. ``scaling_efficiency`` of a layout at k GPUs = steps/s at k / (k x steps/s at
k = 1), same machine, same session (goal: >= 0.85).

Writes ``DIR/summary.json`` (``num_gpus``, ``device``, every configuration's env steps/s and
learner updates/s, ``scaling_efficiency``) and, with ``--json``, prints it as the last line.
Without GPUs (``--num-gpus 0``) it runs one configuration per layout with every process on the
CPU: a smoke test of the script, not a measurement.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.harness import describe_machine, machine_info  # noqa: E402


def gpu_count() -> int:
    try:
        import torch
        return torch.cuda.device_count()
    except ImportError:
        return 0


def layouts(num_gpus: int) -> list[tuple[str, int, str, list[str]]]:
    """(layout, k, learner device, actor devices, one per actor GPU) for every configuration measured."""
    if num_gpus == 0:
        return [("separate", 1, "cpu", ["cpu"]), ("collocated", 1, "cpu", ["cpu"])]
    runs = [("separate", k, "cuda:0", [f"cuda:{g}" for g in range(1, k + 1)]) for k in range(1, num_gpus)]
    runs += [("collocated", k, "cuda:0", [f"cuda:{g}" for g in range(k)]) for k in range(1, num_gpus + 1)]
    return runs


def first_move(metrics_path: Path, key: str) -> float | None:
    """wall_s of the first metrics.jsonl record in which counter `key` is above 0, or None (yet)."""
    if not metrics_path.exists():
        return None
    for line in metrics_path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the line being written
            continue
        if row.get(key, 0) > 0:
            return float(row["wall_s"])
    return None


def steady_rate(metrics_path: Path, warmup_s: float, key: str) -> float:
    """Growth per second of a counter in metrics.jsonl after the warm-up, and after the counter first moved: on a
    loaded machine the processes may still be starting when the warm-up ends."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if key in r]
    moved = next((r["wall_s"] for r in rows if r[key] > 0), float("inf"))
    after_move = [r for r in rows if r.get("wall_s", 0) >= max(warmup_s, moved)]
    # A counter that moved too late to give two records (the learner's, in a short run) is measured from the
    # warm-up's end, where it may well be 0.
    rows = after_move if len(after_move) >= 2 else [r for r in rows if r.get("wall_s", 0) >= warmup_s]
    if len(rows) < 2 or rows[-1]["wall_s"] <= rows[0]["wall_s"]:
        raise RuntimeError(f"{metrics_path}: fewer than two '{key}' records after {warmup_s} s; run longer")
    return (rows[-1][key] - rows[0][key]) / (rows[-1]["wall_s"] - rows[0]["wall_s"])


def measure(config: str, learner_device: str, actor_devices: list[str], actors_per_gpu: int, seconds: float,
            warmup_s: float, overrides: list[str], run_dir: Path) -> dict:
    devices = [d for d in actor_devices for _ in range(actors_per_gpu)]
    # The run ends (Ctrl-C, its normal stop) once `seconds - warmup_s` have passed after the later of the
    # warm-up and the first env step: on a loaded machine the processes can take longer to start than the
    # warm-up, and a fixed wall-clock limit would then measure nothing. max_wall_s is only a backstop.
    cmd = [sys.executable, str(REPO / "launch" / "run_async.py"), config, f"runner.run_dir={run_dir}",
           f"runner.max_wall_s={seconds + 600}", "runner.max_env_steps=1000000000", "runner.log_every_s=1", "logging.console_every_s=2",
           "replay.rate_limit.updates_per_step=0", "eval.enabled=false", "logging.wandb=disabled",
           f"learner.device={learner_device}", f"actor.num_actors={len(devices)}",
           f"actor.devices=[{','.join(devices)}]", *overrides]
    started = time.time()
    with tempfile.TemporaryFile("w+") as err:
        run = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, text=True)
        measured_from = None
        while run.poll() is None and time.time() - started < seconds + 1200:
            time.sleep(0.5)
            if measured_from is None:
                moved = first_move(run_dir / "metrics.jsonl", "env_steps")
                if moved is not None:
                    measured_from = time.time() + max(0.0, warmup_s - moved)
            elif time.time() - measured_from >= seconds - warmup_s:
                run.send_signal(signal.SIGINT)
                break
        code = run.wait(timeout=600)
        if code not in (0, 130):  # 130: stopped by the SIGINT above
            err.seek(0)
            raise RuntimeError(f"run failed ({' '.join(cmd)}):\n{err.read()[-3000:]}")
    return {"actors": len(devices), "learner_device": learner_device, "actor_devices": actor_devices,
            "env_steps_per_s": round(steady_rate(run_dir / "metrics.jsonl", warmup_s, "env_steps"), 1),
            "learner_updates_per_s": round(steady_rate(run_dir / "metrics.jsonl", warmup_s, "updates"), 1),
            "wall_s": round(time.time() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="frankasim_sac_cnn")
    parser.add_argument("--num-gpus", type=int, default=None, help="GPUs to use (default: all visible)")
    parser.add_argument("--actors-per-gpu", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=120.0, help="wall time of each configuration's run")
    parser.add_argument("--warmup-s", type=float, default=45.0, help="start of the measured part of each run")
    parser.add_argument("--out", default="docs/results/multi_gpu", help="directory for summary.json")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line last")
    args, overrides = parser.parse_known_args()
    if args.warmup_s >= args.seconds:
        parser.error(f"--warmup-s ({args.warmup_s}) must be shorter than --seconds ({args.seconds})")
    num_gpus = gpu_count() if args.num_gpus is None else args.num_gpus
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="multi-gpu-") as scratch:
        for layout, k, learner_device, actor_devices in layouts(num_gpus):
            name = f"{layout} k={k}"
            print(f"{name}: learner on {learner_device}, {args.actors_per_gpu} actor(s) on each of "
                  f"{', '.join(actor_devices)}; {args.seconds:.0f} s ...", flush=True)
            results[name] = {"layout": layout, "k": k, **measure(
                args.config, learner_device, actor_devices, args.actors_per_gpu, args.seconds, args.warmup_s,
                overrides, Path(scratch) / name.replace(" ", "_").replace("=", ""))}
            print(f"  {results[name]['env_steps_per_s']:,.1f} env steps/s, "
                  f"{results[name]['learner_updates_per_s']:,.1f} learner updates/s", flush=True)
    efficiency = {}
    for name, row in results.items():
        one = results.get(f"{row['layout']} k=1")
        if one and one["env_steps_per_s"] > 0:
            efficiency[name] = round(row["env_steps_per_s"] / (row["k"] * one["env_steps_per_s"]), 3)
    summary = {"benchmark": "multi_gpu", "config": args.config, "num_gpus": num_gpus,
               "actors_per_gpu": args.actors_per_gpu, "seconds_per_run": args.seconds, "warmup_s": args.warmup_s,
               "overrides": overrides, "device": describe_machine(machine_info()), "results": results,
               "scaling_efficiency": efficiency}
    print(f"\n{'configuration':<16} {'actors':>6} {'env steps/s':>12} {'updates/s':>10} {'scaling':>8}")
    for name, row in results.items():
        print(f"{name:<16} {row['actors']:>6} {row['env_steps_per_s']:>12,.1f} {row['learner_updates_per_s']:>10,.1f} "
              f"{efficiency.get(name, float('nan')):>8.3f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
