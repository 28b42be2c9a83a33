"""How closely the play table's controller follows its actions: asked against achieved tcp motion.

:func:`tracking_walk` drives the tcp through seeded waypoints in the free space above the desk
(clear of the cabinet, the desk top and the button and switch plates), each reached by the scripted
expert's proportional action (full-scale steps of up to 3.5 cm and 0.087 rad while far, smaller ones
near the waypoint), with the gripper turned to a seeded yaw. For every step it compares the motion
the action asks for (the current tcp moved by the action, inside the workspace box) with the motion
achieved. Steps in contact with the desk are left out: there the desk, not the controller, stops the
arm. ``benchmarks/calvin_tracking.py`` prints the figures; the suite bounds them.
"""
from __future__ import annotations

import math

import numpy as np

from envs.calvin.expert import OPEN, ScriptedExpert
from envs.calvin.play_table import MAX_REL_ORN, MAX_REL_POS, WORKSPACE_HIGH, WORKSPACE_LOW

# Free space in front of the cabinet (its face is at x = 0.50; the wrist stands up to 10 cm beyond
# the tcp), above the desk top, between the button and switch plates, and far enough from the base
# (x >= 0.28) that the elbow, folded to reach down there, stays off its joint limit.
WALK_LOW = (0.28, -0.30, 0.08)
WALK_HIGH = (0.40, 0.30, 0.30)
WALK_YAW = 1.2  # radians either side of the arm's middle
STEPS_PER_WAYPOINT = 20
MIN_ASKED = 0.004  # metres: steps that ask for less (settling on a waypoint) say little about tracking


def _angle(p, q0, q1) -> float:
    """The rotation angle (radians) between two quaternions."""
    axis_angle = p.getAxisAngleFromQuaternion(p.getDifferenceQuaternion(q0, q1))
    return abs((axis_angle[1] + math.pi) % (2 * math.pi) - math.pi)


def tracking_walk(env, waypoints: int, seed: int = 0, reset_seed: int = 0) -> dict:
    """Walk the tcp of `env` (a CalvinPlayTableEnv, reset here with `reset_seed`) through `waypoints`
    seeded waypoints; returns per-step arrays (steps asking for at least MIN_ASKED, out of contact):
    ``asked`` and ``achieved`` tcp displacements [N, 3] (metres), ``orn_error`` (radians between the
    asked and the achieved orientation), and the summary: ``error_mm`` (mean |asked - achieved|),
    ``error_p95_mm``, ``ratio`` (mean of the achieved motion along the asked one, over its length),
    ``orn_error_mrad``."""
    base = env.unwrapped
    p = base.p
    rng = np.random.default_rng(seed)
    base.reset(seed=reset_seed)
    expert = ScriptedExpert(base)
    asked, achieved, orn_error = [], [], []
    for _ in range(waypoints):
        goal = rng.uniform(WALK_LOW, WALK_HIGH)
        yaw = float(rng.uniform(-WALK_YAW, WALK_YAW))
        for _ in range(STEPS_PER_WAYPOINT):
            pos0, orn0 = base._tcp()
            action, _ = expert._action(goal, yaw, OPEN)
            # What the action asks for, by its definition (the env's docstring), not read from the env.
            target = np.clip(np.asarray(pos0) + np.clip(action[:3], -1, 1) * MAX_REL_POS, WORKSPACE_LOW,
                             WORKSPACE_HIGH)
            rotvec = np.clip(action[3:6], -1, 1) * MAX_REL_ORN
            angle = float(np.linalg.norm(rotvec))
            orn_target = orn0 if angle < 1e-9 else p.multiplyTransforms(
                [0, 0, 0], p.getQuaternionFromAxisAngle((rotvec / angle).tolist(), angle), [0, 0, 0], orn0)[1]
            base.step(action)
            pos1, orn1 = base._tcp()
            want = target - np.asarray(pos0)
            if np.linalg.norm(want) < MIN_ASKED or p.getContactPoints(base.robot, base.desk,
                                                                       physicsClientId=base.client):
                continue
            asked.append(want)
            achieved.append(np.asarray(pos1) - np.asarray(pos0))
            orn_error.append(_angle(p, orn_target, orn1))
    asked, achieved = np.asarray(asked), np.asarray(achieved)
    error = np.linalg.norm(asked - achieved, axis=1)
    ratio = np.einsum("ij,ij->i", achieved, asked) / np.einsum("ij,ij->i", asked, asked)
    return {"steps": len(asked), "asked": asked, "achieved": achieved, "orn_error": np.asarray(orn_error),
            "error_mm": float(1000 * error.mean()), "error_p95_mm": float(1000 * np.percentile(error, 95)),
            "ratio": float(ratio.mean()), "ratio_p5": float(np.percentile(ratio, 5)),
            "asked_mm": float(1000 * np.linalg.norm(asked, axis=1).mean()),
            "orn_error_mrad": float(1000 * np.mean(orn_error))}
