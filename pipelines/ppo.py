"""PPO: rollouts of ppo.rollout_len steps of every env; GAE advantages from the critic; clipped updates."""
from __future__ import annotations

import functools

from core.config import require
from learner.configs import PPOConfig
from pipelines.on_policy import OnPolicyBuilder
from policies.config import PolicyConfig


class PPOBuilder(OnPolicyBuilder):
    config_sections = {"ppo": PPOConfig, "policy": PolicyConfig}
    section = "ppo"

    def validate(self, cfg) -> None:
        super().validate(cfg)
        require(cfg.ppo.rollout_len >= 1, "ppo.rollout_len must be >= 1")

    def make_algorithm(self, cfg, obs_space, action_space, device, seed):
        from learner.ppo import PPO
        from policies.actor_critic import ActorCritic

        model = ActorCritic(obs_space, action_space, cfg.policy, with_critic=True, seed=seed)
        return PPO(model.to(device), cfg.ppo, seed=seed)

    def make_actor(self, cfg, index):
        from actors.rollout_actor import RolloutActor

        return RolloutActor(cfg, index, functools.partial(self.make_policy, cfg), rollout_len=cfg.ppo.rollout_len)
