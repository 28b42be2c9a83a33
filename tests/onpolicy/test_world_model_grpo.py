"""GRPO with a tiny random OFT-style VLA inside a tiny world model (WorldModel-v0), through the real launcher
(launch/run_sync.py): configs/worldmodel_grpo_oft.yaml at its CPU size, 8 groups of 2."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.world_model.model import WorldModel
from envs.world_model.vector import WorldModelVectorEnv
from vla_helpers import run_sync

pytest.importorskip("transformers")


@pytest.mark.slow
def test_grpo_runs_groups_inside_the_world_model_and_keeps_only_mixed_groups(tmp_path, calvin_trajectories,
                                                                             tiny_world_model_config):
    torch.manual_seed(0)
    model = WorldModel(tiny_world_model_config())
    # The random classifier's threshold set where about half of 16 envs' episodes see a success frame in their
    # first chunk, so that groups of both kinds occur (all failed, mixed)
    model.config.success_threshold = 1.0
    probe = WorldModelVectorEnv(16, model, calvin_trajectories, held_out_fraction=0.0, device="cpu")
    probe.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (16, 8, 7)).astype(np.float32)
    infos = probe.chunk_step(actions)[-1]
    model.config.success_threshold = float(np.median(np.stack([i["success_prob"] for i in infos], 1).max(1)))
    model.save_pretrained(tmp_path / "wm")
    summary, rows = run_sync("worldmodel_grpo_oft", tmp_path / "run", f"env.kwargs.model={tmp_path / 'wm'}",
                             f"env.kwargs.trajectories={calvin_trajectories}", "env.kwargs.held_out_fraction=0.0",
                             "env.kwargs.device=cpu", "runner.max_env_steps=64")
    learner = summary["roles"]["learner"]["counters"]
    assert summary["env_steps"] >= 64 and learner["learner_steps"] >= 1
    grouped = [r for r in rows if "grpo/groups" in r]
    assert grouped and all(r["grpo/groups"] == 8 for r in grouped)
    for r in grouped:
        # with groups of 2 and reward 5 on success, a group's mean is 0, 2.5 or 5: the (0.5, 4.5) filter keeps
        # exactly the mixed groups
        assert r["grpo/groups_kept"] == 8 - r["grpo/groups_all_fail"] - r["grpo/groups_all_success"]
        assert r["grpo/groups_kept"] + r["grpo/groups_dropped"] == 8
    assert any(r["grpo/groups_kept"] > 0 for r in grouped) and learner["updates"] >= 1
    episodes = [r for r in rows if "env/return" in r]
    # an episode's return is 5 when the classifier saw success (it ended there), else 0 (16 steps)
    assert episodes and all(r["env/return"] == pytest.approx(5.0 * r["env/success_once"]) for r in episodes)
    assert all(0 < r["env/episode_len"] <= 16 for r in episodes)
