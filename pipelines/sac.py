"""SAC, asynchronous and off-policy: actors stream chunks to a replay buffer service, the learner samples
batches from it and publishes weights as it goes; nobody waits for anybody (launch/run_async.py)."""
from __future__ import annotations

import functools

from core.roles import Builder
from learner.configs import SACConfig
from policies.config import PolicyConfig


class SACBuilder(Builder):
    config_sections = {"sac": SACConfig, "policy": PolicyConfig}
    services_resume = True  # the buffer resumes from its snapshot, the learner from its checkpoint

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
