"""End to end: a short GRPO run through the real launcher (group-seeded episode rollouts, no critic)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_grpo_pipeline_runs_rollouts_and_updates(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, str(REPO / "launch" / "run_sync.py"), "cartpole_grpo_mlp", f"runner.run_dir={run_dir}",
               "runner.max_env_steps=3000", "env.num_envs=8", "grpo.group_size=4", "eval.enabled=false",
               "logging.wandb=disabled", "logging.tensorboard=false", "logging.progress_bar=false",
               "logging.console_every_s=0.2"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] >= 3000 and summary["learner_updates"] > 0, summary
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "grpo/groups_kept" in r]
    assert trained and all(r["grpo/groups"] == 2 for r in trained)
