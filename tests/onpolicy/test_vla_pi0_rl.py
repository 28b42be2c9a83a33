"""pi0 on the CALVIN-style play table (issue 19, training half): PPO with Flow-SDE through the real launcher
processes (launch/run_sync.py), and Flow-Noise through the learner's update in-process."""
from __future__ import annotations

import numpy as np
import pytest

from core import seeding
from envs.calvin.play_table import observation_space
from learner.checkpoint import load_latest_checkpoint
from policies.vla.build import build_vla_policy
from policies.vla.config import VLAConfig
from vla_helpers import run_sync

pytest.importorskip("pybullet")

TINY = dict(model="tiny_pi0", action_chunk=5, pi0_horizon=5, logprob_type="action", instruction="open the drawer",
            lora=False, state_key="robot_obs")
SPACE = observation_space(16, 16)  # the CPU configs' cameras


def test_flow_sde_ppo_trains_a_tiny_pi0_on_the_play_table_and_publishes_only_the_expert_and_heads(tmp_path):
    # Two rollouts of 2 envs x 1 decision of 5 env steps (the processes' start-up is most of the test's time; the
    # first update's metrics reach metrics.jsonl while the second rollout runs); 2 epochs of 1 minibatch of 2
    # decisions each: 4 gradient steps; policy version 1, + 2 updates, + the final one
    summary, rows = run_sync("calvin_ppo_pi0_sde", tmp_path / "run", "runner.seed=1", "runner.max_env_steps=20",
                        "ppo.rollout_len=1")
    learner = summary["roles"]["learner"]["counters"]
    assert summary["env_steps"] == 20 and learner["learner_steps"] == 2 and learner["updates"] == 4
    assert learner["policy_version"] == 4
    assert summary["roles"]["replay"]["counters"]["stale_chunks"] == 0
    trained = [r for r in rows if "train/actor/policy_loss" in r]
    assert trained and all(r["train/actor/ratio_max_dev"] > 0 and r["alarm/ratio_one"] == 0 for r in trained)
    assert all(r["rollout/advantages_abs_max"] > 0 for r in trained)
    # The checkpoint holds what the learner trained and published: the action expert, its projections and the
    # heads, not the frozen VLM prefix; changed from the weights the same config and seed build.
    state, _ = load_latest_checkpoint(tmp_path / "run" / "checkpoints")
    weights = state["algorithm"]["trained"]
    assert weights and not any(".paligemma." in n for n in weights)
    assert any("gemma_expert" in n for n in weights) and any("value_head" in n for n in weights)
    start = build_vla_policy(VLAConfig(**TINY), "cpu", seeding.seed_of(1, "learner"), obs_space=SPACE).trainable_weights()
    assert set(start) == set(weights)
    assert max(float(np.abs(weights[n].numpy() - start[n]).max()) for n in start) > 0


def test_grpo_with_flow_sde_takes_gradient_steps_on_a_mixed_group_of_drawn_subtasks(tmp_path):
    # calvin_grpo_pi0_sde: 1 group of 2 envs, reset with one seed, so both draw unstack_block (the only subtask of
    # the CPU config) from the same start, set up by the expert (a lift and a stack). Under runner.seed=2 the first
    # rollout's group is mixed: one episode knocks the top block off in fewer than 20 steps, the other times out at 20
    # (seeds 0 and 1 give all-success and all-fail groups, which are dropped). The run stops after that rollout:
    # its 7 decisions (3 + 4) in minibatches of 4, 2 epochs: 4 gradient steps.
    summary, rows = run_sync("calvin_grpo_pi0_sde", tmp_path / "run", "runner.seed=2", "runner.max_env_steps=1")
    learner = summary["roles"]["learner"]["counters"]
    assert learner["learner_steps"] == 1 and learner["updates"] == 4
    actor = summary["roles"]["actor-0"]["counters"]
    assert actor["subtask_episodes/unstack_block"] == 2 and actor["subtask_successes/unstack_block"] == 1
    # The two episodes' steps (the time-out's 20 and the knocked-over one's), not the steps stepped after it ended.
    lengths = [r["env/episode_len"] for r in rows if "env/episode_len" in r]
    assert lengths and summary["env_steps"] == round(2 * lengths[-1]) < actor["actor_env_steps"]
    kept = [r for r in rows if "grpo/groups_kept" in r]
    assert all(r["grpo/groups_kept"] == 1 and r["grpo/groups"] == 1 for r in kept)
    state, _ = load_latest_checkpoint(tmp_path / "run" / "checkpoints")
    weights = state["algorithm"]["trained"]
    assert weights and not any(".paligemma." in n for n in weights)
    start = build_vla_policy(VLAConfig(**{**TINY, "instruction": "unstack the blocks"}), "cpu",
                             seeding.seed_of(2, "learner"), obs_space=SPACE).trainable_weights()
    assert set(start) == set(weights)
    changed = [n for n in start if np.abs(weights[n].numpy() - start[n]).max() > 0]
    assert any("gemma_expert" in n for n in changed)
    assert not any("value_head" in n for n in changed)  # GRPO has no critic
