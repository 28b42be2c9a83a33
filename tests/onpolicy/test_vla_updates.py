"""The VLA's PPO and GRPO updates (learner/vla.py) on a tiny random OpenVLA, the loss pieces they share with the
MLP's (learner/ppo.py), the dead-signal alarms (learner/alarms.py) and the rollout actor's chunk execution."""
from __future__ import annotations

import logging
import types

import gymnasium as gym
import numpy as np
import pytest
import torch

from actors.rollout_actor import RolloutActor
from envs.maniskill.put_on_plate import encode_instruction
from envs.vector import SyncVectorEnv
from learner.alarms import DeadSignalAlarms
from learner.configs import GRPOConfig, PPOConfig
from learner.ppo import ratio_loss
from learner.vla import VLAGRPO, VLAPPO
from policies.vla.build import build_vla_policy
from policies.vla.config import VLAConfig

INSTRUCTIONS = ["put the red cube on the plate", "put the blue sphere on the plate"]


def obs_batch(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"base_camera": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            "instruction": np.array([encode_instruction(INSTRUCTIONS[i % 2]) for i in range(n)], np.uint8).reshape(n, 64)}


def tiny_policy(decoding: str = "autoregressive", chunk: int = 1, seed: int = 3):
    cfg = VLAConfig(model="tiny_openvla", decoding=decoding, action_chunk=chunk, lora_rank=4, lora_alpha=8,
                    value_lr=3e-3)
    return cfg, build_vla_policy(cfg, "cpu", seed)


def torch_tree(x):
    return {k: torch.as_tensor(v) for k, v in x.items()} if isinstance(x, dict) else torch.as_tensor(x)


def ppo_rollout(policy, n: int, t: int, terminated, truncated, rewards) -> dict:
    """A rollout in replay/rollout_store.py's layout, acted by `policy` on random images."""
    obs = obs_batch(n * t)
    tokens, log_probs = policy.sample(obs)
    steps = {"obs": {k: v.reshape(n, t, *v.shape[1:]) for k, v in obs.items()},
             "action": tokens.reshape(n, t, -1), "log_prob": log_probs.reshape(n, t, -1),
             "reward": np.asarray(rewards, np.float32).reshape(n, t),
             "terminated": np.asarray(terminated, bool).reshape(n, t),
             "truncated": np.asarray(truncated, bool).reshape(n, t)}
    ended = [(b, s) for b in range(n) for s in range(t) if steps["terminated"][b, s] or steps["truncated"][b, s]]
    finals = {"obs": obs_batch(len(ended), seed=1), "index": np.asarray(ended, np.int32).reshape(-1, 2)}
    return {"steps": {k: torch_tree(v) for k, v in steps.items()},
            "finals": {"obs": torch_tree(finals["obs"]), "index": torch.as_tensor(finals["index"])},
            "envs": {"last_obs": torch_tree(obs_batch(n, seed=2))}}


def test_first_ratio_is_one_with_the_behaviour_log_probs():
    cfg, policy = tiny_policy()
    algo = VLAPPO(policy, PPOConfig(epochs=1, minibatch_size=4), cfg)
    rollout = ppo_rollout(policy, 2, 2, np.zeros(4), np.zeros(4), np.zeros(4))
    data, _ = algo.prepare(rollout)
    idx = torch.arange(4)
    # The actors' sampled log-probs against the learner's teacher-forced pass: equal up to float rounding.
    _, stats, _, _ = algo.policy_loss(data, idx, torch.ones(4))
    assert stats["train/actor/ratio_max_dev"].item() < 1e-4
    # Identical log-probs give a ratio of exactly 1 (what the ratio-one alarm looks for).
    with torch.no_grad():
        data["log_prob"] = policy.evaluate({k: v[idx] for k, v in data["obs"].items()}, data["action"]).log_probs
    _, stats, _, _ = algo.policy_loss(data, idx, torch.ones(4))
    assert stats["train/actor/ratio_max_dev"].item() == 0.0


def test_bootstrap_on_truncation_only_never_on_termination():
    cfg, policy = tiny_policy()
    gamma = 0.9
    algo = VLAPPO(policy, PPOConfig(gamma=gamma, gae_lambda=1.0), cfg)
    # env 0 succeeded (terminated) at step 0, env 1 timed out (truncated) at step 0; one step each
    rollout = ppo_rollout(policy, 2, 1, [True, False], [False, True], [1.0, 0.5])
    data, _ = algo.prepare(rollout)
    obs = {k: val.reshape(2, *val.shape[2:]) for k, val in rollout["steps"]["obs"].items()}
    values, finals = policy.values(obs), policy.values(rollout["finals"]["obs"])
    expected = torch.tensor([1.0 - values[0], 0.5 + gamma * finals[1] - values[1]])
    torch.testing.assert_close(data["advantage"], expected, rtol=1e-5, atol=1e-6)
    assert finals[0].abs().item() > 0  # the terminated env's final value existed and was not used


def test_ppo_update_trains_only_lora_and_the_value_head_at_its_own_rate():
    cfg, policy = tiny_policy(decoding="parallel", chunk=8)
    ppo = PPOConfig(epochs=2, minibatch_size=2, lr=1e-3, clip_high=0.28, dual_clip=3.0)
    algo = VLAPPO(policy, ppo, cfg)
    before = policy.trainable_weights()
    assert before and all("lora_" in n or "value_head" in n for n in before)
    rollout = ppo_rollout(policy, 2, 2, np.zeros(4), [False, True, False, True], [0.0, 1.0, 0.5, 0.0])
    metrics = algo.train(rollout)
    assert algo.gradient_steps == 4 and metrics["train/actor/ratio_max_dev"] > 0
    lrs = sorted(g["lr"] for g in algo.optimizer.param_groups)
    assert lrs == pytest.approx([1e-3, 3e-3])
    after = policy.trainable_weights()
    assert set(after) == set(before) and set(algo.acting_weights()) == set(before)
    assert max(np.abs(after[n] - before[n]).max() for n in before) > 0
    frozen = [n for n, p in policy.model.named_parameters() if not p.requires_grad]
    assert frozen  # the base model stays frozen and unpublished


def grpo_rollout(policy, returns, successes, t: int = 2) -> dict:
    n = len(returns)
    rollout = ppo_rollout(policy, n, t, np.zeros(n * t), np.zeros(n * t), np.zeros(n * t))
    rollout["steps"]["valid"] = torch.ones(n, t, dtype=torch.bool)
    rollout["envs"].update(episode_return=torch.tensor(returns, dtype=torch.float32),
                           episode_success=torch.tensor(successes), episode_length=torch.full((n,), t))
    return rollout


def test_grpo_drops_uniform_groups_counts_them_and_trains_on_the_rest():
    cfg, policy = tiny_policy()
    algo = VLAGRPO(policy, GRPOConfig(group_size=2, epochs=1, minibatch_size=8, lr=1e-3), cfg)
    before = policy.trainable_weights()
    # groups: all failed, all succeeded, mixed
    rollout = grpo_rollout(policy, [0.0, 0.0, 1.0, 1.0, 0.0, 1.0], [False, False, True, True, False, True])
    metrics = algo.train(rollout)
    assert metrics["grpo/groups"] == 3 and metrics["grpo/groups_kept"] == 1 and metrics["grpo/groups_dropped"] == 2
    assert metrics["grpo/groups_all_fail"] == 1 and metrics["grpo/groups_all_success"] == 1
    assert metrics["grpo/steps_trained"] == 4 and metrics["rollout/advantages_abs_max"] == pytest.approx(1.0)
    assert algo.gradient_steps == 1
    after = policy.trainable_weights()
    assert max(np.abs(after[n] - before[n]).max() for n in before) > 0


def test_grpo_with_every_group_uniform_makes_no_step():
    cfg, policy = tiny_policy()
    algo = VLAGRPO(policy, GRPOConfig(group_size=2), cfg)
    metrics = algo.train(grpo_rollout(policy, [0.0, 0.0], [False, False]))
    assert algo.gradient_steps == 0 and metrics["grpo/groups_dropped"] == 1
    assert metrics["rollout/advantages_abs_max"] == 0.0 and "train/actor/ratio_max_dev" not in metrics


def test_ratio_loss_asymmetric_and_dual_clip():
    def loss(ratio, adv, **kw):
        return ratio_loss(torch.log(torch.tensor([ratio])), torch.zeros(1), torch.tensor([adv]), 0.2, **kw)[0].item()

    assert loss(1.5, 1.0, clip_high=0.28) == pytest.approx(-1.28)  # upper clip at 1 + clip_high
    assert loss(1.5, 1.0) == pytest.approx(-1.2)  # symmetric without it
    assert loss(0.5, -1.0, clip_high=0.28) == pytest.approx(0.8)  # lower clip at 1 - clip
    assert loss(5.0, -1.0, clip_high=0.28) == pytest.approx(5.0)
    assert loss(5.0, -1.0, clip_high=0.28, dual_clip=3.0) == pytest.approx(3.0)  # capped at -c * A
    assert loss(5.0, 1.0, clip_high=0.28, dual_clip=3.0) == pytest.approx(-1.28)  # dual clip: negative A only


def test_dead_signal_alarms_count_and_flag():
    alarms = DeadSignalAlarms(after=2, log=logging.getLogger("test"))
    dead = {"train/actor/ratio_max_dev": 0.0, "rollout/advantages_abs_max": 0.0}
    out = alarms.observe(dead, episodes_done=2, episodes_succeeded=0)
    assert out["alarm/ratio_one_updates"] == 1 and out["alarm/ratio_one"] == 0
    out = alarms.observe(dead, episodes_done=2, episodes_succeeded=0)
    assert out["alarm/ratio_one"] == out["alarm/zero_advantage"] == out["alarm/no_success"] == 1
    # not measurable (one gradient step; no episode ended): the streaks hold
    out = alarms.observe({"rollout/advantages_abs_max": 0.0}, episodes_done=0, episodes_succeeded=0)
    assert out["alarm/ratio_one_updates"] == 2 and out["alarm/no_success_rollouts"] == 2
    assert out["alarm/zero_advantage_updates"] == 3
    out = alarms.observe({"train/actor/ratio_max_dev": 0.01, "rollout/advantages_abs_max": 0.3}, 2, 1)
    assert out["alarm/ratio_one"] == out["alarm/zero_advantage"] == out["alarm/no_success"] == 0
    assert out["alarm/ratio_one_updates"] == out["alarm/zero_advantage_updates"] == out["alarm/no_success_rollouts"] == 0


def test_a_chunk_runs_as_env_steps_with_rewards_summed_to_the_episode_end():
    def env():
        return SyncVectorEnv([lambda: gym.make("Pendulum-v1", max_episode_steps=5) for _ in range(2)])

    actor = RolloutActor.__new__(RolloutActor)  # only _step_chunk's env is needed
    actor.env, reference = env(), env()
    actor.env.reset(seed=7)
    reference.reset(seed=7)
    actions = np.random.default_rng(0).uniform(-1, 1, (2, 3, 1)).astype(np.float32)
    actor._step_chunk(actions)  # steps 1-3
    _, reward, terminated, truncated, info = actor._step_chunk(actions)  # steps 4, 5 (episode ends), 6 (next episode)
    rewards = [reference.step(actions[:, k % 3])[1] for k in range(5)]
    np.testing.assert_allclose(reward, rewards[3] + rewards[4], rtol=1e-6)
    assert truncated.all() and not terminated.any() and info["done"].all()
    np.testing.assert_array_equal(info["executed"], [2, 2])
    np.testing.assert_allclose(info["episode_return"], np.sum(rewards, axis=0), rtol=1e-5)
