"""The main job's pipeline on the CPU: frankasim_sac_cnn through every process, at smoke-test size."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from wire import shared_memory

REPO = Path(__file__).resolve().parents[2]


def test_frankasim_sac_cnn_runs_end_to_end_on_cpu(tmp_path):
    run_dir = tmp_path / "cnn"
    cmd = [sys.executable, str(REPO / "launch" / "run_async.py"), "frankasim_sac_cnn", f"runner.run_dir={run_dir}",
           "runner.max_env_steps=320", "actor.num_actors=1", "env.num_envs=2", "actor.device=cpu",
           "learner.device=cpu", "learner.compile=false", "actor.random_steps=64", "replay.min_size=128", "replay.capacity_gb=0.1",
           "replay.rate_limit.updates_per_step=0.02", "sac.batch_size=8", "sac.critic_actor_ratio=2",
           "learner.publish_every=1", "eval.every_updates=1000000", "eval.episodes=1", "eval.num_envs=1",
           "eval.video=true", "env.max_episode_steps=20", "logging.wandb=disabled", "logging.console_every_s=10"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] >= 320
    assert summary["learner_updates"] >= 2, summary
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]
    assert summary["eval/episodes"] == 1
    assert list((run_dir / "checkpoints").iterdir()), "no checkpoint written"
    assert list((run_dir / "videos").glob("*.png")), "no eval frames rendered"
    log = (run_dir / "logs" / "replay.log").read_text()
    assert "bytes per transition" in log  # the buffer reports its memory per transition and capacity
    if shared_memory.available():  # camera chunks went through the actor's shared-memory slots, none left behind
        assert "chunks go through shared memory" in (run_dir / "logs" / "actor-0.log").read_text()
        run_id = yaml.safe_load((run_dir / "config.yaml").read_text())["runner"]["run_id"]
        assert not list(shared_memory.SEGMENT_DIR.glob(f"zarl-{run_id}-*"))
