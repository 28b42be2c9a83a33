"""Environments. Importing this package registers the project's gymnasium ids."""
from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs.vector import SyncVectorEnv

try:  # the Franka pick-cube envs need mujoco, which is a core dependency
    import envs.franka  # noqa: F401  (registers PandaPickCube-v0 and PandaPickCubeVision-v0)
except ModuleNotFoundError as e:  # pragma: no cover - only without the franka package
    if e.name not in ("envs.franka",):
        raise


def make_vector_env(env_cfg: Any, num_envs: int | None = None, seed: int | None = None) -> SyncVectorEnv:
    """B copies of `env_cfg.id`, each made by gymnasium.make with `env_cfg.kwargs`."""
    kwargs = dict(env_cfg.kwargs or {})
    if env_cfg.max_episode_steps:
        kwargs["max_episode_steps"] = int(env_cfg.max_episode_steps)
    if env_cfg.id not in gym.registry:
        raise ValueError(f"unknown environment id '{env_cfg.id}'; registered ids include "
                         f"{', '.join(sorted(k for k in gym.registry if 'Panda' in k or 'Pendulum' in k))}")
    n = int(num_envs if num_envs is not None else env_cfg.num_envs)
    env = SyncVectorEnv([lambda: gym.make(env_cfg.id, **kwargs) for _ in range(n)])
    if seed is not None:
        env.reset(seed=seed)
    return env


def env_spaces(env_cfg: Any) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of one env as the actors see it (actions in [-1, 1])."""
    probe = make_vector_env(env_cfg, num_envs=1)
    try:
        return probe.single_observation_space, probe.single_action_space
    finally:
        probe.close()
