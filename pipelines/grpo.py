"""GRPO: one episode per env, envs in groups that start from one state; advantages are the episodes' scores
z-scored inside their group (no critic)."""
from __future__ import annotations

import functools

from core.config import require
from learner.configs import GRPOConfig
from pipelines.on_policy import OnPolicyBuilder
from policies.config import PolicyConfig


class GRPOBuilder(OnPolicyBuilder):
    config_sections = {"grpo": GRPOConfig, "policy": PolicyConfig}
    section = "grpo"

    def validate(self, cfg) -> None:
        super().validate(cfg)
        require(cfg.grpo.group_size >= 2 and cfg.env.num_envs % cfg.grpo.group_size == 0,
                f"grpo.group_size ({cfg.grpo.group_size}) must be >= 2 and divide env.num_envs ({cfg.env.num_envs}): "
                "the envs of a group live in one actor")
        require(cfg.grpo.score in ("return", "success"), "grpo.score must be return or success")

    def make_algorithm(self, cfg, obs_space, action_space, device, seed):
        from learner.grpo import GRPO
        from policies.actor_critic import ActorCritic

        model = ActorCritic(obs_space, action_space, cfg.policy, with_critic=False, seed=seed)
        return GRPO(model.to(device), cfg.grpo, seed=seed)

    def make_actor(self, cfg, index):
        from actors.rollout_actor import RolloutActor

        return RolloutActor(cfg, index, functools.partial(self.make_policy, cfg), group_size=cfg.grpo.group_size)
