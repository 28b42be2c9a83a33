"""LiberoSpatial-v0's options and the spaces they give (no simulator imported: the learner reads the spaces in the
main venv)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

SUITE = "libero_spatial"
NUM_TASKS = 10
INIT_STATES_PER_TASK = 50
CONTROL_HZ = 20
ACTION_SIZE = 7
# observation.state: eef position (3), eef euler angles (3, extrinsic xyz), gripper opening (1, metres between the
# fingers), eef axis-angle (3), the two finger joints (2). The first 7 are the world model's pose (envs/world_model).
STATE_SIZE = 12
# LIBERO-spatial's instructions are up to 88 UTF-8 bytes: more than the 64 of core.instruction's default.
INSTRUCTION_BYTES = 128
CAMERAS = ("agentview", "wrist")


@dataclass(frozen=True)
class LiberoConfig:
    tasks: Any = "all"  # "all" (the suite's 10) or a list of task indices 0..9; a seeded reset draws one of them
    camera_size: int = 128  # both cameras, square
    cameras: bool = True  # False: no rendering (the images stay black): experts and success checks need no pixels
    settle_steps: int = 10  # steps with the gripper open after an init state is set, for the objects to come to rest
    max_scenes: int = NUM_TASKS  # built task scenes kept per env (each task is its own MuJoCo model)
    task_indices: tuple = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            if self.tasks != "all":
                raise ValueError(f"tasks must be 'all' or a list of task indices 0..{NUM_TASKS - 1}, got {self.tasks!r}")
            indices = tuple(range(NUM_TASKS))
        else:
            indices = tuple(int(t) for t in self.tasks)
            if not indices or any(not 0 <= t < NUM_TASKS for t in indices):
                raise ValueError(f"tasks must be task indices 0..{NUM_TASKS - 1} of {SUITE}, got {list(self.tasks)}")
        object.__setattr__(self, "task_indices", indices)
        if not isinstance(self.camera_size, int) or self.camera_size < 8:
            raise ValueError(f"camera_size must be an integer >= 8, got {self.camera_size!r}")
        if not isinstance(self.settle_steps, int) or self.settle_steps < 0:
            raise ValueError(f"settle_steps must be an integer >= 0, got {self.settle_steps!r}")
        if not isinstance(self.max_scenes, int) or self.max_scenes < 1:
            raise ValueError(f"max_scenes must be an integer >= 1, got {self.max_scenes!r}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> LiberoConfig:
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown LiberoSpatial-v0 option(s) {unknown}; valid options: {sorted(known)}")
        return cls(**kwargs)

    def spaces(self) -> tuple[gym.spaces.Dict, gym.spaces.Box]:
        s = self.camera_size
        obs = gym.spaces.Dict({
            "agentview": gym.spaces.Box(0, 255, (s, s, 3), np.uint8),
            "wrist": gym.spaces.Box(0, 255, (s, s, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (STATE_SIZE,), np.float32),
            "instruction": gym.spaces.Box(0, 255, (INSTRUCTION_BYTES,), np.uint8)})
        return obs, gym.spaces.Box(-1.0, 1.0, (ACTION_SIZE,), np.float32)
