"""End to end: sync PPO on CartPole-v1 through the real launcher (all roles as processes) solves it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cartpole_ppo_learns(tmp_path):
    """The default preset (100k env steps, about 30 s on 2 cores); eval return >= 475 (of 500) means solved."""
    run_dir = tmp_path / "run"
    command = [sys.executable, str(REPO / "launch" / "run_sync.py"), "cartpole_ppo_mlp", f"runner.run_dir={run_dir}",
               "logging.wandb=disabled", "logging.tensorboard=false",
               "logging.progress_bar=false", "eval.every_updates=100000"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["eval/return_mean"] >= 475, (summary, done.stderr[-3000:])
    assert summary["env_steps"] >= 100_000
