"""The asynchronous system learns: Pendulum-v1 through every process, at CI size."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pendulum_sac_learns_through_the_whole_system(tmp_path):
    run_dir = tmp_path / "pendulum"
    # 12k env steps, not fewer: at 8k the policy has just learned to swing up and its final eval still
    # swings between -95 and -250 from run to run (measured: 2 of 4 runs below -240); from ~10k updates on
    # it holds near -95 (4 of 4 runs).
    cmd = [sys.executable, str(REPO / "launch" / "run_async.py"), "pendulum_sac_mlp", f"runner.run_dir={run_dir}",
           "runner.max_env_steps=12000", "policy.hidden=[64,64]", "eval.every_updates=4000",
           "logging.wandb=offline", "logging.console_every_s=10"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] >= 12000
    assert summary["learner_updates"] > 8000
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]
    assert summary["eval/return_mean"] >= -250, f"did not learn: {summary}"
    for name in ("config.yaml", "metrics.jsonl"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "checkpoints").glob("ckpt-*/tensors.safetensors")), "no learner checkpoint"
    assert list((run_dir / "tb").glob("events.*")), "no tensorboard events"
    assert list((run_dir / "wandb").glob("offline-run-*")), "no offline wandb run"
