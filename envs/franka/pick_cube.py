"""Franka Panda pick-cube environments: ``PandaPickCube-v0`` (state) and ``PandaPickCubeVision-v0``.

The task: a 4 cm cube lies at a random spot on the table; lift it 10 cm while holding it between
the gripper's fingers.

Observation (state env), float32, world frame, metres::

    [0:3]  tcp position           (the gripper's pinch point between the fingertips)
    [3:6]  tcp linear velocity    (m/s)
    [6]    gripper opening        (gap between the two finger pads: about 0.085 m open, 0 closed)
    [7:10] block position         (centre of the cube)

The vision env returns ``{"state": obs[0:7], "front": (128,128,3) uint8, "wrist": (128,128,3) uint8}``:
proprioception only, the cube must be found in the images.

Action, float32 in [-1, 1]^4: ``[dx, dy, dz, grip]``. ``dx, dy, dz`` move the tcp target by up to
``max_tcp_speed / control_hz`` metres per step along the world axes (the target stays inside the
workspace box and at most one step ahead of the actual tcp, so pushing against the table does not
wind up). ``grip > 0`` closes the gripper, ``grip <= 0`` opens it. The gripper's orientation is
fixed (pointing down).

Control: a mocap weld (see ``model.py``): the action only places a mocap body; MuJoCo's constraint
solver moves the arm inside ``mj_step``. One env step is ``1 / (control_hz * timestep)`` physics
substeps, run by one ``mj_step(..., nstep)`` call. ``control_hz`` 10 (50 substeps of 2 ms) and 50
(10 substeps) are the usual choices; any rate that divides the 500 Hz physics rate works.

Reward:

* ``"dense"`` (SERL's shaping): ``0.3 * exp(-20 * |tcp - block|) + 0.7 * clip(lift / 0.2, 0, 1)``,
  where ``lift`` is the cube's height above its resting height.
* ``"sparse"``: ``1.0`` on steps where the task is solved (``info["success"]``), else ``0.0``.

``info["success"]`` on every step: the cube is lifted at least ``success_lift`` (0.1 m) above its
resting height AND touched by both fingers (so a cube knocked into the air does not count).
With ``terminate_on_success=True`` the episode ends on the first successful step. The time limit
(``max_episode_steps``, 100 by default = 10 s at 10 Hz) comes from the gymnasium registration;
at 50 Hz pass ``max_episode_steps=500`` to ``gymnasium.make`` for the same 10 s.

Seeding: ``reset(seed=s)`` fully determines the episode; all randomness (the cube's xy, drawn
uniformly in ``[block_xy_low, block_xy_high]``) comes from ``self.np_random``.

The state env never creates a GL context; the vision env and ``render_mode="rgb_array"`` render
offscreen with the backend chosen by ``envs.rendering``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from envs.franka.model import PANDA_REST_POSTURE, SceneIds, build_model, scene_ids
from envs.rendering import OffscreenRenderer, RenderOptions

GRIPPER_CLOSED_CTRL = 255.0  # the 2F-85 actuator's control range is [0, 255]
GRIPPER_OPEN_CTRL = 0.0
BLOCK_HALF_SIZE = 0.02
STATE_OBS_SIZE = 10
PROPRIO_SIZE = 7
LEFT_FINGER, RIGHT_FINGER = 1, 2  # bit flags in PandaPickCubeEnv._finger_bit
HOME_SETTLE_SECONDS = 2.0  # simulated time for the arm to reach the home pose when the env is built


@dataclass(frozen=True)
class PandaPickCubeConfig:
    """Everything that defines the task; the environment's constructor kwargs are these fields."""

    control_hz: float = 10.0
    reward_type: str = "dense"  # "dense" or "sparse"
    terminate_on_success: bool = False
    success_lift: float = 0.1  # metres above the resting height
    dense_full_lift: float = 0.2  # the dense reward's lift term saturates at this height
    # The cube's centre is drawn uniformly in this xy rectangle on every reset (metres, world frame).
    block_xy_low: tuple[float, float] = (0.35, -0.2)
    block_xy_high: tuple[float, float] = (0.6, 0.2)
    home_tcp: tuple[float, float, float] = (0.4, 0.0, 0.25)
    # The tcp target is kept in this box. The 2F-85's pads dip about 1.3 cm as they close; at the
    # lowest z (the cube's centre height) closed pads still clear the table, so the fingers never
    # jam on it, and they grip the cube around its middle.
    workspace_low: tuple[float, float, float] = (0.2, -0.35, 0.02)
    workspace_high: tuple[float, float, float] = (0.75, 0.35, 0.45)
    max_tcp_speed: float = 0.5  # m/s commanded by |action| = 1; 5 cm per step at 10 Hz
    weld_timeconst: float = 0.02  # seconds; how stiffly the tcp follows its target
    # Vision observations and render_mode="rgb_array" frames.
    image_size: int = 128
    render_width: int = 256
    render_height: int = 256
    shadows: bool = False
    reflections: bool = False
    multisamples: int = 0

    def __post_init__(self) -> None:
        if self.reward_type not in ("dense", "sparse"):
            raise ValueError(f"reward_type must be 'dense' or 'sparse', got {self.reward_type!r}")
        if not isinstance(self.control_hz, (int, float)) or not self.control_hz > 0:
            raise ValueError(f"control_hz must be a positive number, got {self.control_hz!r}")
        for name in ("block_xy_low", "block_xy_high", "home_tcp", "workspace_low", "workspace_high"):
            # Stored as tuples of floats whatever sequence came in (a YAML list, a numpy array).
            value = getattr(self, name)
            size = 2 if name.startswith("block") else 3
            try:
                numbers = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                numbers = ()
            if len(numbers) != size or not all(math.isfinite(v) for v in numbers):
                raise ValueError(f"{name} must be {size} finite numbers, got {value!r}")
            object.__setattr__(self, name, numbers)
        if not all(lo <= hi for lo, hi in zip(self.block_xy_low, self.block_xy_high)):
            raise ValueError(f"block_xy_low {self.block_xy_low} must be <= "
                             f"block_xy_high {self.block_xy_high}")
        if not all(lo < hi for lo, hi in zip(self.workspace_low, self.workspace_high)):
            raise ValueError(f"workspace_low {self.workspace_low} must be < "
                             f"workspace_high {self.workspace_high}")
        low, high = self.workspace_low, self.workspace_high
        if not all(lo <= h <= hi for lo, h, hi in zip(low, self.home_tcp, high)):
            raise ValueError(f"home_tcp {self.home_tcp} must lie inside the workspace box")
        for name in ("success_lift", "dense_full_lift", "max_tcp_speed", "weld_timeconst"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not isinstance(self.multisamples, int) or self.multisamples < 0:
            raise ValueError(f"multisamples must be an integer >= 0, got {self.multisamples!r}")
        for name in ("image_size", "render_width", "render_height"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "PandaPickCubeConfig":
        """Build from constructor kwargs, naming any unknown ones (e.g. a misspelt option)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown PandaPickCube option(s) {unknown}; valid options: {sorted(known)}")
        return cls(**kwargs)


class PandaPickCubeEnv(gym.Env):
    """State-observation pick-cube (``PandaPickCube-v0``); see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None, **config: Any):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = PandaPickCubeConfig.from_kwargs(**config)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.config.control_hz}

        self.model = build_model(self.config.weld_timeconst)
        self.data = mujoco.MjData(self.model)
        self.ids: SceneIds = scene_ids(self.model)
        self.substeps = self._substeps_per_step(self.config.control_hz, self.model.opt.timestep)
        self.max_step = self.config.max_tcp_speed / self.config.control_hz  # metres per env step
        self._workspace_low = np.array(self.config.workspace_low)
        self._workspace_high = np.array(self.config.workspace_high)
        self._block_rest_z = BLOCK_HALF_SIZE
        self._velocity = np.zeros(6)  # scratch for mj_objectVelocity: [angular, linear]
        # Which finger, if any, each geom belongs to (0 for none), as a list for the per-step check.
        finger_bit = np.zeros(self.model.ngeom, dtype=np.int64)
        finger_bit[self.ids.left_finger_geoms] = LEFT_FINGER
        finger_bit[self.ids.right_finger_geoms] = RIGHT_FINGER
        self._finger_bit: list[int] = finger_bit.tolist()
        self._home_qpos, self._home_quat = self._settle_home_pose()

        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.observation_space = self._make_observation_space()
        self._video_renderer: OffscreenRenderer | None = None

    # ----------------------------------------------------------------------------- set-up
    @staticmethod
    def _substeps_per_step(control_hz: float, timestep: float) -> int:
        substeps = round(1.0 / (control_hz * timestep))
        if substeps < 1 or abs(substeps * timestep * control_hz - 1.0) > 1e-6:
            raise ValueError(
                f"control_hz={control_hz} does not divide the physics rate {1 / timestep:.0f} Hz "
                f"into whole substeps; use e.g. 10 or 50"
            )
        return substeps

    def _settle_home_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Find the arm posture that puts the tcp at ``home_tcp``, by letting the weld pull it there.

        Starts from the rest posture (gripper pointing down), keeps that orientation as the fixed
        tcp orientation, and simulates until the arm has settled. The result is the same on every
        call (MuJoCo is deterministic), so every reset starts from exactly this posture. The
        null-space spring is re-centred on it so that the arm rests there.
        """
        model, data, ids = self.model, self.data, self.ids
        mujoco.mj_resetData(model, data)
        data.qpos[ids.arm_qpos] = PANDA_REST_POSTURE
        self._park_block_out_of_reach()
        mujoco.mj_forward(model, data)
        tcp_quat = np.empty(4)
        mujoco.mju_mat2Quat(tcp_quat, data.site_xmat[ids.tcp_site])
        data.mocap_quat[ids.tcp_target_mocap] = tcp_quat
        data.mocap_pos[ids.tcp_target_mocap] = self.config.home_tcp
        mujoco.mj_step(model, data, nstep=round(HOME_SETTLE_SECONDS / model.opt.timestep))
        home_qpos = data.qpos.copy()
        model.qpos_spring[ids.arm_qpos] = home_qpos[ids.arm_qpos]
        reached = np.linalg.norm(data.site_xpos[ids.tcp_site] - np.asarray(self.config.home_tcp))
        if reached > 0.01:
            raise ValueError(f"home_tcp {self.config.home_tcp} is out of the arm's reach "
                             f"(off by {reached:.3f} m)")
        return home_qpos, tcp_quat

    def _park_block_out_of_reach(self) -> None:
        adr = self.ids.block_qpos
        self.data.qpos[adr:adr + 7] = [2.0, 2.0, BLOCK_HALF_SIZE, 1.0, 0.0, 0.0, 0.0]

    def _make_observation_space(self) -> gym.Space:
        return gym.spaces.Box(-np.inf, np.inf, shape=(STATE_OBS_SIZE,), dtype=np.float32)

    # ----------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        model, data, ids = self.model, self.data, self.ids
        mujoco.mj_resetData(model, data)
        data.qpos[:] = self._home_qpos
        block_xy = self.np_random.uniform(self.config.block_xy_low, self.config.block_xy_high)
        adr = ids.block_qpos
        data.qpos[adr:adr + 7] = [block_xy[0], block_xy[1], self._block_rest_z, 1.0, 0.0, 0.0, 0.0]
        data.mocap_pos[ids.tcp_target_mocap] = self.config.home_tcp
        data.mocap_quat[ids.tcp_target_mocap] = self._home_quat
        data.ctrl[ids.gripper_actuator] = GRIPPER_OPEN_CTRL
        mujoco.mj_forward(model, data)
        return self._observation(), {"success": False, "lift": 0.0, "grasped": False}

    def step(self, action):
        self.apply_action(action)
        # All substeps in one call into C. Afterwards, positions and velocities in `data` (xpos,
        # site_xpos, cvel) are those computed at the start of the last substep, one 2 ms substep
        # old; an extra mj_forward to refresh them would cost more than it is worth.
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)

        data, ids = self.data, self.ids
        lift = float(data.xpos[ids.block_body, 2] - self._block_rest_z)
        grasped = self._block_between_fingers()
        success = grasped and lift >= self.config.success_lift
        reward = self._reward(lift, success)
        terminated = bool(success and self.config.terminate_on_success)
        info = {"success": success, "lift": lift, "grasped": grasped}
        return self._observation(), reward, terminated, False, info

    def apply_action(self, action) -> None:
        """Turn an action into the weld target and gripper control, without stepping the physics.

        ``step`` = ``apply_action`` + ``mj_step`` x substeps + observation and reward; the speed
        benchmark calls the parts separately to time the physics alone.
        """
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (4,):
            raise ValueError(f"action must have shape (4,), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite, got {action}")
        action = np.minimum(np.maximum(action, -1.0), 1.0)
        data, ids = self.data, self.ids
        tcp = data.site_xpos[ids.tcp_site]
        target = data.mocap_pos[ids.tcp_target_mocap] + action[:3] * self.max_step
        # Anti-windup: never lead the real tcp by more than one step (e.g. when pressing the table).
        target = np.minimum(np.maximum(target, tcp - self.max_step), tcp + self.max_step)
        target = np.minimum(np.maximum(target, self._workspace_low), self._workspace_high)
        data.mocap_pos[ids.tcp_target_mocap] = target
        data.ctrl[ids.gripper_actuator] = GRIPPER_CLOSED_CTRL if action[3] > 0 else GRIPPER_OPEN_CTRL

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._video_renderer is None:  # created on first use: the state env needs no GL otherwise
            self._video_renderer = OffscreenRenderer(self.model, self._render_options(
                self.config.render_width, self.config.render_height))
        return self._video_renderer.render(self.data, self.ids.front_camera)

    def close(self):
        if self._video_renderer is not None:
            self._video_renderer.close()
            self._video_renderer = None

    # ----------------------------------------------------------------------------- task logic
    def _render_options(self, width: int, height: int) -> RenderOptions:
        c = self.config
        return RenderOptions(width=width, height=height, shadows=c.shadows,
                             reflections=c.reflections, multisamples=c.multisamples)

    def _block_between_fingers(self) -> bool:
        """True when the cube touches a collision geom of each finger.

        A plain loop over the few active contacts (typically under 20) is several times faster
        than the numpy equivalent, and this runs on every step.
        """
        ncon = self.data.ncon
        if ncon == 0:
            return False
        block, finger_bit = self.ids.block_geom, self._finger_bit
        touching = 0  # bitwise OR of LEFT_FINGER / RIGHT_FINGER over the cube's contacts
        for geom1, geom2 in self.data.contact.geom[:ncon].tolist():
            if geom1 == block:
                touching |= finger_bit[geom2]
            elif geom2 == block:
                touching |= finger_bit[geom1]
        return touching == LEFT_FINGER | RIGHT_FINGER

    def _reward(self, lift: float, success: bool) -> float:
        if self.config.reward_type == "sparse":
            return float(success)
        distance = math.dist(self.data.site_xpos[self.ids.tcp_site], self.data.xpos[self.ids.block_body])
        lift_progress = min(max(lift / self.config.dense_full_lift, 0.0), 1.0)
        return 0.3 * math.exp(-20.0 * distance) + 0.7 * lift_progress

    def _proprio(self, out: np.ndarray) -> None:
        """Write tcp position, tcp linear velocity and gripper opening into ``out[0:7]``."""
        data, ids = self.data, self.ids
        out[0:3] = data.site_xpos[ids.tcp_site]
        mujoco.mj_objectVelocity(self.model, data, mujoco.mjtObj.mjOBJ_SITE, ids.tcp_site,
                                 self._velocity, 0)  # 0: world-frame axes
        out[3:6] = self._velocity[3:6]
        # Gap between the pads' inner faces: the distance between their centres less their thickness.
        (left1, left2), (right1, right2) = ids.left_pad_geoms, ids.right_pad_geoms
        xpos = data.geom_xpos
        left_centre = (xpos[left1] + xpos[left2]) * 0.5
        right_centre = (xpos[right1] + xpos[right2]) * 0.5
        centre_distance = math.dist(left_centre, right_centre)
        out[6] = centre_distance - 2.0 * ids.pad_half_thickness

    def _observation(self):
        obs = np.empty(STATE_OBS_SIZE, dtype=np.float32)
        self._proprio(obs)
        obs[7:10] = self.data.xpos[self.ids.block_body]
        return obs


class PandaPickCubeVisionEnv(PandaPickCubeEnv):
    """``PandaPickCubeVision-v0``: two 128x128 RGB cameras (front, wrist) plus 7-D proprioception."""

    def __init__(self, render_mode: str | None = None, **config: Any):
        super().__init__(render_mode=render_mode, **config)
        size = self.config.image_size
        self._camera_renderer = OffscreenRenderer(self.model, self._render_options(size, size))

    def _make_observation_space(self) -> gym.Space:
        size = self.config.image_size
        image = gym.spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8)
        return gym.spaces.Dict({
            "state": gym.spaces.Box(-np.inf, np.inf, shape=(PROPRIO_SIZE,), dtype=np.float32),
            "front": image,
            "wrist": image,
        })

    def _observation(self):
        state = np.empty(PROPRIO_SIZE, dtype=np.float32)
        self._proprio(state)
        return {
            "state": state,
            "front": self._camera_renderer.render(self.data, self.ids.front_camera),
            "wrist": self._camera_renderer.render(self.data, self.ids.wrist_camera),
        }

    def close(self):
        super().close()
        if self._camera_renderer is not None:
            self._camera_renderer.close()
            self._camera_renderer = None
