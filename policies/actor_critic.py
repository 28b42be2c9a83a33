"""The actor-critic networks of the on-policy algorithms (PPO, GRPO), and the policy actors run.

Action distributions:

* Box actions: a diagonal Gaussian whose mean comes from the actor MLP and whose log-std is one
  learned vector, the same in every state (state-independent, as in the PPO papers). The sample
  ``u`` is what the rollout stores and what the log-probability is of; the environment receives
  ``clip(u, -1, 1)``. Clipping, not tanh squashing: the log-prob stays that of a plain Gaussian
  (no Jacobian term, closed-form entropy), and since the clip is applied outside the
  distribution, ``log_prob(u)`` at update time is exactly the behaviour log-prob the actor sent.
* Discrete actions: a categorical distribution over the actor MLP's logits.

The critic is a separate MLP on the same features (for state observations the encoder has no
parameters). GRPO builds the model without a critic.

With ``policy.normalize_obs`` a Box observation is normalised by a running mean and variance
(``ObsNormalizer``) before the encoder. The statistics are buffers of the model: the learner
updates them from each rollout before it trains on it, and they travel to the actors inside the
acting weights, so actors and learner always normalise alike.
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from core.roles import Policy
from policies.build import build_encoder
from policies.config import PolicyConfig
from policies.networks import activation_class, as_tensors, mlp


def _orthogonal_init(net: nn.Sequential, output_gain: float) -> None:
    """Orthogonal weights, zero biases; a small gain on the policy output keeps the first policy near uniform."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        nn.init.orthogonal_(layer.weight, gain=output_gain if i == len(linears) - 1 else math.sqrt(2))
        nn.init.zeros_(layer.bias)


class ObsNormalizer(nn.Module):
    """Running mean and variance of observations (parallel-merge formula); normalises and clips to +-clip."""

    def __init__(self, shape: tuple, clip: float = 10.0):
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, obs: torch.Tensor) -> None:
        """Merge a batch [N, *shape] into the statistics."""
        batch = obs.reshape(-1, *self.mean.shape).double()
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean, batch_var = batch.mean(0), batch.var(0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total)
        self.count.copy_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        scaled = (obs.double() - self.mean) / torch.sqrt(self.var + 1e-8)
        return scaled.clamp(-self.clip, self.clip).float()


class ActorCritic(nn.Module):
    """encoder -> actor MLP (action mean or logits), encoder -> critic MLP (state value)."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, policy_cfg: PolicyConfig,
                 with_critic: bool = True, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if not self.discrete and not isinstance(action_space, gym.spaces.Box):
            raise TypeError(f"ActorCritic supports Box or Discrete actions, got {action_space}")
        out_dim = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.obs_normalizer = None
        if policy_cfg.normalize_obs:
            if not isinstance(obs_space, gym.spaces.Box):
                raise ValueError(f"policy.normalize_obs needs a Box observation space, got {obs_space}")
            self.obs_normalizer = ObsNormalizer(tuple(obs_space.shape))
        self.encoder = build_encoder(policy_cfg.encoder, obs_space, seed=seed)
        hidden, act = list(policy_cfg.hidden), activation_class(policy_cfg.activation)
        self.actor = mlp(self.encoder.out_dim, hidden, out_dim, layer_norm=policy_cfg.layer_norm, activation=act)
        _orthogonal_init(self.actor, output_gain=0.01)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(out_dim))
            self.log_std_min, self.log_std_max = float(policy_cfg.log_std_min), float(policy_cfg.log_std_max)
        self.critic = None
        if with_critic:
            self.critic = mlp(self.encoder.out_dim, hidden, 1, layer_norm=policy_cfg.layer_norm, activation=act)
            _orthogonal_init(self.critic, output_gain=1.0)

    def features(self, obs: Any) -> torch.Tensor:
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer(obs)
        return self.encoder(obs, self.encoder.precompute(obs))

    def distribution(self, features: torch.Tensor) -> Distribution:
        out = self.actor(features)
        if self.discrete:
            return Categorical(logits=out)
        log_std = self.log_std.clamp(self.log_std_min, self.log_std_max).expand_as(out)
        return Independent(Normal(out, log_std.exp()), 1)

    def value(self, features: torch.Tensor) -> torch.Tensor:
        if self.critic is None:
            raise RuntimeError("this actor-critic was built without a critic (GRPO)")
        return self.critic(features).squeeze(-1)

    def acting_weights(self) -> dict[str, torch.Tensor]:
        """What an actor needs to act: everything but the critic."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("critic.")}


class ActorCriticPolicy(Policy):
    """The acting half of an ActorCritic, in an actor or evaluator process."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, policy_cfg: PolicyConfig, device: str,
                 seed: int = 0):
        self.device = torch.device(device)
        model = ActorCritic(obs_space, action_space, policy_cfg, with_critic=False, seed=seed)
        self.model = model.to(self.device).eval()
        self.discrete = self.model.discrete
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    @torch.no_grad()
    def sample(self, obs: Any) -> tuple[np.ndarray, np.ndarray]:
        """A stochastic action per env and its log-probability: what a rollout records.

        Box actions are the raw Gaussian samples (not clipped): clip them before env.step.
        """
        dist = self.model.distribution(self.model.features(as_tensors(obs, self.device)))
        if self.discrete:
            probs = dist.probs
            action = torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
        else:
            normal = dist.base_dist
            action = normal.loc + normal.scale * torch.randn(normal.loc.shape, generator=self.generator,
                                                             device=self.device)
        return action.cpu().numpy(), dist.log_prob(action).float().cpu().numpy()

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = False) -> np.ndarray:
        """Env actions: the mode (argmax or Gaussian mean) if deterministic, else a sample; Box actions clipped."""
        if not deterministic:
            action, _ = self.sample(obs)
        else:
            dist = self.model.distribution(self.model.features(as_tensors(obs, self.device)))
            action = (dist.probs.argmax(-1) if self.discrete else dist.base_dist.loc).cpu().numpy()
        return action if self.discrete else np.clip(action, -1.0, 1.0).astype(np.float32)

    def load_weights(self, weights: dict) -> None:
        state = {k: torch.as_tensor(np.array(v)) for k, v in weights.items()}  # np.array: received arrays are read-only
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"weights do not fit the actor-critic policy: missing {missing}, unexpected {unexpected}")

