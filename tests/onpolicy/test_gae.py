"""GAE against a hand computation: a time-out bootstraps from V(final obs), a termination does not."""
from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf

from policies.config import PolicyConfig
from learner.gae import compute_gae
from learner.ppo import PPO, PPOConfig
from policies.actor_critic import ActorCritic

GAMMA, LAM = 0.9, 0.8


def _t(rows, dtype=torch.float32):
    return torch.tensor(rows, dtype=dtype)


def test_gae_truncation_bootstraps_and_termination_does_not():
    # Two envs, the same four steps; the episode ends after step 1 by a time-out in env 0 and by a
    # termination in env 1; env 0's next episode then terminates at step 3.
    rewards = _t([[1, 2, 3, 4], [1, 2, 3, 4]])
    values = _t([[0.5, 1.0, 1.5, 2.0], [0.5, 1.0, 1.5, 2.0]])
    # V(s'_t): V(obs[t+1]); at step 1, V(final obs) = 10; after a termination anything (100) must be ignored.
    next_values = _t([[1.0, 10.0, 2.0, 100.0], [1.0, 10.0, 2.0, 100.0]])
    terminated = _t([[0, 0, 0, 1], [0, 1, 0, 1]], torch.bool)
    truncated = _t([[0, 1, 0, 0], [0, 0, 0, 0]], torch.bool)
    adv, ret = compute_gae(rewards, values, next_values, terminated, truncated, GAMMA, LAM)
    # By hand, env 0: deltas 1 + .9*1 - .5 = 1.4 | 2 + .9*10 - 1 = 10 | 3 + .9*2 - 1.5 = 3.3 | 4 - 2 = 2
    # A3 = 2; A2 = 3.3 + .72*2 = 4.74; A1 = 10 (the trace stops at the time-out); A0 = 1.4 + .72*10 = 8.6
    # Env 1: step 1 terminates, delta = 2 - 1 = 1, so A1 = 1 and A0 = 1.4 + .72*1 = 2.12.
    np.testing.assert_allclose(adv.numpy(), [[8.6, 10.0, 4.74, 2.0], [2.12, 1.0, 4.74, 2.0]], rtol=1e-6)
    np.testing.assert_allclose(ret.numpy(), adv.numpy() + values.numpy(), rtol=1e-6)


def test_gae_without_episode_ends_is_discounted_td_sum():
    rewards, values = _t([[1.0, 1.0, 1.0]]), _t([[0.0, 0.0, 0.0]])
    next_values = _t([[0.0, 0.0, 5.0]])  # bootstrap at the rollout's end
    no = torch.zeros(1, 3, dtype=torch.bool)
    adv, _ = compute_gae(rewards, values, next_values, no, no, GAMMA, 1.0)
    np.testing.assert_allclose(adv.numpy()[0, 0], 1 + 0.9 + 0.81 + 0.729 * 5.0, rtol=1e-6)


def test_ppo_prepare_bootstraps_time_outs_from_the_final_observation():
    """The learner's wiring: next values from obs[t+1], last_obs, and final_obs where an episode ended."""
    import gymnasium as gym

    policy_cfg = OmegaConf.structured(PolicyConfig(hidden=[], layer_norm=False))
    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    model = ActorCritic(space, gym.spaces.Discrete(2), policy_cfg)
    with torch.no_grad():  # V(s) = s[0]: the critic reads the first coordinate
        model.critic[0].weight.copy_(_t([[1.0, 0.0]]))
        model.critic[0].bias.zero_()
    obs = _t([[[0.5, 0], [1.0, 0], [1.5, 0], [2.0, 0]]])  # V(s_t) = 0.5, 1, 1.5, 2
    rollout = {
        "steps": {"obs": obs, "action": torch.zeros(1, 4, dtype=torch.long), "log_prob": torch.zeros(1, 4),
                  "reward": _t([[1, 2, 3, 4]]), "terminated": _t([[0, 0, 0, 0]], torch.bool),
                  "truncated": _t([[0, 1, 0, 0]], torch.bool)},
        "finals": {"obs": _t([[10.0, 0]]), "index": torch.tensor([[0, 1]], dtype=torch.int32)},
        "envs": {"last_obs": _t([[3.0, 0]])},
    }
    ppo = PPO(model, PPOConfig(gamma=GAMMA, gae_lambda=LAM))
    data, _ = ppo.prepare(rollout)
    # next values: 1.0 | 10 (final obs, not obs[2]) | 2.0 | 3.0 (last obs); deltas 1.4 | 10 | 3.3 | 3.7
    a3 = 4 + 0.9 * 3.0 - 2.0
    a2 = 3.3 + 0.72 * a3
    np.testing.assert_allclose(data["advantage"].numpy(), [1.4 + 0.72 * 10.0, 10.0, a2, a3], rtol=1e-5)
