"""The MuJoCo model of the pick-cube task: scene + Panda arm + Robotiq 2F-85 gripper.

The robot's meshes and kinematics come from the installed PyPI package ``gym-hil``
(its ``assets/panda.xml``); the scene (floor, cube, cameras, lights, physics options) is this
project's own ``assets/pick_cube_scene.xml``. The two are joined with ``mujoco.MjSpec`` and the
robot is changed in three ways:

1. Its seven joint torque motors are removed. The arm is moved by a *mocap weld* instead: an
   equality constraint pins the gripper's pinch site (the tool centre point, TCP) to a mocap body
   that the controller places. MuJoCo's constraint solver then computes the joint torques inside
   ``mj_step``, in C, so no Python operational-space controller runs per physics step (in SERL's
   franka_sim that controller is about 3/4 of the step time).
2. Every robot body gets gravity compensation, so the weld only has to produce motion, not hold
   the arm up, and the TCP does not sag.
3. Each arm joint gets a weak spring towards the home posture. The weld fixes 6 of the 7 degrees
   of freedom; the spring keeps the remaining (null-space) one from drifting over an episode.

Building the model takes about a second (mesh loading), so the compiled model is cached per
process and every environment gets its own copy.
"""
from __future__ import annotations

import copy
import functools
import importlib.util
import pathlib
from dataclasses import dataclass

import mujoco
import numpy as np

SCENE_XML = pathlib.Path(__file__).parent / "assets" / "pick_cube_scene.xml"

# A comfortable "elbow up, gripper pointing down" posture of the Panda: the starting point from
# which each env settles into its home TCP pose (and re-centres the null-space spring there).
PANDA_REST_POSTURE = np.array([0.0, 0.0, 0.0, -1.5708, 0.0, 1.5708, -0.7854])

ROBOT_PREFIX = "panda/"
ARM_JOINTS = tuple(f"{ROBOT_PREFIX}joint{i}" for i in range(1, 8))
# Joint-space stiffness (N m / rad) of the null-space spring: small next to the weld, so it shapes
# the posture without pulling the TCP off its target.
POSTURE_STIFFNESS = 1.0


def gym_hil_panda_xml() -> pathlib.Path:
    """Path of the Panda + 2F-85 MJCF shipped inside the installed ``gym-hil`` package.

    The package is located without being imported: its ``__init__`` pulls in pygame and pynput,
    which this project does not need (install it with ``pip install --no-deps gym-hil``).
    """
    spec = importlib.util.find_spec("gym_hil")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the Franka pick-cube env needs the robot assets of the PyPI package 'gym-hil'; "
            "install them with: pip install --no-deps gym-hil==0.1.14"
        )
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "assets" / "panda.xml"
    if not path.is_file():
        raise FileNotFoundError(f"gym-hil is installed but has no {path}")
    return path


@dataclass(frozen=True)
class SceneIds:
    """Indices into the compiled model of everything the environment reads or writes."""

    arm_qpos: np.ndarray  # qpos addresses of the 7 arm joints
    block_qpos: int  # qpos address of the cube's free joint (xyz, then quaternion wxyz)
    block_body: int
    block_geom: int
    tcp_site: int  # the gripper's pinch site: the tool centre point
    tcp_target_mocap: int  # index into data.mocap_pos of the weld target
    gripper_actuator: int
    left_pad_geoms: tuple[int, int]  # the two box pads of the left fingertip
    right_pad_geoms: tuple[int, int]
    pad_half_thickness: float  # half the pads' thickness across the gap (metres)
    left_finger_geoms: np.ndarray  # collision geoms of the left finger (pads and follower)
    right_finger_geoms: np.ndarray
    front_camera: int
    wrist_camera: int


def _build_spec(weld_timeconst: float) -> mujoco.MjSpec:
    scene = mujoco.MjSpec.from_file(str(SCENE_XML))
    robot = mujoco.MjSpec.from_file(str(gym_hil_panda_xml()))

    # (1) The arm is driven by the weld, so its torque motors go; the gripper actuator stays.
    for actuator in list(robot.actuators):
        if actuator.name.startswith("actuator"):
            robot.delete(actuator)
    # The robot file's sensors (joint torques, wrist force...) are unused; computing them costs time.
    for sensor in list(robot.sensors):
        robot.delete(sensor)
    # (2) Gravity compensation on every robot body.
    for body in robot.bodies:
        body.gravcomp = 1.0
    # (3) Null-space posture spring on the arm joints.
    for i, name in enumerate(ARM_JOINTS):
        joint = robot.joint(name[len(ROBOT_PREFIX):])
        joint.stiffness = [POSTURE_STIFFNESS, 0.0, 0.0]
        joint.springref = float(PANDA_REST_POSTURE[i])

    scene.worldbody.add_frame().attach_body(robot.body("link0"), ROBOT_PREFIX, "")

    weld = scene.add_equality()
    weld.name = "tcp_weld"
    weld.type = mujoco.mjtEq.mjEQ_WELD
    weld.objtype = mujoco.mjtObj.mjOBJ_SITE
    weld.name1 = "tcp_target"
    weld.name2 = f"{ROBOT_PREFIX}pinch"
    # Time constant of the weld's spring-damper (critically damped): how fast the TCP catches up.
    weld.solref = [weld_timeconst, 1.0]

    # The gym-hil file names its wrist camera "handcam_rgb"; the task calls it "wrist".
    robot_camera = scene.camera(f"{ROBOT_PREFIX}handcam_rgb")
    robot_camera.name = "wrist"
    return scene


@functools.lru_cache(maxsize=4)
def _compiled_model(weld_timeconst: float) -> mujoco.MjModel:
    return _build_spec(weld_timeconst).compile()


def build_model(weld_timeconst: float = 0.02) -> mujoco.MjModel:
    """A fresh copy of the compiled pick-cube model (safe to modify per environment)."""
    return copy.copy(_compiled_model(weld_timeconst))


def scene_ids(model: mujoco.MjModel) -> SceneIds:
    def body_geoms(body_names: tuple[str, ...]) -> np.ndarray:
        bodies = [model.body(ROBOT_PREFIX + name).id for name in body_names]
        # contype/conaffinity 0 marks visual-only geoms; only colliding ones can hold the cube.
        return np.array(
            [g for g in range(model.ngeom)
             if model.geom_bodyid[g] in bodies and (model.geom_contype[g] or model.geom_conaffinity[g])],
            dtype=np.int64,
        )

    block_joint = model.joint("block")
    return SceneIds(
        arm_qpos=np.array([model.joint(name).qposadr[0] for name in ARM_JOINTS]),
        block_qpos=int(block_joint.qposadr[0]),
        block_body=model.body("block").id,
        block_geom=model.geom("block").id,
        tcp_site=model.site(f"{ROBOT_PREFIX}pinch").id,
        tcp_target_mocap=int(model.body_mocapid[model.body("tcp_target").id]),
        gripper_actuator=model.actuator(f"{ROBOT_PREFIX}fingers_actuator").id,
        left_pad_geoms=tuple(model.geom(f"{ROBOT_PREFIX}left_pad{i}").id for i in (1, 2)),
        right_pad_geoms=tuple(model.geom(f"{ROBOT_PREFIX}right_pad{i}").id for i in (1, 2)),
        pad_half_thickness=float(model.geom(f"{ROBOT_PREFIX}left_pad1").size[1]),
        left_finger_geoms=body_geoms(("left_pad", "left_follower")),
        right_finger_geoms=body_geoms(("right_pad", "right_follower")),
        front_camera=model.camera("front").id,
        wrist_camera=model.camera("wrist").id,
    )
