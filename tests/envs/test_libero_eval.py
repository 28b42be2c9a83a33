"""launch/eval_vla.py on LiberoSpatial-v0: a saved (tiny, untrained) VLA evaluated in the real LIBERO simulator,
its env copies stepping in worker processes of .venv-libero while the policy runs in this (the main) venv.

Skipped without the LIBERO venv (`bash scripts/setup.sh --libero`). Slow on the 2-core CPU VM (building a task's
scene takes seconds): one task, one env, two 8-step episodes at 16 px.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not (REPO / ".venv-libero" / "bin" / "python").exists(),
                                reason="no LIBERO venv (.venv-libero): make it with `bash scripts/setup.sh --libero`")


def test_a_saved_policy_is_evaluated_per_task_from_libero_init_states(tmp_path):
    """Two episodes of task 1 (its init states 0 and 1): the summary's counts per task and over all, the episode
    lengths within the time limit, and the evaluated checkpoint named."""
    from launch.eval_vla import main as eval_vla
    from launch.run_config import load_config, typed
    from learner.vla_checkpoint import build_policy, save_vla

    vla = typed(load_config("libero_sft_oft", [])).vla
    checkpoint = save_vla(build_policy(vla, "cpu", 0), vla, tmp_path / "run" / "checkpoints", label="s0")
    assert eval_vla(["libero_sft_oft", f"vla.init_from={tmp_path / 'run'}", "eval.episodes=2", "eval.num_envs=1",
                     "eval_env.workers=1", "env.kwargs.tasks=[1]", "env.kwargs.camera_size=16",
                     "env.max_episode_steps=8"]) == 0
    summary = json.loads((tmp_path / "run" / "eval" / f"{checkpoint.name}.libero-tasks1.json").read_text())
    assert summary["env"] == "LiberoSpatial-v0" and summary["checkpoint"] == str(checkpoint)
    assert summary["episodes"] == 2 and summary["episodes_per_task"] == 2
    assert list(summary["tasks"]) == ["1"] and summary["tasks"]["1"]["episodes"] == 2
    assert summary["tasks"]["1"]["successes"] == sum(summary["libero"]["success"])
    assert summary["libero"]["init_states"] == [0, 1]
    assert all(1 <= n <= 8 for n in summary["libero"]["length"]) and summary["env_steps"] == sum(summary["libero"]["length"])
    assert summary["wall_s"] > 0


def test_an_evaluation_asks_for_at_most_the_50_init_states(tmp_path):
    from actors.vla_evaluator import libero_episodes
    from launch.run_config import load_config, typed

    cfg = typed(load_config("libero_sft_oft", ["env.kwargs.tasks=[0,3]", "eval.episodes=50"]))
    episodes = libero_episodes(cfg)
    assert len(episodes) == 100 and episodes[0] == (0, 0) and episodes[-1] == (3, 49)
    with pytest.raises(ValueError, match="50 init states"):
        libero_episodes(typed(load_config("libero_sft_oft", ["eval.episodes=51"])))
