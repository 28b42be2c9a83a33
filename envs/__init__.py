"""Environments. Importing this package registers the project's gymnasium ids."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym

from envs.vector import gym_vector_env

try:  # the Franka pick-cube envs need mujoco, which is a core dependency
    import envs.franka  # noqa: F401  (registers PandaPickCube-v0 and PandaPickCubeVision-v0)
except ModuleNotFoundError as e:  # pragma: no cover - only without the franka package
    if e.name not in ("envs.franka",):
        raise

import envs.calvin  # noqa: F401  (registers CalvinPlayTable-v0; pybullet is imported when one is made)
# LIBERO-spatial (registers LiberoSpatial-v0): its simulator is in a second venv, imported only when one is made
import envs.libero  # noqa: E402

# ManiSkill 3 (the `maniskill` extra). Not imported here: importing mani_skill takes 3-9 s, which every
# role process and test importing `envs` would pay. `envs.maniskill` is imported when a ManiSkill env is
# made (make_vector_env, or gymnasium.make of ZarlPutOnPlate-v1 or ZarlGSPutCubeOnPlate-v0 through the placeholders
# registered here); importing it registers those tasks with ManiSkill and with gymnasium for real.
MANISKILL_AVAILABLE = importlib.util.find_spec("mani_skill") is not None
if MANISKILL_AVAILABLE:
    for _zarl_id in ("ZarlPutOnPlate-v1", "ZarlGSPutCubeOnPlate-v0"):
        if _zarl_id not in gym.registry:
            gym.register(_zarl_id, entry_point="envs.maniskill.gym_entry:make_zarl_task", kwargs={"env_id": _zarl_id},
                         disable_env_checker=True)


def uses_maniskill(env_cfg: Any) -> bool:
    """A ManiSkill env: id `ManiSkill/<task>` (e.g. ManiSkill/PickCube-v1), a Zarl task (`ZarlPutOnPlate-v1`,
    `ZarlGSPutCubeOnPlate-v0`), or
    `env.kwargs.backend: maniskill` with a ManiSkill task id."""
    kwargs = getattr(env_cfg, "kwargs", None) or {}
    return (str(env_cfg.id).startswith("ManiSkill/") or str(env_cfg.id).startswith(("ZarlPutOnPlate", "ZarlGSPutCubeOnPlate"))
            or kwargs.get("backend") == "maniskill")


# A learned world model as the env (envs/world_model, issue 21): a batched torch env, not a gymnasium one
from envs.world_model import ENV_ID as WORLD_MODEL_ID  # noqa: E402
VECTOR_ONLY_IDS = (WORLD_MODEL_ID,)  # ids make_vector_env makes itself, unknown to gymnasium's registry


def make_vector_env(env_cfg: Any, num_envs: int | None = None, seed: int | None = None) -> Any:
    """B envs of `env_cfg.id`: the ManiSkill backend (envs.maniskill.ManiSkillVectorEnv, batched on the
    GPU) for ManiSkill ids, the world model (envs.world_model.vector.WorldModelVectorEnv) for WorldModel-v0,
    else B copies made by gymnasium.make with `env_cfg.kwargs`: stepped in this process (SyncVectorEnv), or in
    `env_cfg.workers` processes side by side (envs.process_vector.ProcessVectorEnv)."""
    workers = int(getattr(env_cfg, "workers", 1) or 1)
    if workers > 1 and (env_cfg.id == WORLD_MODEL_ID or uses_maniskill(env_cfg)):
        raise ValueError(f"env.workers applies to gymnasium envs stepped on the CPU; {env_cfg.id} is a batched "
                         f"vector env of its own: leave env.workers at 1")
    if env_cfg.id == WORLD_MODEL_ID:
        from envs.world_model.vector import make_world_model_vector_env
        return make_world_model_vector_env(env_cfg, num_envs=num_envs, seed=seed)
    if uses_maniskill(env_cfg):
        if not MANISKILL_AVAILABLE:
            raise ModuleNotFoundError(
                f"env {env_cfg.id} needs ManiSkill: install the `maniskill` extra (scripts/setup.sh does, "
                f"with the Vulkan driver it needs)", name="mani_skill")
        from envs.maniskill import make_maniskill_vector_env
        return make_maniskill_vector_env(env_cfg, num_envs=num_envs, seed=seed)
    if env_cfg.id not in gym.registry:
        raise ValueError(f"unknown environment id '{env_cfg.id}'; registered ids include "
                         f"{', '.join(sorted(k for k in gym.registry if 'Panda' in k or 'Pendulum' in k))}")
    n = int(num_envs if num_envs is not None else env_cfg.num_envs)
    workers = min(workers, n)  # never more processes than copies
    python = foreign_python(env_cfg.id)
    if workers > 1 or python is not None:
        from envs.process_vector import ProcessVectorEnv
        env = ProcessVectorEnv(env_cfg, n, workers, python=python)
    else:
        env = gym_vector_env(env_cfg, n)
    if seed is not None:
        env.reset(seed=seed)
    return env


def role_python(env_id: str) -> str | None:
    """The interpreter a process that makes env `env_id` must run (a path relative to the project's root), or
    None when any of the project's will do: LIBERO's simulator is in its own venv (envs/libero)."""
    return envs.libero.role_python(env_id)


def foreign_python(env_id: str) -> str | None:
    """The absolute path of the interpreter env `env_id` needs when it is not this process's venv (a LIBERO env
    made from the main venv: its copies then step in worker processes of .venv-libero), else None."""
    needed = role_python(env_id)
    if needed is None:
        return None
    path = Path(needed) if os.path.isabs(needed) else Path(__file__).resolve().parents[1] / needed
    if Path(sys.prefix).resolve() == path.parent.parent.resolve():  # <venv>/bin/python: already in that venv
        return None
    if not os.access(path, os.X_OK):
        hint = f" (make it with `{envs.libero.SETUP_HINT}`)" if env_id == envs.libero.ENV_ID else ""
        raise ModuleNotFoundError(f"env {env_id} runs in processes of the interpreter {path}, which does not "
                                  f"exist{hint}")
    return str(path)


def env_spaces(env_cfg: Any) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of one env as the actors see it (actions in [-1, 1]). LIBERO's are
    declared (no simulator in this venv, perhaps): the same as its env's, which tests/envs/test_libero.py checks."""
    if env_cfg.id == envs.libero.ENV_ID:
        return envs.libero.spaces(env_cfg.kwargs)
    probe = make_vector_env(env_cfg, num_envs=1)
    try:
        return probe.single_observation_space, probe.single_action_space
    finally:
        probe.close()
