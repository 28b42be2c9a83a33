"""SAC, asynchronous and off-policy: actors stream chunks to a replay buffer service, the learner samples
batches from it and publishes weights as it goes; nobody waits for anybody (launch/run_async.py)."""
from __future__ import annotations

import functools

from core.config import require
from core.roles import Builder
from learner.configs import SACConfig
from policies.config import PolicyConfig


class SACBuilder(Builder):
    config_sections = {"sac": SACConfig, "policy": PolicyConfig}
    services_resume = True  # the buffer resumes from its snapshot, the learner from its checkpoint

    def validate(self, cfg) -> None:
        sac, replay = cfg.sac, cfg.replay
        require(replay.min_size >= sac.batch_size,
                f"replay.min_size={replay.min_size}: must be >= sac.batch_size={sac.batch_size} (capacity >= min_size "
                ">= batch_size > 0)")
        require(sac.batch_size <= replay.max_batch_size,
                f"sac.batch_size={sac.batch_size}: must be <= replay.max_batch_size={replay.max_batch_size}")
        require(sac.num_min_q <= sac.num_q, f"sac.num_min_q={sac.num_min_q}: must be <= sac.num_q={sac.num_q}")
        require(cfg.policy.log_std_min < cfg.policy.log_std_max,
                f"policy.log_std_min={cfg.policy.log_std_min}: must be < policy.log_std_max={cfg.policy.log_std_max}")
        if sac.stored_features:
            encoder = cfg.policy.encoder
            require(encoder.type != "state" and not encoder.trainable,
                    "sac.stored_features=true needs a camera encoder with a frozen backbone (policy.encoder.type="
                    f"{encoder.type}, policy.encoder.trainable={encoder.trainable})")
            require(cfg.learner.batch_source != "service",
                    "sac.stored_features=true: the maps are kept in the learner's copy of the buffer, which "
                    "learner.batch_source=service does not have")
        require(cfg.learner.world_size == 1,
                f"learner.world_size={cfg.learner.world_size}: the SAC learner runs on one rank (data-parallel ranks "
                "are the on-policy learner's)")

    def make_policy(self, cfg, obs_space, action_space, device, seed):
        from policies.sac_agent import SACPolicy

        return SACPolicy(obs_space, action_space, cfg.policy, device, seed=seed)

    def make_actor(self, cfg, index):
        from actors.actor import ChunkedActor

        return ChunkedActor(cfg, index, functools.partial(self.make_policy, cfg))

    def make_replay(self, cfg):
        from replay.service import OffPolicyReplayService

        return OffPolicyReplayService(cfg)

    def make_learner(self, cfg):
        from learner.off_policy import OffPolicyLearner

        return OffPolicyLearner(cfg, cfg.sac)

    def make_evaluator(self, cfg):
        from actors.evaluator import Evaluator

        return Evaluator(cfg, functools.partial(self.make_policy, cfg))
