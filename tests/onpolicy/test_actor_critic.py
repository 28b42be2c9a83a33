"""The on-policy policy: log-probs consistent between acting and training, weights that round-trip."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf

from policies.config import PolicyConfig
from policies.actor_critic import ActorCritic, ActorCriticPolicy

POLICY = OmegaConf.structured(PolicyConfig(hidden=[16, 16], layer_norm=False))
OBS = gym.spaces.Box(-1, 1, (5,), np.float32)


def test_gaussian_log_prob_is_of_the_unclipped_sample_the_learner_sees():
    policy = ActorCriticPolicy(OBS, gym.spaces.Box(-1, 1, (3,), np.float32), POLICY, "cpu", seed=1)
    learner_model = ActorCritic(OBS, gym.spaces.Box(-1, 1, (3,), np.float32), POLICY, seed=2)
    policy.load_weights({k: v.numpy() for k, v in learner_model.acting_weights().items()})
    with torch.no_grad():
        learner_model.log_std.fill_(0.5)  # wide enough that some samples fall outside [-1, 1]
    policy.load_weights({k: v.numpy() for k, v in learner_model.acting_weights().items()})
    obs = np.random.default_rng(0).uniform(-1, 1, (64, 5)).astype(np.float32)
    action, log_prob = policy.sample(obs)
    assert np.abs(action).max() > 1.0  # recorded unclipped ...
    assert np.abs(policy.act(obs)).max() <= 1.0  # ... while the env gets clipped actions
    with torch.no_grad():
        dist = learner_model.distribution(learner_model.features(torch.as_tensor(obs)))
        np.testing.assert_allclose(dist.log_prob(torch.as_tensor(action)).numpy(), log_prob, rtol=1e-5, atol=1e-5)


def test_categorical_policy_and_deterministic_mode():
    policy = ActorCriticPolicy(OBS, gym.spaces.Discrete(4), POLICY, "cpu", seed=0)
    obs = np.zeros((8, 5), np.float32)
    action, log_prob = policy.sample(obs)
    assert action.dtype == np.int64 and action.shape == (8,) and np.all((0 <= action) & (action < 4))
    assert np.all(log_prob <= 0)
    greedy = policy.act(obs, deterministic=True)
    assert np.all(greedy == greedy[0])


def test_weights_without_the_critic_fit_and_foreign_weights_are_refused():
    import pytest

    model = ActorCritic(OBS, gym.spaces.Discrete(2), POLICY)
    weights = {k: v.numpy() for k, v in model.acting_weights().items()}
    assert not any(k.startswith("critic.") for k in weights)
    policy = ActorCriticPolicy(OBS, gym.spaces.Discrete(2), POLICY, "cpu")
    policy.load_weights(weights)
    with pytest.raises(ValueError, match="do not fit"):
        policy.load_weights({"something.else": np.zeros(3, np.float32)})


def test_observation_statistics_merge_exactly_and_reach_the_actors_with_the_weights():
    from policies.actor_critic import ObsNormalizer

    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=[0.5, -3.0, 0.0, 10.0, 0.01], scale=[0.01, 2.0, 1.0, 5.0, 0.001], size=(n, 5))
               for n in (7, 300, 1)]
    normalizer = ObsNormalizer((5,))
    for batch in batches:
        normalizer.update(torch.as_tensor(batch, dtype=torch.float32))
    everything = np.concatenate(batches)
    np.testing.assert_allclose(normalizer.mean.numpy(), everything.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalizer.var.numpy(), everything.var(0), rtol=1e-4, atol=1e-9)
    scaled = normalizer(torch.as_tensor(everything, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(scaled.std(0), 1.0, rtol=1e-2)  # the 1e-8 guard shows on a variance of 1e-6
    assert np.abs(normalizer(torch.full((1, 5), 1e9)).numpy()).max() == 10.0  # clipped

    config = OmegaConf.merge(POLICY, {"normalize_obs": True})
    learner_model = ActorCritic(OBS, gym.spaces.Discrete(3), config)
    learner_model.obs_normalizer.update(torch.as_tensor(everything, dtype=torch.float32))
    weights = {k: v.numpy() for k, v in learner_model.acting_weights().items()}
    assert {"obs_normalizer.mean", "obs_normalizer.var", "obs_normalizer.count"} <= set(weights)
    policy = ActorCriticPolicy(OBS, gym.spaces.Discrete(3), config, "cpu")
    policy.load_weights(weights)
    obs = everything[:16].astype(np.float32)
    with torch.no_grad():
        expected = learner_model.distribution(learner_model.features(torch.as_tensor(obs))).probs.numpy()
        got = policy.model.distribution(policy.model.features(torch.as_tensor(obs))).probs.numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
