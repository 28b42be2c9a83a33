"""Franka Panda pick-cube tasks in MuJoCo, registered with gymnasium on import.

``import envs`` (or ``import envs.franka``) makes these ids available to ``gymnasium.make``:

* ``PandaPickCube-v0``: 10-D state observation.
* ``PandaPickCubeVision-v0``: front and wrist RGB cameras plus 7-D proprioception.

Both take the fields of :class:`envs.franka.pick_cube.PandaPickCubeConfig` as kwargs, e.g.
``gymnasium.make("PandaPickCube-v0", control_hz=50, reward_type="sparse", max_episode_steps=500)``.
"""
from envs.rendering import choose_gl_backend

# Before anything imports mujoco: mujoco reads MUJOCO_GL once, at import time.
choose_gl_backend()

import gymnasium  # noqa: E402

# 100 steps = 10 s at the default 10 Hz; pass max_episode_steps=500 for 10 s at 50 Hz.
DEFAULT_MAX_EPISODE_STEPS = 100

STATE_ENV_ID = "PandaPickCube-v0"
VISION_ENV_ID = "PandaPickCubeVision-v0"


def _register(env_id: str, entry_point: str) -> None:
    if env_id not in gymnasium.registry:  # importing twice (e.g. by path and by name) is harmless
        gymnasium.register(id=env_id, entry_point=entry_point,
                           max_episode_steps=DEFAULT_MAX_EPISODE_STEPS)


_register(STATE_ENV_ID, "envs.franka.pick_cube:PandaPickCubeEnv")
_register(VISION_ENV_ID, "envs.franka.pick_cube:PandaPickCubeVisionEnv")
