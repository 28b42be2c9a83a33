"""Scripted experts with privileged simulator state, for demonstrations (and as a check of each task).

``ScriptedExpert(task).act(state)`` maps the batched privileged state (``privileged_state(env)``; the
vector env's ``privileged_state()``) to actions [B, 7] in [-1, 1] for the ``pd_ee_delta_pose``
controller (delta position x, y, z; delta rotation as axis-angle about the world axes; gripper, +1
open / -1 closed). All envs are handled at once with torch; each env's phase lives in a tensor and
starts over when its episode does (elapsed_steps == 0).

Phases for pick-and-place (ZarlPutOnPlate-v1, ZarlGSPutCubeOnPlate-v0, PickCube-v1): above the object (yawed to grasp it) ->
down to it -> close -> lift -> over the place position -> down -> open -> up. PickCube ends at the goal
and holds still; PushCube: behind the cube, down to table height, push it along +x into the goal.
"""
from __future__ import annotations

import math

import torch

import envs.maniskill.put_cube_on_plate as put_cube_on_plate
import envs.maniskill.put_on_plate as put_on_plate

MAX_DELTA = 0.1  # metres (and radians) per step at action 1 (pd_ee_delta_pose's bounds)

APPROACH, DESCEND, CLOSE, LIFT, MOVE, LOWER, RELEASE, RETREAT = range(8)


def _yaw_of(raw_pose: torch.Tensor) -> torch.Tensor:
    """Yaw (about world z) of the frame's x axis, from wxyz quaternions [B, 7 (p, q)]."""
    w, x, y, z = raw_pose[:, 3], raw_pose[:, 4], raw_pose[:, 5], raw_pose[:, 6]
    return torch.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def privileged_state(env) -> dict[str, torch.Tensor]:
    """The state an expert needs, from one (batched) ManiSkill env (its ``unwrapped``)."""
    if isinstance(env, (put_on_plate.PutOnPlateEnv, put_cube_on_plate.GSPutCubeOnPlateEnv)):
        return env.privileged_state()
    dev = env.device
    n = env.num_envs
    cube = getattr(env, "cube", None) or getattr(env, "obj")
    half = float(getattr(env, "cube_half_size", 0.02))
    if hasattr(env, "goal_site"):
        goal = env.goal_site.pose.p
    else:
        goal = env.goal_region.pose.p
    return {"tcp_pose": env.agent.tcp.pose.raw_pose, "obj_pose": cube.pose.raw_pose,
            "obj_half_height": torch.full((n,), half, device=dev),
            "obj_yaw_period": torch.full((n,), math.pi / 2, device=dev),
            "place_pos": goal, "is_grasped": env.agent.is_grasping(cube),
            "elapsed_steps": env.elapsed_steps.clone()}


class ScriptedExpert:
    def __init__(self, task: str, num_envs: int, device: torch.device | str = "cpu"):
        task = task.split("/")[-1]
        if task not in (put_on_plate.ENV_ID, put_cube_on_plate.ENV_ID, "PickCube-v1", "PushCube-v1"):
            raise ValueError(f"no scripted expert for {task!r}")
        self.task = task
        self.phase = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.timer = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.hover = 0.07

    def act(self, s: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.task == "PushCube-v1":
            return self._push(s)
        return self._pick_place(s)

    def _pos_action(self, delta: torch.Tensor) -> torch.Tensor:
        return (delta / MAX_DELTA).clamp(-1, 1)

    def _pick_place(self, s: dict[str, torch.Tensor]) -> torch.Tensor:
        tcp, obj = s["tcp_pose"][:, :3], s["obj_pose"][:, :3]
        dev = tcp.device
        self.phase[s["elapsed_steps"] == 0] = APPROACH
        self.timer[s["elapsed_steps"] == 0] = 0
        ph = self.phase
        half = s["obj_half_height"]
        place = s["place_pos"]
        is_pick_cube = self.task == "PickCube-v1"

        # yaw: the gripper's closing axis (its y) across the object's y axis, modulo the object's symmetry
        period = s["obj_yaw_period"]
        err = _yaw_of(s["obj_pose"]) - _yaw_of(s["tcp_pose"])
        safe = torch.where(period > 0, period, torch.ones_like(period))
        wrapped = torch.remainder(err + safe / 2, safe) - safe / 2
        yaw_err = torch.where(period > 0, wrapped, torch.zeros_like(err))

        grasp_z = torch.maximum(obj[:, 2], half.new_tensor(0.016))  # fingertips clear of the table
        target = tcp.clone()
        gripper = torch.ones(len(tcp), device=dev)
        yaw_act = torch.zeros(len(tcp), device=dev)

        above = torch.cat([obj[:, :2], (grasp_z + self.hover)[:, None]], 1)
        down = torch.cat([obj[:, :2], grasp_z[:, None]], 1)
        offset = tcp - obj  # the held object's offset from the TCP
        if is_pick_cube:
            carry_to = place + offset  # the cube's centre to the goal
            over_place = carry_to
        else:
            over_place = torch.cat([place[:, :2] + offset[:, :2],
                                    (place[:, 2] + half + 0.08 + offset[:, 2])[:, None]], 1)
            carry_to = torch.cat([place[:, :2] + offset[:, :2],
                                  (place[:, 2] + half + 0.012 + offset[:, 2])[:, None]], 1)
        lift = torch.cat([tcp[:, :2], torch.maximum(tcp[:, 2:], (place[:, 2:] + half[:, None] + 0.08 + offset[:, 2:]))], 1)

        def sel(mask, value):
            target[mask] = value[mask]

        sel(ph == APPROACH, above)
        sel(ph == DESCEND, down)
        sel(ph == LIFT, lift)
        sel(ph == MOVE, over_place)
        sel(ph == LOWER, carry_to)
        up = tcp.clone()
        up[:, 2] = tcp[:, 2] + 0.05
        sel(ph == RETREAT, up)
        # the rotation is about the TCP's own axes, and its z points down: +z action turns it clockwise
        yaw_act = torch.where((ph == APPROACH) | (ph == DESCEND), (-yaw_err / MAX_DELTA).clamp(-1, 1), yaw_act)
        closed = (ph >= CLOSE) & (ph <= LOWER)
        gripper = torch.where(closed, -torch.ones_like(gripper), gripper)
        if is_pick_cube:
            gripper = torch.where(ph >= CLOSE, -torch.ones_like(gripper), gripper)

        delta = target - tcp
        dist = torch.linalg.norm(delta, dim=1)
        xy = torch.linalg.norm(delta[:, :2], dim=1)
        action = torch.zeros((len(tcp), 7), device=dev)
        action[:, :3] = self._pos_action(delta)
        action[:, 5] = yaw_act
        action[:, 6] = gripper

        # phase transitions (for the next step)
        self.timer += 1
        nxt = ph.clone()
        nxt[(ph == APPROACH) & (xy < 0.01) & (delta[:, 2].abs() < 0.02) & (yaw_err.abs() < 0.08)] = DESCEND
        nxt[(ph == DESCEND) & ((dist < 0.006) | (self.timer >= 10))] = CLOSE
        nxt[(ph == CLOSE) & (self.timer >= 4)] = LIFT
        if is_pick_cube:
            nxt[(ph == LIFT)] = LOWER  # straight to the goal
            nxt[(ph == CLOSE) & (self.timer >= 4)] = LOWER
        else:
            nxt[(ph == LIFT) & (delta[:, 2].abs() < 0.015)] = MOVE
            nxt[(ph == MOVE) & (xy < 0.01)] = LOWER
            nxt[(ph == LOWER) & ((dist < 0.006) | (self.timer >= 10))] = RELEASE
            nxt[(ph == RELEASE) & (self.timer >= 4)] = RETREAT
        # lost the object while carrying it: start over
        carrying = (ph == LIFT) | (ph == MOVE) | (ph == LOWER)
        nxt[carrying & ~s["is_grasped"] & (self.timer >= 3)] = APPROACH
        changed = nxt != ph
        self.timer[changed] = 0
        self.phase = nxt
        return action

    def _push(self, s: dict[str, torch.Tensor]) -> torch.Tensor:
        tcp, obj, goal = s["tcp_pose"][:, :3], s["obj_pose"][:, :3], s["place_pos"]
        dev = tcp.device
        self.phase[s["elapsed_steps"] == 0] = 0
        ph = self.phase
        half = s["obj_half_height"]
        behind = torch.cat([(obj[:, 0] - half - 0.03)[:, None], obj[:, 1:2], (half + 0.05)[:, None]], 1)
        low = behind.clone()
        low[:, 2] = 0.015
        # push the cube's centre a little past the goal's centre
        push = torch.cat([(goal[:, 0] - half - 0.005)[:, None], goal[:, 1:2], torch.full_like(goal[:, 2:], 0.015)], 1)
        target = torch.where((ph == 0)[:, None], behind, torch.where((ph == 1)[:, None], low, push))
        delta = target - tcp
        action = torch.zeros((len(tcp), 7), device=dev)
        action[:, :3] = self._pos_action(delta)
        # slower while pushing, so that the cube does not slide past the goal
        action[ph == 2, :3] = (delta[ph == 2] / MAX_DELTA * 0.5).clamp(-0.5, 0.5)
        action[:, 6] = -1.0
        nxt = ph.clone()
        dist = torch.linalg.norm(delta, dim=1)
        nxt[(ph == 0) & (dist < 0.01)] = 1
        nxt[(ph == 1) & (dist < 0.008)] = 2
        self.phase = nxt
        return action

