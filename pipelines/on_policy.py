"""What the on-policy pipelines (PPO, GRPO) share: actors collect one rollout per policy version, the rollout
store gathers the actors' parts, the learner trains on the whole rollout and publishes the next version
(launch/run_sync.py). An algorithm says what its rollout looks like and how it trains on one."""
from __future__ import annotations

import abc
import functools

from core.config import require
from core.roles import Builder


class OnPolicyBuilder(Builder):
    synchronous = True
    section = ""  # the algorithm's config section (lr, lr_schedule, epochs, minibatch_size)

    def validate(self, cfg) -> None:
        algo = getattr(cfg, self.section)
        require(algo.lr_schedule in ("constant", "linear"), f"{self.section}.lr_schedule must be constant or linear")
        require(algo.epochs >= 1 and algo.minibatch_size >= 1,
                f"{self.section}.epochs and minibatch_size must be >= 1")
        require(not cfg.learner.compile, "learner.compile=true applies to SAC runs only")
        world_size = cfg.learner.world_size
        require(algo.minibatch_size % world_size == 0,
                f"{self.section}.minibatch_size={algo.minibatch_size} must be a multiple of learner.world_size="
                f"{world_size}: each rank takes minibatch_size / world_size rows of every minibatch")

    @abc.abstractmethod
    def make_algorithm(self, cfg, obs_space, action_space, device, seed):
        """The update (learner.ppo.OnPolicyAlgorithm) with its model on `device`."""

    def learner_spaces(self, cfg):
        """(observation space, action space) the learner builds its algorithm with: the env's, from a probe env."""
        from envs import env_spaces

        return env_spaces(cfg.env)

    def make_policy(self, cfg, obs_space, action_space, device, seed):
        from policies.actor_critic import ActorCriticPolicy

        return ActorCriticPolicy(obs_space, action_space, cfg.policy, device, seed=seed)

    def make_replay(self, cfg):
        from replay.rollout_service import RolloutService

        return RolloutService(cfg)

    def make_learner(self, cfg):
        from learner.on_policy import OnPolicyLearner

        return OnPolicyLearner(cfg, functools.partial(self.make_algorithm, cfg), functools.partial(self.learner_spaces, cfg))

    def make_evaluator(self, cfg):
        from actors.evaluator import Evaluator

        return Evaluator(cfg, functools.partial(self.make_policy, cfg))
