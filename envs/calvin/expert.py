"""Scripted experts for the 34 subtasks, from privileged state (the scene's geometry, block poses, joints).

``expert = ScriptedExpert(env)`` (env: a CalvinPlayTableEnv or a gymnasium wrapper of one);
``expert.start(task)`` plans from the current state; ``expert.act()`` -> the next 7-D action in [-1, 1]
(the env's action), computed from the tcp pose and the scene state. Each subtask is a short script
of tcp waypoints (position, gripper yaw, gripper open/closed) driven by a proportional controller
with the gripper pointing down:

* grasps (lift, place, stack, unstack, rotate, push into drawer) come from above, the fingers across
  the block's 4.5 cm side (gripper yaw = block yaw, modulo 180 degrees);
* pushes (blocks, door, drawer, switch) put the closed fingers beside the handle or block and move;
  a block push runs until the block itself has moved far enough;
* the button is pressed down with closed fingers;
* rotations turn until the block (which slips in the fingers) has turned far enough, and grasp again
  if it has not; in front of the door's handle, where turning low would draw the block to the desk's
  front edge, the block turns with the hand above the handle and is set down beside it;
* a waypoint is reached only once the orientation is too (a push begun while the hand still turns rolls
  the block), and pushers take the symmetric yaw nearer the hand's;
* the hand and the wrist reach up to 13 cm beyond the tcp: travel is above the sliding door's top,
  and below it the tcp keeps far enough from the door's face and handle (off-centre grasps, the
  narrower pusher), since an arm pressed on the door climbs over it into the compartment;
* blocks are set down in the drawer beside, not on, the blocks already in it;
* a block in the slider is grasped from the front with the fingers tilted towards the back wall, so
  that the wrist stays in front of the door (pointing straight down, it passes the door's plane
  below its top edge and catches on the door's edge when the door covers the half nearer the robot).
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from envs.calvin import scene as S
from envs.calvin.play_table import MAX_REL_ORN, MAX_REL_POS
from envs.calvin.state import COLOURS, SceneState
from envs.calvin.tasks import TASKS

OPEN, CLOSED = 1.0, -1.0
# Travel height between waypoints: the hand's underside (4 cm above the tcp) clears the sliding door's
# top edge (0.30), so the hand never catches the door on its way over a block standing in front of it.
SAFE_Z = 0.28
GAIN = 1.0
ORN_TOL = 0.08  # radians: how far from its orientation a waypoint counts as reached
# How far the arm reaches beyond the tcp along +x with the gripper pointing down: the wrist (links 6-7)
# stands 9.5 cm ahead of it whatever the yaw; the hand (20 cm long across the fingers, 7 cm wide) as
# its yaw turns its length towards x. Below the door's top, the hand and wrist must stay in front of the
# door's face: pressing on it, the position-controlled arm lets its joints be pushed back and then
# climbs over the door into the compartment.
WRIST_REACH = 0.095
HAND_HALF = (0.035, 0.115)  # along the hand's x (the fingers' width) and y (their closing direction)
DOOR_MARGIN = 0.012
# A pushed block is pushed on until it has moved this far (the oracle wants 10 cm) or the fingers have
# gone PUSH_EXTRA beyond the planned end.
PUSH_GOAL = 0.106
PUSH_EXTRA = 0.05
PUSH_Y_LIMIT = 0.36  # the fingers stop short of the button's and the switch's plates (|y| > 0.38)
# Grasps in the slider's compartment: how many, and the fingers' tilt from the vertical (see _grasp_in_slider).
SLIDER_ATTEMPTS = 2
SLIDER_PITCH = math.radians(35)
# A block on the table this near in y to one in the slider stands in the way of the hand reaching in (the open
# fingers 5.5 cm either side of the tcp, the block up to 4 cm).
SLIDER_LANE = 0.10
SLIDER_OVER_Z = 0.08  # the tilted fingers' lowest point clears a block's top (4.5 cm) from this tcp height
# Rotations: the block's turn aimed for, the turn that counts as done (the oracle wants 60 degrees),
# and how many grasps the expert spends on it.
ROTATE_GOAL = math.radians(80)
ROTATE_DONE = math.radians(68)
ROTATE_ATTEMPTS = 3
# The hand's underside is 3.5 cm above the tcp: from this tcp height up it passes over the door's handle.
HANDLE_CLEAR_Z = S.DOOR_HANDLE["z"][1] - 0.035 + 0.008
# A rotated block is set down with its centre at least this far out (the band the blocks start in): nearer
# the desk's front edge (x 0.30) it overhangs it, and the next touch tips it off the desk or into the drawer.
ROTATE_KEEP_X = 0.34
# How far apart (centres) a block set down and the other blocks on the table stand at least.
BLOCK_CLEARANCE = 0.08


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _reach(yaw: float) -> float:
    """How far beyond the tcp (+x) the hand or the wrist reaches at gripper yaw `yaw`."""
    return max(WRIST_REACH, HAND_HALF[0] * abs(math.cos(yaw)) + HAND_HALF[1] * abs(math.sin(yaw)))


def _grasp_yaw(block_yaw: float) -> float:
    """The gripper yaw that puts the fingers across the block's y side, nearest to 0 (the arm's middle)."""
    yaw = _wrap(block_yaw)
    if yaw > math.pi / 2:
        yaw -= math.pi
    elif yaw < -math.pi / 2:
        yaw += math.pi
    return yaw


class ScriptedExpert:
    def __init__(self, env):
        self.env = env.unwrapped
        self.p = self.env.p
        self._script: Iterator | None = None
        self._target = None
        self._orn_error = 0.0
        self.task: str | None = None

    # -------------------------------------------------------------------- control
    def _tcp(self):
        pos, orn = self.env._tcp()
        return np.asarray(pos), orn

    def _action(self, pos, yaw, grip, pitch=0.0) -> tuple[np.ndarray, float]:
        """The action towards tcp position `pos` with the gripper pointing down at yaw `yaw`, its fingers
        tilted `pitch` radians from the vertical towards +x."""
        tcp, orn = self._tcp()
        err = np.asarray(pos) - tcp
        a = np.zeros(7)
        a[:3] = np.clip(GAIN * err / MAX_REL_POS, -1, 1)
        want = self.p.getQuaternionFromEuler([math.pi, 0.0, yaw])
        if pitch:
            tilt = self.p.getQuaternionFromAxisAngle([0, 1, 0], -pitch)
            want = self.p.multiplyTransforms([0, 0, 0], tilt, [0, 0, 0], want)[1]
        inv = self.p.invertTransform([0, 0, 0], orn)[1]
        _, dq = self.p.multiplyTransforms([0, 0, 0], want, [0, 0, 0], inv)
        axis, angle = self.p.getAxisAngleFromQuaternion(dq)
        angle = _wrap(angle)
        a[3:6] = np.clip(np.asarray(axis) * angle / MAX_REL_ORN, -1, 1)
        a[6] = grip
        self._orn_error = abs(angle)
        return a.astype(np.float32), float(np.linalg.norm(err))

    def _go(self, pos, yaw, grip, tol=0.006, max_steps=90, pitch=0.0):
        """Drive to a waypoint; done when within tol (metres) and ORN_TOL of its orientation, or after
        max_steps. The orientation counts too: a turn of 90 degrees takes 31 steps at the action's limit, more
        than a short move, and a push begun with the hand still turning wedges the block between the
        fingers and rolls it over."""
        for _ in range(max_steps):
            a, dist = self._action(pos, yaw, grip, pitch)
            if dist < tol and self._orn_error < ORN_TOL:
                return
            yield a

    def _hold(self, pos, yaw, grip, steps, pitch=0.0):
        for _ in range(steps):
            yield self._action(pos, yaw, grip, pitch)[0]

    def _door_face_x(self, y: float, half_y: float) -> float:
        """The x up to which a hand `half_y` wide either side of y may reach: the sliding door's face, less
        a margin, where the door covers that band; inf where it is in front of the open half."""
        v = self.env.variant
        centre = v.door_centre_y(self.state().door)
        if abs(y - centre) > S.CABINET_WIDTH / 4 + half_y:
            return math.inf
        return S.CABINET_FRONT_X - S.DOOR_THICKNESS - DOOR_MARGIN

    def _max_x(self, y: float, yaws, above_handle: bool = False) -> float:
        """The largest tcp x at which the hand, at every yaw in `yaws`, stays clear of the sliding door's
        face where the door covers y (inf where the hand is in front of the open half), and of the
        handle (it stands out 4 cm from the face at the height of the hand working on the desk), unless
        `above_handle` (the tcp at HANDLE_CLEAR_Z or higher)."""
        half_y = max(HAND_HALF[0] * abs(math.sin(a)) + HAND_HALF[1] * abs(math.cos(a)) for a in yaws)
        limit = self._door_face_x(y, half_y) - max(_reach(a) for a in yaws)
        centre = self.env.variant.door_centre_y(self.state().door)
        if not above_handle and abs(y - centre) < S.DOOR_HANDLE["width"] / 2 + half_y:
            hand = max(HAND_HALF[0] * abs(math.cos(a)) + HAND_HALF[1] * abs(math.sin(a)) for a in yaws)
            limit = min(limit, S.DOOR_HANDLE["x"][0] - DOOR_MARGIN - hand)
        return limit

    def _yaw_now(self) -> float:
        return self.p.getEulerFromQuaternion(self._tcp()[1])[2]

    def _pusher_yaw(self, yaw: float) -> float:
        """Of `yaw` and `yaw` + 180 degrees (the same pusher: the closed fingers are symmetric) within 90 degrees
        of yaw 0 (the last joint's middle, as every grasp keeps it), the one nearer the gripper's yaw now:
        from -95 degrees after a rotation to +90, the long way round, the hand took the whole subtask and the
        last joint ran into its limit."""
        now = self._yaw_now()
        both = [a for a in (yaw, _wrap(yaw + math.pi)) if abs(a) <= math.pi / 2 + 1e-6] or [yaw]
        return min(both, key=lambda a: abs(_wrap(a - now)))

    # -------------------------------------------------------------------- scripts
    def _above(self, xy, yaw, grip):
        tcp, _ = self._tcp()
        if tcp[2] < SAFE_Z - 0.02:
            yield from self._go((tcp[0], tcp[1], SAFE_Z), yaw, grip, tol=0.02)
        yield from self._go((xy[0], xy[1], SAFE_Z), yaw, grip, tol=0.01)

    def _grasp(self, colour: str, turn=(), yaw=None):
        """Grasp `colour` from above (at gripper yaw `yaw`, by default the one nearest 0 across the
        block's y side); `turn`: the gripper yaws it will be turned through while low."""
        b = self.state().blocks[colour]
        yaw = _grasp_yaw(b.yaw) if yaw is None else yaw
        # In the drawer, the hand (3.6 cm either side of the fingers along x) must stay in front of the
        # desk top's edge: a block deeper under the top is grasped off its centre (it is 5-7.5 cm long).
        x = min(b.pos[0], S.DRAWER_FRONT_X - 0.045) if "drawer" in b.on else b.pos[0]
        y = b.pos[1]
        # In front of the door, likewise off the centre towards the robot, along the block's long axis
        # (the gripper's x) as far as the finger pads (2 cm wide) still hold the block's end.
        ax, ay = math.cos(yaw), math.sin(yaw)
        if ax < 0:
            ax, ay = -ax, -ay
        need = x - self._max_x(y, [yaw] + list(turn))
        if need > 0 and ax > 0.3:
            t = min(need / ax, S.BLOCKS[colour][0] / 2 - 0.012)
            x, y = x - t * ax, y - t * ay
        dx, dy = x - b.pos[0], y - b.pos[1]
        yield from self._above((x, y), yaw, OPEN)
        b = self.state().blocks[colour]
        x, y, z = b.pos[0] + dx, b.pos[1] + dy, b.pos[2]
        yield from self._go((x, y, z + 0.06), yaw, OPEN, tol=0.01)
        yield from self._go((x, y, z - 0.005), yaw, OPEN, max_steps=40)
        yield from self._hold((x, y, z - 0.005), yaw, CLOSED, 12)
        return yaw, b.pos

    def _release_at(self, pos, yaw):
        yield from self._above(pos, yaw, CLOSED)
        yield from self._go(pos, yaw, CLOSED, tol=0.008)
        yield from self._hold(pos, yaw, OPEN, 10)
        up = (pos[0], pos[1], pos[2] + 0.08)
        yield from self._go(up, yaw, OPEN, tol=0.01, max_steps=30)

    def _push(self, start, end, yaw):
        """Closed fingers: above start, down to it, along to end, up."""
        yaw = self._pusher_yaw(yaw)
        yield from self._above(start, yaw, CLOSED)
        yield from self._go(start, yaw, CLOSED, tol=0.006)
        yield from self._go(end, yaw, CLOSED, tol=0.008, max_steps=120)
        yield from self._go((end[0], end[1], SAFE_Z), yaw, CLOSED, tol=0.02, max_steps=40)

    def _grasp_in_slider(self, colour: str):
        """From the front, at the block's height (the cabinet's roof and door leave no way in from
        above), the fingers tilted SLIDER_PITCH towards the back wall: pointing straight down, the wrist
        (21 cm above the tcp, 8 cm behind it) would pass the door's plane below its top edge and catch
        on the door's edge when the door covers the half nearer the robot; tilted, the wrist stays in
        front of the door and only the hand reaches into the compartment."""
        b = self.state().blocks[colour]
        yaw = _grasp_yaw(b.yaw)
        out_x, in_x = S.CABINET_FRONT_X - 0.10, self._slider_approach_x(colour)
        # 1.2 cm above the block's middle, so the fingertips pass over the door's rail.
        z = b.pos[2] + 0.012
        yield from self._above((out_x, b.pos[1]), yaw, OPEN)
        yield from self._go((out_x, b.pos[1], SAFE_Z), yaw, OPEN, tol=0.01, pitch=SLIDER_PITCH)
        if in_x > out_x:  # over the block on the table in the way, then down beyond it
            yield from self._go((out_x, b.pos[1], SLIDER_OVER_Z), yaw, OPEN, tol=0.008, pitch=SLIDER_PITCH)
            yield from self._go((in_x, b.pos[1], SLIDER_OVER_Z), yaw, OPEN, tol=0.008, pitch=SLIDER_PITCH)
        yield from self._go((in_x, b.pos[1], z), yaw, OPEN, tol=0.008, pitch=SLIDER_PITCH)
        yield from self._go((b.pos[0], b.pos[1], z), yaw, OPEN, pitch=SLIDER_PITCH)
        yield from self._hold((b.pos[0], b.pos[1], z), yaw, CLOSED, 12, pitch=SLIDER_PITCH)
        return yaw, b.pos

    def _slider_approach_x(self, colour: str) -> float:
        """Where in front of the compartment the tilted hand goes down to the height of a block in the slider:
        10 cm in front of the cabinet, or just beyond a block on the table in the way (in scene A the cabinet
        stands straight ahead and the blocks on the table in front of it: the hand came down onto one). The
        hand goes down to there over that block from 10 cm in front of the cabinet: from the travel height
        farther out, the elbow meets the cabinet's roof."""
        s = self.state()
        y = s.blocks[colour].pos[1]
        x = S.CABINET_FRONT_X - 0.10
        for c, b in s.blocks.items():
            if c != colour and "table" in b.on and abs(b.pos[1] - y) < SLIDER_LANE:
                x = max(x, b.pos[0] + max(S.BLOCKS[c][:2]) / 2 + 0.05)
        return min(x, S.CABINET_FRONT_X - 0.03)

    def _lift(self, colour):
        if "slider" in self.state().blocks[colour].on:
            for _attempt in range(SLIDER_ATTEMPTS):
                yaw, pos = yield from self._grasp_in_slider(colour)
                if self.state().blocks[colour].held:
                    break
                # Missed (an open finger pushed the block along): out of the compartment, and again from
                # where the block now stands.
                tcp, _ = self._tcp()
                yield from self._hold(tcp, yaw, OPEN, 8, pitch=SLIDER_PITCH)
                yield from self._go((self._slider_approach_x(colour), tcp[1], tcp[2]), yaw, OPEN, tol=0.01,
                                    pitch=SLIDER_PITCH)
            yield from self._go((pos[0], pos[1], pos[2] + 0.09), yaw, CLOSED, tol=0.01, pitch=SLIDER_PITCH)
            yield from self._hold((pos[0], pos[1], pos[2] + 0.09), yaw, CLOSED, 200, pitch=SLIDER_PITCH)
            return
        yaw, pos = yield from self._grasp(colour)
        tcp, _ = self._tcp()
        yield from self._go((tcp[0], tcp[1], tcp[2] + 0.12), yaw, CLOSED, tol=0.01)
        yield from self._hold((tcp[0], tcp[1], tcp[2] + 0.12), yaw, CLOSED, 200)

    def _rotate(self, colour, sign):
        """Grasp, lift 1.5 cm, turn until the block (not the gripper: the block slips in the fingers as
        they turn) has turned ROTATE_GOAL from where it stood, release; again from the new pose if the
        block still lacks the oracle's 60 degrees (a slip, or a grasp that missed)."""
        start_yaw = self.state().blocks[colour].yaw
        for _attempt in range(ROTATE_ATTEMPTS):
            turned = sign * _wrap(self.state().blocks[colour].yaw - start_yaw)
            if turned > ROTATE_DONE:
                return
            left = ROTATE_GOAL - turned
            # Of the two grasps across the block's y side, the one whose turn is centred nearest yaw 0,
            # so that the last joint stays well inside its range.
            yaw0 = _grasp_yaw(self.state().blocks[colour].yaw)
            yaw0 = min((yaw0 - math.pi, yaw0, yaw0 + math.pi), key=lambda a: abs(a + sign * left / 2))
            sweep = [yaw0 + sign * math.radians(d) for d in range(0, int(math.degrees(left)) + 25, 10)]
            # Off the table while turning, so it does not drag; and, for a block in front of the door
            # that the grasp could not take far enough off its centre, drawn towards the robot until
            # the turning hand clears the door. Where that would take the block to the desk's front
            # edge (in front of the door's handle: the hand turned across x reaches 11 cm ahead of the
            # tcp), the block turns with the hand above the handle, drawn only clear of the door's face,
            # and is set down beside the handle, where the hand at its final yaw (narrow across y) clears it,
            # or, with another block there, let go from that height (6 cm above the desk; it lands flat).
            y = self.state().blocks[colour].pos[1]
            high = self._max_x(y, sweep) < ROTATE_KEEP_X
            yaw, _pos = yield from self._grasp(colour, turn=() if high else sweep, yaw=yaw0)
            tcp, _ = self._tcp()
            down = tcp[2] + 0.015
            x = min(tcp[0], self._max_x(tcp[1], sweep))
            high = high or self.state().blocks[colour].pos[0] - (tcp[0] - x) < ROTATE_KEEP_X
            if high:
                x = min(tcp[0], self._max_x(tcp[1], sweep, above_handle=True))
                turn_at = (x, tcp[1], max(down, HANDLE_CLEAR_Z))
                yield from self._go((tcp[0], tcp[1], turn_at[2]), yaw, CLOSED, max_steps=30)
                yield from self._go(turn_at, yaw, CLOSED, max_steps=40)
            else:
                turn_at = (x, tcp[1], down)
                yield from self._go(turn_at, yaw, CLOSED, max_steps=10 if x == tcp[0] else 40)
            # The gripper's goal is beyond the block's by the slip allowance; it stops early once the
            # block has turned far enough.
            target = yaw + sign * (left + math.radians(20))
            for _ in range(120):  # 2 rad at up to 0.05 rad per step, and the arm lags
                a, _ = self._action(turn_at, target, CLOSED)
                b = self.state().blocks[colour]
                if (abs(_wrap(self._yaw_now() - target)) < 0.05
                        or sign * _wrap(b.yaw - start_yaw) > ROTATE_GOAL):
                    break
                yield a
            now = self._yaw_now()
            release = turn_at
            beside = self._beside_handle(colour, x, turn_at[1], now) if high else None
            if beside is not None:
                release = (x, beside, down)
                yield from self._go((x, beside, turn_at[2]), now, CLOSED, max_steps=30)
                yield from self._go(release, now, CLOSED, max_steps=30)
            yield from self._hold(release, now, OPEN, 10)
            yield from self._go((release[0], release[1], release[2] + 0.06), now, OPEN, tol=0.01, max_steps=30)

    def _beside_handle(self, colour: str, x: float, y: float, yaw: float) -> float | None:
        """The y nearest to `y` at which the low hand at tcp x `x` and gripper yaw `yaw` clears the door and
        its handle and the block `colour` held there stands clear of the other blocks; None if there is none
        within 15 cm."""
        others = [b.pos for c, b in self.state().blocks.items() if c != colour and "table" in b.on]
        for d in np.arange(0.0, 0.15, 0.005):
            for cand in (y - d, y + d):
                if (x <= self._max_x(cand, [yaw])
                        and all(math.hypot(x - o[0], cand - o[1]) > BLOCK_CLEARANCE for o in others)):
                    return float(cand)
        return None

    def _push_block(self, colour, sign):
        """Closed fingers beside the block, along y, until the block has moved PUSH_GOAL. Usually with
        the fingers across the push (yaw 90 degrees: a 4 cm wide pusher, the hand's length along x);
        for a block standing in front of the door, with the fingers along the push (yaw 0: the hand's
        length along y, a 2 cm pusher) and the tcp short of the block's middle, so that the hand and the
        wrist stay in front of the door's face."""
        b = self.state().blocks[colour]
        # Measured from where the block stood when the subtask began, as the oracle measures it.
        y_start = self._start_state.blocks[colour].pos[1]
        half = max(S.BLOCKS[colour][:2]) / 2
        y0, y1 = b.pos[1] - sign * (half + 0.035), b.pos[1] + sign * 0.115  # farther meets the plates
        x, yaw = b.pos[0], self._pusher_yaw(math.pi / 2)
        if x > min(self._max_x(y, [yaw]) for y in (y0, y1)):
            yaw = self._pusher_yaw(0.0)
            # The finger's face (2 cm wide) still meets the block's near half.
            x = max(min(x, min(self._max_x(y, [yaw]) for y in (y0, y1))), x - 0.015)
        yield from self._above((x, y0), yaw, CLOSED)
        yield from self._go((x, y0, 0.018), yaw, CLOSED, tol=0.006)
        end = (x, float(np.clip(y1 + sign * PUSH_EXTRA, -PUSH_Y_LIMIT, PUSH_Y_LIMIT)), 0.018)
        for _ in range(150):
            a, dist = self._action(end, yaw, CLOSED)
            moved = sign * (self.state().blocks[colour].pos[1] - y_start)
            if moved > PUSH_GOAL or dist < 0.008:
                break
            yield a
        yield from self._go((x, self._tcp()[0][1], SAFE_Z), yaw, CLOSED, tol=0.02, max_steps=40)

    def _slider(self, sign):
        s = self.state()
        y = self.env.variant.door_centre_y(s.door)
        # The handle's front part, so that the hand (3.6 cm behind the fingers' axis) stays clear of the
        # cabinet's side walls when the door is at an end.
        x = S.DOOR_HANDLE["x"][0] + 0.008
        z = 0.07  # the hand, above the fingers, clears the handle's top (0.11)
        start = (x, y - sign * 0.04, z)
        end = (x, y - sign * 0.04 + sign * (S.DOOR_TRAVEL - 0.02), z)
        yield from self._push(start, end, 0.0)

    def _drawer(self, sign):
        s, v = self.state(), self.env.variant
        z = sum(S.DRAWER_HANDLE_Z) / 2
        if sign > 0:  # open: fingers between the handle plate and the drawer's front, pull
            x = (S.DRAWER_HANDLE_X + 0.01 + S.DRAWER_FRONT_X) / 2 - s.drawer
            yield from self._push((x, v.drawer_y, z), (x - S.DRAWER_TRAVEL - 0.01, v.drawer_y, z), 0.0)
        else:  # close: into the same gap, now near the robot, and push the front away
            # Reached from below the travel height: above the open drawer, then over its front wall (the
            # arm cannot reach the gap's x from above at the travel height, this close to its base).
            x = (S.DRAWER_HANDLE_X + 0.01 + S.DRAWER_FRONT_X) / 2 - s.drawer
            y = v.drawer_y
            yield from self._above((S.DRAWER_FRONT_X - 0.03, y), 0.0, CLOSED)
            yield from self._go((S.DRAWER_FRONT_X - 0.03, y, 0.01), 0.0, CLOSED, tol=0.01)
            yield from self._go((x, y, 0.01), 0.0, CLOSED, tol=0.008)
            yield from self._go((x, y, z), 0.0, CLOSED, tol=0.008)
            # Until the front is flush (the fingers' face is 1.5 cm ahead of the tcp): a drawer opened only
            # part of the way by an earlier subtask has less than the oracle's 8 cm to travel otherwise.
            yield from self._go((S.DRAWER_FRONT_X - 0.015, y, z), 0.0, CLOSED, tol=0.008, max_steps=120)
            yield from self._go((S.DRAWER_FRONT_X - 0.03, y, SAFE_Z), 0.0, CLOSED, tol=0.02, max_steps=40)

    def _button(self):
        bx, by = self.env.variant.button_xy
        top = 0.01 + S.BUTTON_HEIGHT
        yield from self._push((bx, by, top + 0.03), (bx, by, top - S.BUTTON_TRAVEL), 0.0)

    def _switch(self, sign):
        s, v = self.state(), self.env.variant
        sx, sy = v.switch_xy
        knob_y = sy - S.SWITCH_TRAVEL / 2 + s.switch
        start = (sx, knob_y - sign * 0.035, 0.045)
        end = (sx, knob_y - sign * 0.035 + sign * (S.SWITCH_TRAVEL + 0.01), 0.045)
        yield from self._push(start, end, 0.0)

    def _free_table_spot(self, exclude: str) -> tuple[float, float]:
        """Where on the table to set a block down: the spot farthest from the other blocks, in the band
        the blocks start in (x 0.34-0.40, |y| up to scene.BLOCK_START_Y, so that pushes either way stay
        feasible): farther out, the block carried at the travel height drags the sliding door along by its
        top edge, or is set down on the door's handle (x 0.44-0.48)."""
        s = self.state()
        others = [b.pos for c, b in s.blocks.items() if c != exclude]
        best, best_d = None, -1.0
        for x in (0.34, 0.40):
            for y in np.linspace(-S.BLOCK_START_Y, S.BLOCK_START_Y, 15):
                d = min(math.hypot(x - o[0], y - o[1]) for o in others)
                if d > best_d:
                    best, best_d = (x, float(y)), d
        return best

    def _place(self, where):
        s, v = self.state(), self.env.variant
        colour = s.held_block() or next(iter(COLOURS))
        yaw = self._yaw_now()
        h = S.BLOCKS[colour][2]
        if where == "slider":
            lo, hi = v.open_half(s.door)
            pos = (0.58, (lo + hi) / 2, h / 2 + 0.012)
            # Over the door's top to in front of the open half, and only there down to the opening's height.
            tcp = self._tcp()[0]
            x = min(tcp[0], 0.40)
            yield from self._go((x, tcp[1], SAFE_Z), yaw, CLOSED, tol=0.02)
            yield from self._go((x, pos[1], SAFE_Z), yaw, CLOSED, tol=0.01)
            yield from self._go((0.42, pos[1], 0.20), yaw, CLOSED, tol=0.01)
            yield from self._go((pos[0], pos[1], 0.20), yaw, CLOSED, tol=0.01)
            yield from self._go(pos, yaw, CLOSED, tol=0.008)
            yield from self._hold(pos, yaw, OPEN, 10)
            yield from self._go((0.42, pos[1], pos[2] + 0.02), yaw, OPEN, tol=0.02)
            yield from self._go((0.42, pos[1], SAFE_Z), yaw, OPEN, tol=0.02)
        else:
            pos = (S.DRAWER_FRONT_X - s.drawer + 0.07, self._drawer_free_y(), S.DRAWER_Z[0] + 0.01 + h / 2 + 0.01)
            yield from self._release_at(pos, yaw)

    def _drawer_free_y(self, moving: str | None = None) -> float:
        """The y, from the drawer's middle to 9 cm either side, farthest from the blocks already in the
        drawer (a block set down on another one rests on that block, which the oracles do not count as
        in the drawer) and from blocks on the table near its front edge (where push into drawer sets its
        block down and pushes it); `moving`: the block being moved, not an obstacle."""
        s, v = self.state(), self.env.variant
        others = [b.pos[1] for c, b in s.blocks.items() if c != moving
                  and ("drawer" in b.on or ("table" in b.on and b.pos[0] < S.DRAWER_FRONT_X + 0.13))]
        return max((v.drawer_y + d for d in (0.0, -0.045, 0.045, -0.09, 0.09)),
                   key=lambda y: min((abs(y - o) for o in others), default=1.0))

    def _push_into_drawer(self):
        s = self.state()
        # The first block (in COLOURS order) on the table: the one the chain generator's symbolic model moves.
        colour = next((c for c in COLOURS if "table" in s.blocks[c].on
                       and not any(c in s.blocks[o].on for o in COLOURS)), None)
        if colour is None:  # the scene is not what the subtask needs (an earlier one went astray): give up
            return
        h = S.BLOCKS[colour][2]
        y = self._drawer_free_y(colour)
        # Set down near the desk's front edge with its 4.5 cm side along x (the gripper at yaw 90 degrees),
        # then pushed over the edge by both closed fingers side by side (yaw 0, a 4 cm wide pusher): the
        # push starts only 6 cm behind the edge, so the hand and wrist stay in front of the door's face.
        yield from self._grasp(colour)
        yield from self._release_at((S.DRAWER_FRONT_X + 0.03, y, h / 2 + 0.01), math.pi / 2)
        b = self.state().blocks[colour]
        length, width = S.BLOCKS[colour][:2]
        half = (abs(math.cos(b.yaw)) * length + abs(math.sin(b.yaw)) * width) / 2  # its extent along x
        yield from self._push((b.pos[0] + half + 0.02, b.pos[1], 0.02), (S.DRAWER_FRONT_X - 0.06, b.pos[1], 0.02),
                              0.0)

    def _stack(self):
        s = self.state()
        colour = s.held_block() or COLOURS[0]
        # The first free block on the table (COLOURS order), as the chain generator's symbolic model has it.
        below = next((c for c in COLOURS if c != colour and "table" in s.blocks[c].on
                      and not any(c in s.blocks[o].on for o in COLOURS)), None)
        if below is None:
            return
        b = s.blocks[below]
        z = b.pos[2] + S.BLOCKS[below][2] / 2 + S.BLOCKS[colour][2] / 2 + 0.01
        yield from self._release_at((b.pos[0], b.pos[1], z), _grasp_yaw(b.yaw))

    def _unstack(self):
        s = self.state()
        colour = next((c for c in COLOURS if s.blocks[c].on & set(COLOURS)), None)
        if colour is None:
            return
        yaw, _ = yield from self._grasp(colour)
        x, y = self._free_table_spot(colour)
        yield from self._release_at((x, y, S.BLOCKS[colour][2] / 2 + 0.008), yaw)

    def _script_for(self, task: str):
        for colour in COLOURS:
            if task == f"rotate_{colour}_block_left":
                return self._rotate(colour, +1)
            if task == f"rotate_{colour}_block_right":
                return self._rotate(colour, -1)
            if task == f"push_{colour}_block_left":
                return self._push_block(colour, +1)
            if task == f"push_{colour}_block_right":
                return self._push_block(colour, -1)
            if task.startswith(f"lift_{colour}_block_"):
                return self._lift(colour)
        scripts = {
            "move_slider_left": lambda: self._slider(+1), "move_slider_right": lambda: self._slider(-1),
            "open_drawer": lambda: self._drawer(+1), "close_drawer": lambda: self._drawer(-1),
            "place_in_slider": lambda: self._place("slider"), "place_in_drawer": lambda: self._place("drawer"),
            "push_into_drawer": self._push_into_drawer, "stack_block": self._stack,
            "unstack_block": self._unstack,
            "turn_on_lightbulb": lambda: self._switch(+1), "turn_off_lightbulb": lambda: self._switch(-1),
            "turn_on_led": self._button, "turn_off_led": self._button,
        }
        if task not in scripts:
            raise ValueError(f"no expert for subtask {task!r}")
        return scripts[task]()

    # -------------------------------------------------------------------- API
    def state(self) -> SceneState:
        return self.env.scene_state()

    def _clear_then(self, task: str):
        """Subtasks that need no held block begin by opening the gripper and rising above whatever it was
        last touching: the previous subtask counts as done as soon as its oracle says so, which may be with
        the fingers still around a block it has just let go of. Closed fingers (a push: they may still
        touch the block) rise before they open: opened beside the block, a finger shoves it on (by up to
        12 cm after a push along the fingers' line)."""
        if task not in ("place_in_slider", "place_in_drawer", "stack_block"):
            tcp, _ = self._tcp()
            yaw = self._yaw_now()
            low = tcp[2] < SAFE_Z - 0.02
            if low and self.env._gripper_action < 0:
                yield from self._go((tcp[0], tcp[1], tcp[2] + 0.06), yaw, CLOSED, tol=0.01, max_steps=20)
                low = False
            yield from self._hold(self._tcp()[0], yaw, OPEN, 6)
            if low:
                yield from self._go((tcp[0], tcp[1], tcp[2] + 0.06), yaw, OPEN, tol=0.01, max_steps=20)
        yield from self._script_for(task)

    def start(self, task: str) -> None:
        if task not in TASKS:
            raise ValueError(f"no expert for subtask {task!r}; see envs.calvin.tasks.TASKS")
        self.task = task
        self._script = self._clear_then(task)
        self._start_state = self.state()
        self._last = None

    def act(self) -> np.ndarray:
        """The next action; once the script has run out, hold still with the last gripper command."""
        if self._script is not None:
            try:
                self._last = next(self._script)
                return self._last
            except StopIteration:
                self._script = None
        a = np.zeros(7, np.float32)
        a[6] = self._last[6] if self._last is not None else OPEN
        return a
