"""GRPO: advantages are scores z-scored inside each group; uniform groups are dropped."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from actors.rollout_actor import reset_groups
from core.config import EnvConfig
from policies.config import PolicyConfig
from envs import make_vector_env
from learner.grpo import GRPO, GRPOConfig, group_advantages


def test_group_advantages_by_hand():
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0,   # mean 2.5, population std sqrt(1.25)
                           5.0, 5.0, 5.0, 5.0,   # all equal: no signal, dropped
                           0.0, 1.0, 1.0, 0.0])  # successes: mean .5, std .5
    adv, keep = group_advantages(scores, group_size=4)
    s = math.sqrt(1.25)
    np.testing.assert_allclose(adv.numpy(), [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s, 0, 0, 0, 0, -1, 1, 1, -1], rtol=1e-6)
    assert keep.tolist() == [True] * 4 + [False] * 4 + [True] * 4


def test_all_fail_and_all_success_groups_are_dropped():
    success = torch.tensor([0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1], dtype=torch.bool)
    adv, keep = group_advantages(success, group_size=3)
    assert keep.tolist() == [False] * 3 + [False] * 3 + [False] * 3 + [True] * 3
    assert adv[:9].abs().sum() == 0
    adv, keep = group_advantages(success, group_size=3, filter_uniform=False)
    assert keep.all() and adv[:9].abs().sum() == 0


def test_the_mean_score_bounds_keep_only_groups_inside_them():
    # RLinf's world-model filter: reward 5 on success, groups of 2, keep means in (0.5, 4.5)
    scores = torch.tensor([0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 5.0, 0.0])
    _, keep = group_advantages(scores, group_size=2, mean_low=0.5, mean_high=4.5)
    assert keep.tolist() == [False, False, True, True, False, False, True, True]
    _, keep = group_advantages(torch.tensor([0.0, 1.0, 4.0, 5.0]), group_size=2, filter_uniform=False, mean_low=0.5)
    assert keep.tolist() == [False, False, True, True]  # mean 0.5 is not above 0.5


def test_grpo_trains_only_on_valid_steps_of_kept_groups():
    import gymnasium as gym

    cfg = OmegaConf.structured(PolicyConfig(hidden=[8], layer_norm=False))
    from policies.actor_critic import ActorCritic

    model = ActorCritic(gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(2), cfg, with_critic=False)
    grpo = GRPO(model, GRPOConfig(group_size=2, epochs=1, minibatch_size=4))
    valid = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=torch.bool)  # lengths 3, 1, 2, 2
    rollout = {"steps": {"obs": torch.randn(4, 3, 3), "action": torch.zeros(4, 3, dtype=torch.long),
                         "log_prob": torch.full((4, 3), math.log(0.5)), "reward": valid.float(), "valid": valid},
               "envs": {"episode_return": valid.float().sum(1), "episode_success": torch.zeros(4, dtype=torch.bool)}}
    data, metrics = grpo.prepare(rollout)
    # Group 0 (returns 3, 1) is kept, group 1 (2, 2) is uniform: 3 + 1 valid steps remain.
    assert metrics["grpo/groups_kept"] == 1 and metrics["grpo/steps_trained"] == 4
    np.testing.assert_allclose(data["advantage"].numpy(), [1, 1, 1, -1])
    assert set(grpo.update(data)) >= {"train/actor/policy_loss", "train/actor/approx_kl", "train/actor/clip_fraction"}


def test_grpo_clips_the_ratio_asymmetrically_with_clip_high():
    import gymnasium as gym

    from policies.actor_critic import ActorCritic

    cfg = OmegaConf.structured(PolicyConfig(hidden=[8], layer_norm=False))
    model = ActorCritic(gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(2), cfg, with_critic=False)
    obs, action = torch.randn(4, 3), torch.zeros(4, dtype=torch.long)
    log_prob = model.distribution(model.features(obs)).log_prob(action).detach()
    data = {"obs": obs, "action": action, "log_prob": log_prob - math.log(1.5)}  # every ratio is 1.5
    idx, advantage = torch.arange(4), torch.ones(4)
    for clip_high, bound in ((None, 1.2), (0.28, 1.28)):
        grpo = GRPO(model, GRPOConfig(group_size=2, clip=0.2, clip_high=clip_high))
        loss, stats, _, _ = grpo.policy_loss(data, idx, advantage)
        assert loss.item() == pytest.approx(-bound, rel=1e-5)  # the ratio held at 1 + clip_high (or 1 + clip)
        assert stats["train/actor/clip_fraction"].item() == 1.0


def test_group_members_start_from_the_same_state():
    env = make_vector_env(OmegaConf.structured(EnvConfig(id="CartPole-v1")), num_envs=6)
    obs = reset_groups(env, np.array([11, 22, 33]), group_size=2)
    for g in range(3):
        np.testing.assert_array_equal(obs[2 * g], obs[2 * g + 1])
    assert not np.array_equal(obs[0], obs[2]) and not np.array_equal(obs[2], obs[4])
    again = reset_groups(env, np.array([11, 22, 33]), group_size=2)
    np.testing.assert_array_equal(obs, again)
    env.close()
