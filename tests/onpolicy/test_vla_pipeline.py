"""End to end on ZarlPutOnPlate-v1 with a tiny random OpenVLA through the real launcher (launch/run_sync.py): PPO
with autoregressive decoding (7 tokens a step), GRPO with OFT's parallel decoding (a chunk of 8 actions a step)."""
from __future__ import annotations

import numpy as np
import pytest

from core import seeding
from learner.checkpoint import load_latest_checkpoint
from policies.vla.build import build_vla_policy
from policies.vla.config import VLAConfig
from vla_helpers import run_sync

pytest.importorskip("mani_skill")


@pytest.mark.slow
def test_ppo_trains_a_tiny_openvla_and_publishes_only_lora_and_value_head(tmp_path):
    summary, rows = run_sync("maniskill_ppo_openvla", tmp_path / "run", "runner.seed=1")
    learner = summary["roles"]["learner"]["counters"]
    # 3 rollouts of 2 envs x 4 steps, 2 epochs of 2 minibatches each: 12 gradient steps; version 1 + 3 updates + final
    assert summary["env_steps"] == 24 and learner["learner_steps"] == 3 and learner["updates"] == 12
    assert learner["policy_version"] == 5
    # every rollout trained on was acted with the version it was asked for (the store drops any other as stale):
    # the actor loaded each published version
    assert summary["roles"]["replay"]["counters"]["stale_chunks"] == 0
    trained = [r for r in rows if "train/actor/policy_loss" in r]
    assert trained and all("alarm/ratio_one" in r for r in trained)
    assert all(r["alarm/ratio_one"] == 0 and r["train/actor/ratio_max_dev"] > 0 for r in trained)
    # The learner's checkpoint holds what it trained and published: LoRA adapters and the value head, changed
    # from the weights the same config and seed build.
    state, _ = load_latest_checkpoint(tmp_path / "run" / "checkpoints")
    weights = state["algorithm"]["trained"]
    assert weights and all("lora_" in n or "value_head" in n for n in weights)
    cfg = VLAConfig(model="tiny_openvla", lora_rank=4, lora_alpha=8)
    start = build_vla_policy(cfg, "cpu", seeding.seed_of(1, "learner")).trainable_weights()
    assert set(start) == set(weights)
    assert max(float(np.abs(weights[n].numpy() - start[n]).max()) for n in start) > 0


@pytest.mark.slow
def test_grpo_oft_runs_whole_group_episodes_and_raises_the_dead_signal_alarms(tmp_path):
    # A random tiny VLA never grasps: every group's returns are equal (all failed), so every group is dropped,
    # no gradient step is taken, and the zero-advantage and no-success alarms go up (after 1 rollout here; the
    # counting over K rollouts is test_vla_updates.py's).
    summary, rows = run_sync("maniskill_grpo_oft", tmp_path / "run", "grpo.dead_signal_after=1",
                        "runner.max_env_steps=32")
    learner = summary["roles"]["learner"]["counters"]
    assert summary["env_steps"] == 32 and learner["learner_steps"] == 2 and learner["updates"] == 0
    assert learner["policy_version"] == 4  # published after every rollout even without a gradient step
    grouped = [r for r in rows if "grpo/groups" in r]
    assert grouped and all(r["grpo/groups"] == 1 and r["grpo/groups_dropped"] == 1 and r["grpo/groups_all_fail"] == 1
                           for r in grouped)
    assert all(r["env/episode_len"] == 8 for r in rows if "env/episode_len" in r)  # one 8-action chunk per episode
    # (metrics rows are written at the monitor's pace: the last update's may miss the file, so no row is singled out)
    assert all(r["alarm/zero_advantage"] == 1 and r["alarm/no_success"] == 1 for r in grouped)
    assert all(r["alarm/zero_advantage_updates"] >= 1 and r["alarm/no_success_rollouts"] >= 1 for r in grouped)
    assert all(r["alarm/ratio_one_updates"] == 0 for r in grouped)  # no gradient step: the ratio is not measured
