"""LIBERO-spatial in the real LIBERO simulator (robosuite 1.4 on mujoco 3), registered with gymnasium on import.

LIBERO pins robosuite 1.4 and mujoco < 4, which cannot share the project's main environment (mujoco 4), so the
simulator lives in a second venv, ``.venv-libero`` (``bash scripts/setup.sh --libero``), and the env runs only in
processes of that interpreter: the launcher starts a LIBERO run's actors and evaluator with
:data:`VENV_PYTHON` (:func:`role_python`), the learner and replay stay in the main venv. This package imports
no simulator: the id, the config and the spaces (:func:`spaces`, what the learner builds its networks from) are
known everywhere; ``envs.libero.env`` holds the env itself and says how to make the venv when imported
elsewhere. docs/envs.md describes the env.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs.libero.config import LiberoConfig

ENV_ID = "LiberoSpatial-v0"
# LIBERO-spatial's evaluation horizon (its longest expert demonstration is under 200 steps at 20 Hz).
MAX_EPISODE_STEPS = 220
# The interpreter of the processes that make this env, relative to the project's root (scripts/setup.sh --libero).
VENV_PYTHON = ".venv-libero/bin/python"
SETUP_HINT = "bash scripts/setup.sh --libero"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="envs.libero.env:LiberoSpatialEnv", max_episode_steps=MAX_EPISODE_STEPS,
                 disable_env_checker=True)


def role_python(env_id: Any) -> str | None:
    """The interpreter a process making env `env_id` needs (relative to the project's root), None for any."""
    return VENV_PYTHON if str(env_id) == ENV_ID else None


def spaces(kwargs: dict | None = None) -> tuple[gym.spaces.Dict, gym.spaces.Box]:
    """(observation space, action space) of one LiberoSpatial-v0 env made with `kwargs`, without the simulator."""
    return LiberoConfig.from_kwargs(**dict(kwargs or {})).spaces()


__all__ = ["ENV_ID", "MAX_EPISODE_STEPS", "VENV_PYTHON", "LiberoConfig", "role_python", "spaces"]
