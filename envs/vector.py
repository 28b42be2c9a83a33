"""A batch of gymnasium environments stepped in one process, with automatic reset.

This is the `Env` role the actors use. It differs from gymnasium's own vector
envs in what an RL pipeline needs: actions always in [-1, 1] (rescaled to each
env's bounds here, so policies and replay never see env-specific ranges), the
final observation of a finished episode kept in ``infos["final_obs"]``, episode
statistics computed once (with ``infos["episode_task"]``: the ended episode's subtask, where
the env has one, as the play table does), and ``chunk_step`` for C actions per env at a time.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np

from core import tree
from core.roles import Env


def env_seeds(seed: int | Sequence[int] | None, num_envs: int) -> list:
    """One reset seed per env: `seed` itself when it is one per env, each derived from an int through a
    SeedSequence (not seed + i, so two vectors' seeds never overlap), or None for each."""
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, (int, np.integer)):
        return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(num_envs, np.uint32)]
    seeds = [None if s is None else int(s) for s in seed]
    if len(seeds) != num_envs:
        raise ValueError(f"reset got {len(seeds)} seeds for {num_envs} envs")
    return seeds


def env_options_of(options: Sequence[dict | None] | None, num_envs: int) -> list:
    """One reset-options dict (or None) per env."""
    if options is None:
        return [None] * num_envs
    options = list(options)
    if len(options) != num_envs:
        raise ValueError(f"reset got {len(options)} options for {num_envs} envs")
    return options


class SyncVectorEnv(Env):
    def __init__(self, env_fns: list[Callable[[], gym.Env]]):
        if not env_fns:
            raise ValueError("SyncVectorEnv needs at least one environment")
        self.envs = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        space = self.envs[0].action_space
        if not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete)):
            raise TypeError(f"unsupported action space {space}: Box or Discrete expected")
        self.env_action_space = space
        self.discrete = isinstance(space, gym.spaces.Discrete)
        if self.discrete:
            self.single_action_space = space
        else:
            if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
                raise ValueError(f"continuous action space must be bounded, got {space}")
            self.single_action_space = gym.spaces.Box(-1.0, 1.0, space.shape, np.float32)
        self._returns = np.zeros(self.num_envs, np.float64)
        self._lengths = np.zeros(self.num_envs, np.int64)
        self._success_once = np.zeros(self.num_envs, bool)
        self.reports_success = False  # becomes True once an env's info carries a success flag

    def reset(self, seed: int | Sequence[int] | None = None, after_each: Callable[[], None] | None = None,
              options: Sequence[dict | None] | None = None) -> Any:
        """Reset every env. `seed`: one seed per env, or one int from which each env's seed is derived
        (through a SeedSequence, not seed + i, so two vectors' seeds never overlap), or None. `after_each` is
        called after each env's reset (a caller's heartbeats: one env's reset can take seconds). `options`: one
        reset-options dict (or None) per env, e.g. LiberoSpatial-v0's task and init state of an evaluation."""
        obs = []
        for env, env_seed, env_options in zip(self.envs, env_seeds(seed, self.num_envs),
                                              env_options_of(options, self.num_envs)):
            o, _ = env.reset(seed=env_seed, options=env_options)
            obs.append(o)
            if after_each is not None:
                after_each()
        self._returns[:] = 0
        self._lengths[:] = 0
        self._success_once[:] = False
        self._obs = tree.map(lambda *rows: np.stack(rows), *obs)
        return self._obs

    def _to_env_action(self, action: np.ndarray) -> Any:
        if self.discrete:
            return int(action)
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        low, high = self.env_action_space.low, self.env_action_space.high
        return (low + (a + 1.0) * 0.5 * (high - low)).astype(self.env_action_space.dtype)

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        if len(actions) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions, got {len(actions)}")
        n = self.num_envs
        rewards = np.zeros(n, np.float32)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        success = np.zeros(n, bool)
        done = np.zeros(n, bool)
        final_obs = None
        ep_return = np.zeros(n, np.float32)
        ep_length = np.zeros(n, np.int64)
        ep_success = np.zeros(n, bool)
        ep_task: list[str | None] = [None] * n
        next_obs = []
        for i, env in enumerate(self.envs):
            o, r, term, trunc, info = env.step(self._to_env_action(actions[i]))
            rewards[i], terminated[i], truncated[i] = r, term, trunc
            if "success" in info or "is_success" in info:
                self.reports_success = True
                success[i] = bool(info.get("success", info.get("is_success")))
            self._returns[i] += r
            self._lengths[i] += 1
            self._success_once[i] |= success[i]
            if term or trunc:
                done[i] = True
                if final_obs is None:
                    final_obs = tree.map(np.zeros_like, self._obs)
                tree.assign(final_obs, i, o)
                ep_return[i], ep_length[i], ep_success[i] = self._returns[i], self._lengths[i], self._success_once[i]
                task = getattr(env.unwrapped, "task", None)  # the play table's subtask, read before the reset
                ep_task[i] = task if isinstance(task, str) else None
                self._returns[i], self._lengths[i], self._success_once[i] = 0.0, 0, False
                o, _ = env.reset()
            next_obs.append(o)
        self._obs = tree.map(lambda *rows: np.stack(rows), *next_obs)
        infos = {"done": done, "success": success, "episode_return": ep_return, "episode_length": ep_length,
                 "episode_success": ep_success, "episode_task": ep_task, "final_obs": final_obs if final_obs is not None
                 else tree.map(np.zeros_like, self._obs)}
        return self._obs, rewards, terminated, truncated, infos

    def close(self) -> None:
        for env in self.envs:
            env.close()


def gym_vector_env(env_cfg: Any, num_envs: int) -> SyncVectorEnv:
    """`num_envs` copies of a gymnasium env, made with `env_cfg.kwargs`, stepped in this process. (The project's
    ids are registered by importing the `envs` package, which importing this module does first.)"""
    kwargs = dict(env_cfg.kwargs or {})
    if env_cfg.max_episode_steps:
        kwargs["max_episode_steps"] = int(env_cfg.max_episode_steps)
    return SyncVectorEnv([lambda: gym.make(env_cfg.id, **kwargs) for _ in range(num_envs)])
