"""``CalvinPlayTable-v0``: the CALVIN-style play table in pybullet (one env, one pybullet client).

Observation (a dict, CALVIN's layout):

* ``rgb_static``: uint8 [200, 200, 3], a fixed camera behind and above the robot, looking at the desk;
* ``rgb_gripper``: uint8 [84, 84, 3], a camera on the hand looking along the fingers;
* ``robot_obs``: float32 [15]: tcp position (3), tcp euler angles (3, xyz), gripper opening (1, metres
  between the fingers), the arm's 7 joint positions, the last gripper action (1: +1 open, -1 close);
* ``scene_obs``: float32 [24]: door, drawer, button, switch, bulb, LED, then each block's (red, blue,
  pink) position and euler angles (see :mod:`envs.calvin.state`).

Action, float32 [7] in [-1, 1]: CALVIN's relative action: tcp position change (x 0.02 m at 1), tcp
orientation change (world-frame rotation vector, 0.05 rad per axis at 1) and the gripper (> 0 open,
<= 0 close). The new tcp target is the current tcp pose moved by the action, kept inside a workspace
box. The controller reaches it within the step: inverse kinematics (pybullet's, within the joint
limits, iterated to a 1e-5 m residual) gives the arm's joint targets, plus a step along the arm's
self-motion (the Jacobian's null vector) towards a rest posture facing the target, so that the
redundant elbow swing does not drift over a long chain; position control at CALVIN's 200 N m per
joint follows a ramp from the current joints to those targets over the step's 8 physics steps
(1/240 s each: 30 Hz control), with the ramp's velocity as the motors' target velocity. On the 2-core
VM (benchmarks/calvin_tracking.py) a step ends 0.3 mm from its target on average in free space; the
earlier controller (one IK solve, the Panda's rated torques, position control towards the end point
only) ended 11 mm from it, having covered 55% of the motion asked.

Renderer (``renderer``): ``tiny`` is pybullet's software TinyRenderer (any CPU, the default);
``egl`` loads pybullet's eglRenderer plugin and renders with the GPU's OpenGL (a GPU machine; the
camera images then come from ER_BULLET_HARDWARE_OPENGL). ``cameras: false`` renders nothing and leaves
the two images black (experts and oracle checks need no pixels).

Seeding: ``reset(seed=s)`` determines the episode; all randomness comes from ``self.np_random``, and
every reset rebuilds the world in an emptied client, so nothing of an earlier episode carries over.
``reset(options={"start": StartSpec})`` sets the symbolic start (door side, drawer, lights, where
each block is: the chain evaluation uses it), the rest still drawn from the seed.

Reward: 1 on the step where the episode's subtask (``options["task"]``, or ``task`` in the config)
is completed by the oracle from the episode's start state, else 0; ``info["success"]`` likewise.
Without a subtask the reward is 0 and ``info["completed"]`` lists every subtask completed so far.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.calvin import scene as S
from envs.calvin.state import COLOURS, BlockState, SceneState, yaw_quat
from envs.calvin.tasks import TASKS, completed_tasks, is_completed

STATIC_SIZE = 200
GRIPPER_SIZE = 84
ROBOT_OBS_SIZE = 15
SCENE_OBS_SIZE = 24
PHYSICS_HZ = 240
CONTROL_HZ = 30
# The static camera: above the desk, to the robot's right, so neither the arm nor the cabinet hides the top.
STATIC_EYE = (0.10, -0.85, 0.85)
STATIC_TARGET = (0.42, 0.0, 0.0)
MAX_REL_POS = 0.02  # metres per step at |action| = 1 (CALVIN's scale)
MAX_REL_ORN = 0.05  # radians per step at |action| = 1
# The Panda's home posture: gripper pointing down above the middle of the desk.
HOME_JOINTS = (0.0, -0.30, 0.0, -2.25, 0.0, 1.95, 0.785)
# CALVIN's joint force limit (N m) for every arm joint, so that position control keeps the posture
# against contacts and reaches the step's joint targets (the Panda's rated 87/12 N m let the wrist
# lag by up to half a step and the arm be pushed back by the door).
ARM_FORCES = (200.0,) * 7
FINGER_FORCE = 40.0
FINGER_OPEN = 0.04
TCP_LINK = 11  # panda_grasptarget, between the fingertips
# Inverse kinematics: iterations and residual (m) so that the joint targets put the tcp on the step's
# target (50 iterations at 1e-4 left up to 2 mm at 15 cm; the steps ask for 3.5 cm at most).
IK_ITERATIONS = 100
IK_RESIDUAL = 1e-5
# Position control: the gain on the position error (per physics step) on top of the ramp's velocity.
POSITION_GAIN = 0.3
# Posture: each step moves the arm along its self-motion by REST_PULL of the way towards the rest
# posture (at most REST_STEP rad), so that the redundant elbow swing does not accumulate over a chain.
REST_PULL = 0.2
REST_STEP = 0.05
HAND_LINK = 8
FINGER_LINKS = (9, 10)
WORKSPACE_LOW = (0.10, -0.58, -0.14)
WORKSPACE_HIGH = (0.80, 0.58, 0.60)
# Desk link indices (the URDF's link order: drawer, door, button, switch, led, bulb).
DRAWER, DOOR, BUTTON, SWITCH, LED, BULB = range(6)
# Friction the moving parts' joints hold against (N): enough that they stay where they were pushed.
JOINT_HOLD_FORCE = {DRAWER: 4.0, DOOR: 4.0, SWITCH: 2.0}
BUTTON_SPRING_FORCE = 3.0  # the button's return spring


@dataclass(frozen=True)
class StartSpec:
    """A symbolic start state: where things are, not their exact poses."""

    door: str = "right"  # which half the door covers: right (joint 0) or left (DOOR_TRAVEL)
    drawer: str = "closed"  # closed | open
    led: int = 0
    bulb: int = 0
    blocks: tuple = (("red", "table"), ("blue", "table"), ("pink", "table"))  # (colour, table|slider|drawer)

    def where(self, colour: str) -> str:
        return dict(self.blocks)[colour]


@dataclass(frozen=True)
class PlayTableConfig:
    scene: str = "D"
    renderer: str = "tiny"  # tiny (CPU) | egl (GPU)
    cameras: bool = True
    task: str | None = None  # the episode's subtask, when not given at reset
    terminate_on_success: bool = True
    static_size: int = STATIC_SIZE
    gripper_size: int = GRIPPER_SIZE

    def __post_init__(self) -> None:
        S.variant(self.scene)
        if self.renderer not in ("tiny", "egl"):
            raise ValueError(f"renderer must be 'tiny' (CPU) or 'egl' (GPU), got {self.renderer!r}")
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"unknown subtask {self.task!r}; see envs.calvin.tasks.TASKS")
        for name in ("static_size", "gripper_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 8:
                raise ValueError(f"{name} must be an integer >= 8, got {getattr(self, name)!r}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> PlayTableConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown CalvinPlayTable option(s) {unknown}; valid options: {sorted(known)}")
        return cls(**kwargs)



def observation_space(static_size: int, gripper_size: int) -> gym.spaces.Dict:
    """The play table's observation space (module docstring) with cameras of these sizes."""
    return gym.spaces.Dict({
        "rgb_static": gym.spaces.Box(0, 255, (static_size, static_size, 3), np.uint8),
        "rgb_gripper": gym.spaces.Box(0, 255, (gripper_size, gripper_size, 3), np.uint8),
        "robot_obs": gym.spaces.Box(-np.inf, np.inf, (ROBOT_OBS_SIZE,), np.float32),
        "scene_obs": gym.spaces.Box(-np.inf, np.inf, (SCENE_OBS_SIZE,), np.float32),
    })

class CalvinPlayTableEnv(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(self, render_mode: str | None = None, **config: Any):
        import pybullet as p

        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.config = PlayTableConfig.from_kwargs(**config)
        self.variant = S.variant(self.config.scene)
        self.p = p
        self.client = p.connect(p.DIRECT)
        c = self.client
        self._egl_plugin = None
        if self.config.renderer == "egl":
            import pkgutil
            egl = pkgutil.get_loader("eglRenderer")
            if egl is None:
                raise RuntimeError("renderer 'egl' needs pybullet's eglRenderer plugin, which this pybullet lacks")
            self._egl_plugin = p.loadPlugin(egl.get_filename(), "_eglRendererPlugin", physicsClientId=c)
            self._renderer_flag = p.ER_BULLET_HARDWARE_OPENGL
        else:
            self._renderer_flag = p.ER_TINY_RENDERER
        self._build()
        self.arm_joints = list(range(7))
        info = [p.getJointInfo(self.robot, j, physicsClientId=c) for j in self.arm_joints]
        self._lower = [i[8] for i in info] + [0.0, 0.0]
        self._upper = [i[9] for i in info] + [FINGER_OPEN, FINGER_OPEN]
        self._ranges = [u - lo for lo, u in zip(self._lower, self._upper)]
        self._ws_low, self._ws_high = np.array(WORKSPACE_LOW), np.array(WORKSPACE_HIGH)
        self._substeps = PHYSICS_HZ // CONTROL_HZ
        self._static_view = p.computeViewMatrix(STATIC_EYE, STATIC_TARGET, [0, 0, 1])
        self._static_proj = p.computeProjectionMatrixFOV(60, 1.0, 0.05, 5.0)
        self._gripper_proj = p.computeProjectionMatrixFOV(75, 1.0, 0.01, 2.0)
        self._black_static = np.zeros((self.config.static_size, self.config.static_size, 3), np.uint8)
        self._black_gripper = np.zeros((self.config.gripper_size, self.config.gripper_size, 3), np.uint8)

        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(7,), dtype=np.float32)
        self.observation_space = observation_space(self.config.static_size, self.config.gripper_size)
        self.led = self.bulb = 0
        self._button_was_down = False
        self._gripper_action = 1.0
        self.task: str | None = None
        self.start_state: SceneState | None = None
        self._completed: set[str] = set()
        self._render = True  # False inside cameras_off()

    def _build(self) -> None:
        """Load the world into an empty client (at construction and at every reset: a fresh world is the
        only state pybullet fully resets; restoring a saved state or moving bodies keeps solver and
        inverse-kinematics caches that make an episode depend on the ones before it)."""
        import pybullet_data
        p, c = self.p, self.client
        p.setTimeStep(1.0 / PHYSICS_HZ, physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=c)
        data = pybullet_data.getDataPath()
        self.floor = p.loadURDF(f"{data}/plane.urdf", [0, 0, S.FLOOR_Z], physicsClientId=c)
        self.robot = p.loadURDF(f"{data}/franka_panda/panda.urdf", [0, 0, 0], useFixedBase=True,
                                flags=p.URDF_USE_INERTIA_FROM_FILE, physicsClientId=c)
        self.desk = p.loadURDF(str(S.ASSETS / f"desk_{self.config.scene}.urdf"), useFixedBase=True,
                               physicsClientId=c)
        self.blocks = {colour: p.loadURDF(str(S.ASSETS / f"block_{colour}.urdf"), [1.5, i, 0.1],
                                          physicsClientId=c) for i, colour in enumerate(COLOURS)}
        self.block_of = {uid: colour for colour, uid in self.blocks.items()}
        for uid in self.blocks.values():
            p.changeDynamics(uid, -1, lateralFriction=1.0, spinningFriction=0.001, physicsClientId=c)
        for link in FINGER_LINKS:
            p.changeDynamics(self.robot, link, lateralFriction=1.5, physicsClientId=c)
        for j in (DRAWER, DOOR, SWITCH, BUTTON):
            p.changeDynamics(self.desk, j, lateralFriction=0.6, physicsClientId=c)

    # ------------------------------------------------------------------------------------ reset
    def sample_start(self) -> StartSpec:
        """A random symbolic start: door side, drawer, lights at random; each block on the table, except
        that one block starts in the slider's open half or (with the drawer open) in the drawer a quarter
        of the time each."""
        r = self.np_random
        drawer = "open" if r.random() < 0.5 else "closed"
        where = {c: "table" for c in COLOURS}
        u = r.random()
        if u < 0.25:
            where[COLOURS[r.integers(3)]] = "slider"
        elif u < 0.5 and drawer == "open":
            where[COLOURS[r.integers(3)]] = "drawer"
        return StartSpec(door="right" if r.random() < 0.5 else "left", drawer=drawer,
                         led=int(r.integers(2)), bulb=int(r.integers(2)),
                         blocks=tuple((c, where[c]) for c in COLOURS))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"start", "task"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; options are 'start' and 'task'")
        spec = options.get("start") or self.sample_start()
        if not isinstance(spec, StartSpec):
            raise TypeError(f"reset option 'start' must be a StartSpec, got {type(spec).__name__}")
        task = options.get("task", self.config.task)
        if task is not None and task not in TASKS:
            raise ValueError(f"unknown subtask {task!r}; see envs.calvin.tasks.TASKS")
        self.task = task
        self._place(spec)
        self.start_state = self.scene_state()
        self._completed: set[str] = set()
        return self._observation(), {"success": False, "completed": [], "task": self.task}

    @contextlib.contextmanager
    def cameras_off(self):
        """Steps and resets inside render no images (the cameras stay black): for steps no policy sees, such as
        the expert setting a subtask up. Rendering is most of a step's time on the CPU renderer."""
        was, self._render = self._render, False
        try:
            yield self
        finally:
            self._render = was

    def begin_subtask(self) -> dict:
        """Judge the episode's subtask from the current state on (after a prefix of other subtasks set it up,
        e.g. the lift before a place): it becomes the start state. Returns the current observation."""
        self.start_state = self.scene_state()
        self._completed = set()
        return self._observation(self.start_state)

    def _place(self, spec: StartSpec) -> None:
        p, c, r = self.p, self.client, self.np_random
        p.resetSimulation(physicsClientId=c)
        self._build()
        for j, q in enumerate(HOME_JOINTS):
            p.resetJointState(self.robot, j, q, 0.0, physicsClientId=c)
        for j in FINGER_LINKS:
            p.resetJointState(self.robot, j, FINGER_OPEN, 0.0, physicsClientId=c)
        self._gripper_action = 1.0
        self._set_arm_targets(list(HOME_JOINTS), FINGER_OPEN)
        if spec.door not in ("left", "right") or spec.drawer not in ("open", "closed"):
            raise ValueError(f"StartSpec door must be left|right and drawer open|closed, got {spec}")
        # The door at (within 5 mm of) an end: the open half is then wide enough for the hand to reach in.
        door = (S.DOOR_TRAVEL - r.uniform(0, 0.005)) if spec.door == "left" else r.uniform(0, 0.005)
        drawer = r.uniform(S.DRAWER_TRAVEL - 0.02, S.DRAWER_TRAVEL) if spec.drawer == "open" else r.uniform(0, 0.01)
        self.led, self.bulb = int(spec.led), int(spec.bulb)
        switch = r.uniform(S.SWITCH_TRAVEL - 0.02, S.SWITCH_TRAVEL) if self.bulb else r.uniform(0, 0.02)
        for j, q in ((DRAWER, drawer), (DOOR, door), (BUTTON, 0.0), (SWITCH, switch)):
            p.resetJointState(self.desk, j, q, 0.0, physicsClientId=c)
        for j, force in JOINT_HOLD_FORCE.items():
            p.setJointMotorControl2(self.desk, j, p.VELOCITY_CONTROL, targetVelocity=0, force=force,
                                    physicsClientId=c)
        p.setJointMotorControl2(self.desk, BUTTON, p.POSITION_CONTROL, targetPosition=0.0,
                                force=BUTTON_SPRING_FORCE, positionGain=0.2, physicsClientId=c)
        self._button_was_down = False
        self._show_lights()
        # Three blocks 11 cm apart in the band rarely leave no room for the last one: then all of them again.
        for _ in range(100):
            poses = self._block_poses(spec, door, drawer)
            if poses is not None:
                break
        else:  # pragma: no cover - the band holds three blocks easily
            raise RuntimeError("could not place the blocks apart")
        for colour, (pos, yaw) in poses.items():
            p.resetBasePositionAndOrientation(self.blocks[colour], pos, yaw_quat(yaw), physicsClientId=c)
            p.resetBaseVelocity(self.blocks[colour], [0, 0, 0], [0, 0, 0], physicsClientId=c)
        for _ in range(self._substeps * 3):  # let the blocks settle onto their supports
            p.stepSimulation(physicsClientId=c)

    def _block_poses(self, spec: StartSpec, door: float, drawer: float) -> dict | None:
        """Each block's (position, yaw) for the symbolic start `spec`, drawn from np_random; None when the
        table blocks drawn so far leave no room for the next one."""
        r, v = self.np_random, self.variant
        placed: list[tuple[float, float]] = []
        poses = {}
        for colour in COLOURS:
            where = spec.where(colour)
            _sx, _sy, sz = S.BLOCKS[colour]
            yaw = r.uniform(-math.pi / 6, math.pi / 6)
            if where == "table":
                for _ in range(1000):
                    # Clear of the door handle (it reaches out to x = 0.44) and of the table's front edge; with room
                    # on both sides for a 10 cm push before the switch's rail and the button's plate (scene.BLOCK_START_Y).
                    x, y = r.uniform(0.34, 0.40), r.uniform(-S.BLOCK_START_Y, S.BLOCK_START_Y)
                    if all((x - a) ** 2 + (y - b) ** 2 > 0.11 ** 2 for a, b in placed):
                        break
                else:
                    return None
                placed.append((x, y))
                z = sz / 2 + 0.001
            elif where == "slider":
                lo, hi = v.open_half(door)
                # Near the open half's middle, so the hand reaching in from the front clears the door.
                x, y = r.uniform(0.57, 0.59), (lo + hi) / 2 + r.uniform(-0.01, 0.01)
                yaw = r.uniform(-0.15, 0.15)  # square to the front: the gripper reaches it along x
                z = sz / 2 + 0.001
            elif where == "drawer":
                x = S.DRAWER_FRONT_X - drawer + 0.05 + r.uniform(0, 0.02)
                y = v.drawer_y + r.uniform(-0.02, 0.02)  # the hand (21 cm across) fits between the side walls
                z = S.DRAWER_Z[0] + 0.01 + sz / 2 + 0.001
                yaw = r.uniform(-0.2, 0.2)
            else:
                raise ValueError(f"a block starts on the table, in the slider or in the drawer, got {where!r}")
            poses[colour] = ((x, y, z), yaw)
        return poses

    # ------------------------------------------------------------------------------------ step
    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (7,):
            raise ValueError(f"action must have shape (7,), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite, got {action}")
        action = np.clip(action, -1.0, 1.0)
        p = self.p
        pos, orn = self._tcp()
        target = np.clip(np.asarray(pos) + action[:3] * MAX_REL_POS, self._ws_low, self._ws_high)
        rotvec = action[3:6] * MAX_REL_ORN
        angle = float(np.linalg.norm(rotvec))
        if angle > 1e-9:
            delta = p.getQuaternionFromAxisAngle((rotvec / angle).tolist(), angle)
            _, orn = p.multiplyTransforms([0, 0, 0], delta, [0, 0, 0], orn)
        self._gripper_action = 1.0 if action[6] > 0 else -1.0
        current = self._arm_positions()
        joints = self._solve_ik(target.tolist(), orn, current)
        self._drive_arm(current, joints, FINGER_OPEN if self._gripper_action > 0 else 0.0)
        state = self.scene_state()
        if self.task is not None:
            success = is_completed(self.task, self.start_state, state)
            completed = [self.task] if success else []
        else:
            self._completed |= completed_tasks(self.start_state, state)
            completed, success = sorted(self._completed), False
        terminated = bool(success and self.config.terminate_on_success)
        info = {"success": success, "completed": completed, "task": self.task}
        return self._observation(state), float(success), terminated, False, info

    def _arm_positions(self) -> list[float]:
        """The arm's 7 joint positions and the two fingers'."""
        states = self.p.getJointStates(self.robot, self.arm_joints + list(FINGER_LINKS), physicsClientId=self.client)
        return [s[0] for s in states]

    def _solve_ik(self, pos, orn, current: list[float]) -> list[float]:
        """Arm joint targets that put the tcp at (pos, orn), moved along the arm's self-motion towards
        the rest posture. pybullet's null-space IK keeps the current posture (its rest-pose term
        stops acting once the residual is reached, so it cannot hold a posture), and that posture
        drifts over a chain; the self-motion step moves no tcp coordinate to first order (the tracking
        test bounds what remains)."""
        joints = self.p.calculateInverseKinematics(
            self.robot, TCP_LINK, pos, orn, lowerLimits=self._lower, upperLimits=self._upper,
            jointRanges=self._ranges, restPoses=list(current), maxNumIterations=IK_ITERATIONS,
            residualThreshold=IK_RESIDUAL, physicsClientId=self.client)
        q = np.asarray(joints[:7])
        n = self._self_motion(current)
        # The rest posture: the home posture turned about the base to face the target, so that the
        # forearm reaches along the line to the hand (not past a door edge beside it); the last joint
        # is set by the gripper's yaw and does not count.
        rest = np.asarray(HOME_JOINTS)
        rest[0] = math.atan2(pos[1], pos[0])
        w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
        alpha = -REST_PULL * float(n @ (w * (q - rest))) / float(n @ (w * n))
        return (q + float(np.clip(alpha, -REST_STEP, REST_STEP)) * n).tolist()

    def _self_motion(self, current: list[float]) -> np.ndarray:
        """The unit joint direction that moves the tcp pose not at all (to first order): for a 6-D pose
        the 7-joint arm has one, the elbow's swing about the shoulder-wrist line; the Jacobian's null
        vector at the current posture."""
        zeros = [0.0] * len(current)
        lin, ang = self.p.calculateJacobian(self.robot, TCP_LINK, [0, 0, 0], list(current), zeros, zeros,
                                            physicsClientId=self.client)
        jac = np.vstack([np.asarray(lin)[:, :7], np.asarray(ang)[:, :7]])
        return np.linalg.svd(jac)[2][-1]

    def _drive_arm(self, current: list[float], joints: list[float], finger: float) -> None:
        """Run the control period's physics steps with the arm's position targets on a ramp from the
        current posture to `joints` and the ramp's velocity as the motors' target velocity: position
        control towards the end point alone covers only part of the way in 1/30 s (at pybullet's gain,
        about 55%) and a higher gain overshoots."""
        p, c, n = self.p, self.client, self._substeps
        q0, q1 = np.asarray(current[:7]), np.asarray(joints)
        velocity = ((q1 - q0) * (PHYSICS_HZ / n)).tolist()
        p.setJointMotorControlArray(self.robot, list(FINGER_LINKS), p.POSITION_CONTROL,
                                    targetPositions=[finger, finger], forces=[FINGER_FORCE] * 2, physicsClientId=c)
        for i in range(n):
            # The ramp's point at the start of the physics step: the motor's target velocity then ends
            # the step on the ramp's next point.
            p.setJointMotorControlArray(self.robot, self.arm_joints, p.POSITION_CONTROL,
                                        targetPositions=(q0 + (q1 - q0) * i / n).tolist(), targetVelocities=velocity,
                                        forces=ARM_FORCES, positionGains=[POSITION_GAIN] * 7, physicsClientId=c)
            p.stepSimulation(physicsClientId=c)
            self._update_lights()

    def _set_arm_targets(self, joints: list[float], finger: float) -> None:
        p, c = self.p, self.client
        p.setJointMotorControlArray(self.robot, self.arm_joints, p.POSITION_CONTROL, targetPositions=joints,
                                    forces=ARM_FORCES, physicsClientId=c)
        p.setJointMotorControlArray(self.robot, list(FINGER_LINKS), p.POSITION_CONTROL,
                                    targetPositions=[finger, finger], forces=[FINGER_FORCE] * 2, physicsClientId=c)

    def _update_lights(self) -> None:
        """The button toggles the LED when it goes down past BUTTON_PRESSED (once per press); the
        switch sets the bulb with hysteresis."""
        p, c = self.p, self.client
        button = p.getJointState(self.desk, BUTTON, physicsClientId=c)[0]
        down = button > S.BUTTON_PRESSED
        changed = False
        if down and not self._button_was_down:
            self.led, changed = 1 - self.led, True
            self._button_was_down = True
        elif button < S.BUTTON_PRESSED / 2:  # released far enough for the next press to count
            self._button_was_down = False
        switch = p.getJointState(self.desk, SWITCH, physicsClientId=c)[0]
        bulb = 1 if switch > S.SWITCH_ON else 0 if switch < S.SWITCH_OFF else self.bulb
        if bulb != self.bulb:
            self.bulb, changed = bulb, True
        if changed:
            self._show_lights()

    def _show_lights(self) -> None:
        p, c = self.p, self.client
        p.changeVisualShape(self.desk, LED, rgbaColor=S.LED_ON if self.led else S.LED_OFF, physicsClientId=c)
        p.changeVisualShape(self.desk, BULB, rgbaColor=S.BULB_ON if self.bulb else S.BULB_OFF, physicsClientId=c)

    # ------------------------------------------------------------------------------------ state
    def _tcp(self):
        s = self.p.getLinkState(self.robot, TCP_LINK, computeForwardKinematics=1, physicsClientId=self.client)
        return s[4], s[5]

    def scene_state(self) -> SceneState:
        """The privileged state the oracles and experts read."""
        p, c = self.p, self.client
        joint = [p.getJointState(self.desk, j, physicsClientId=c)[0] for j in (DOOR, DRAWER, BUTTON, SWITCH)]
        blocks = {}
        for colour, uid in self.blocks.items():
            pos, quat = p.getBasePositionAndOrientation(uid, physicsClientId=c)
            fingers = {pt[4] for pt in p.getContactPoints(uid, self.robot, physicsClientId=c)}
            held = all(f in fingers for f in FINGER_LINKS)
            on = set()
            for pt in p.getContactPoints(uid, self.desk, physicsClientId=c):
                if pt[7][2] < 0.5:  # the normal on the desk points to the block: it rests on the desk only if up
                    continue
                link = pt[4]
                if link == DRAWER:
                    on.add("drawer")
                elif link == -1:
                    inside = (S.CABINET_FRONT_X - 0.005 < pos[0] < S.CABINET_BACK_X
                              and self.variant.cabinet_y_range[0] < pos[1] < self.variant.cabinet_y_range[1])
                    on.add("slider" if inside else "table")
            for other, ouid in self.blocks.items():
                # Resting on another block: touching it, with the centre at least 2 cm higher.
                if (other != colour and p.getContactPoints(uid, ouid, physicsClientId=c)
                        and pos[2] > p.getBasePositionAndOrientation(ouid, physicsClientId=c)[0][2] + 0.02):
                    on.add(other)
            blocks[colour] = BlockState(tuple(pos), tuple(quat), held, frozenset(on))
        return SceneState(door=joint[0], drawer=joint[1], button=joint[2], switch=joint[3], led=self.led,
                          bulb=self.bulb, blocks=blocks)

    def robot_obs(self) -> np.ndarray:
        p, c = self.p, self.client
        pos, orn = self._tcp()
        joints = [s[0] for s in p.getJointStates(self.robot, self.arm_joints + list(FINGER_LINKS), physicsClientId=c)]
        out = np.empty(ROBOT_OBS_SIZE, np.float32)
        out[0:3] = pos
        out[3:6] = p.getEulerFromQuaternion(orn)
        out[6] = joints[7] + joints[8]
        out[7:14] = joints[:7]
        out[14] = self._gripper_action
        return out

    # ------------------------------------------------------------------------------------ cameras
    def render_cameras(self) -> tuple[np.ndarray, np.ndarray]:
        p, c = self.p, self.client
        s, g = self.config.static_size, self.config.gripper_size
        static = p.getCameraImage(s, s, self._static_view, self._static_proj, renderer=self._renderer_flag,
                                  flags=p.ER_NO_SEGMENTATION_MASK, physicsClientId=c)[2]
        hand = p.getLinkState(self.robot, HAND_LINK, computeForwardKinematics=1, physicsClientId=c)
        # The camera sits on the hand's back, 5 cm off its axis, looking down the fingers (the hand's z).
        eye, _ = p.multiplyTransforms(hand[4], hand[5], [0.05, 0.0, 0.02], [0, 0, 0, 1])
        look, _ = p.multiplyTransforms(hand[4], hand[5], [0.0, 0.0, 0.25], [0, 0, 0, 1])
        up, _ = p.multiplyTransforms([0, 0, 0], hand[5], [1.0, 0.0, 0.0], [0, 0, 0, 1])
        view = p.computeViewMatrix(eye, look, up)
        gripper = p.getCameraImage(g, g, view, self._gripper_proj, renderer=self._renderer_flag,
                                   flags=p.ER_NO_SEGMENTATION_MASK, physicsClientId=c)[2]
        return (np.asarray(static, np.uint8).reshape(s, s, 4)[:, :, :3].copy(),
                np.asarray(gripper, np.uint8).reshape(g, g, 4)[:, :, :3].copy())

    def _observation(self, state: SceneState | None = None) -> dict:
        state = state or self.scene_state()
        if self.config.cameras and self._render:
            static, gripper = self.render_cameras()
        else:
            static, gripper = self._black_static, self._black_gripper
        return {"rgb_static": static, "rgb_gripper": gripper, "robot_obs": self.robot_obs(),
                "scene_obs": state.scene_obs()}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self.render_cameras()[0]

    def close(self):
        if getattr(self, "client", None) is not None:
            self.p.disconnect(physicsClientId=self.client)
            self.client = None
