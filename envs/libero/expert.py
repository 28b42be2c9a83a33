"""A scripted expert for LIBERO-spatial from privileged state: pick up the black bowl the goal names, put it on
the plate.

Every LIBERO-spatial task's goal is one bddl predicate, ``(On <bowl> plate_1)``; which of the two bowls it names is
what the instruction's spatial relation says ("the black bowl between the plate and the ramekin"). The expert reads
the goal and the objects' poses (``LiberoSpatialEnv.privileged_state``), not the pixels, and moves through
waypoints with a proportional controller on the eef position (OSC_POSE's relative actions) while holding the
gripper's starting orientation (pointing down):

1. above the grasp point: a point of the bowl's rim where the fingers, closing across the rim's wall, pinch it:
   on the +y or -y side with the hand as it starts (pointing down, the Panda's fingers close along world y), or on
   the +x or -x side with the hand turned by 90 degrees about the vertical (``_choose_grasp`` says which);
2. down to pinch height, just below the rim's top; 3. close; 4. lift; if the fingers closed on nothing (the
   grasp missed), open and start again from 1 (at most ``retries`` times);
5. over the plate, steering by the bowl's own position (it may have slipped in the hand), so that the bowl's
   centre comes over the plate's; 6. down until the bowl is just above the plate; 7. open; 8. up, and wait.

Noise for failures (world-model data, envs/libero/demos.py) is added to its actions by the recorder, not here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

MAX_POS = 0.05  # metres per step at |action| = 1 (robosuite's OSC_POSE output limit)
MAX_ROT = 0.5  # radians per step at |action| = 1
RIM_RADIUS = 0.047  # the akita black bowl's wall, from its centre (its upper collision ring)
BOWL_HEIGHT = 0.053  # base to rim top
PINCH_BELOW_RIM = 0.018  # the eef site (between the finger pads) this far below the rim's top
ABOVE = 0.12  # approach height over the rim (the turned hand is 20 cm long along x: clear of the neighbours)
CARRY = 0.12  # lift of the bowl's base above the plate's top while carrying
RELEASE_ABOVE_PLATE = 0.025  # the bowl's base over the plate's top when the gripper opens
PLATE_TOP = 0.017  # above the plate body's origin
CLEARANCE = 0.07  # another object's centre nearer than this to a grasp point is in the outer finger's way


@dataclass
class ExpertConfig:
    gain: float = 1.0  # action = gain * error / MAX_POS, clipped
    max_speed: float = 1.0  # |position action| per axis at most (0.05 m per step), on the way to the bowl
    carry_speed: float = 0.6  # the same, with the bowl in the hand (faster, it slips)
    descend_speed: float = 0.4  # the same, going down to the rim
    close_steps: int = 12
    open_steps: int = 8
    reach_tolerance: float = 0.008  # metres: a waypoint is reached
    phase_limit: int = 60  # steps a waypoint may take before the expert moves on anyway
    retries: int = 2  # new grasps after a missed one
    empty_grip: float = 0.0025  # a finger joint (m) closed this far holds nothing


class ScriptedExpert:
    """``start(privileged)`` at each episode's start, then ``act(privileged) -> action [7]`` every step."""

    def __init__(self, config: ExpertConfig | None = None):
        self.config = config or ExpertConfig()
        self.phase = 0
        self._steps = 0

    def start(self, state: dict) -> None:
        goal = [p for p in state["goal"] if p[0].lower() == "on"]
        if len(goal) != 1:
            raise ValueError(f"the LIBERO-spatial expert expects one (On bowl plate) goal, got {state['goal']}")
        _, self.bowl, self.plate = goal[0]
        for name in (self.bowl, self.plate):
            if name not in state["objects"]:
                raise ValueError(f"the goal names {name!r}, which is not among the scene's objects "
                                 f"{sorted(state['objects'])}")
        self.start_orientation = Rotation.from_quat(state["eef_quat"])  # pointing down
        self.retries_left = self.config.retries
        self._choose_grasp(state)
        self.phase, self._steps = 0, 0

    def _choose_grasp(self, state: dict) -> None:
        """The rim point (a unit offset from the bowl's centre, +-x or +-y) to pinch, and the hand's orientation for
        it (turned by 90 degrees about z for the x sides). First choice: the y side nearer the table's middle (y = 0;
        the far side may be under the cabinet or by the stove), unless another object is within CLEARANCE of it
        or the bowl stands on one (a ramekin: its rim is under the y sides' outer finger); then the side, of the
        other three, farthest from the other objects."""
        centre = state["objects"][self.bowl][0][:2]
        others = [pos[:2] for name, (pos, _) in state["objects"].items() if name != self.bowl]
        under = any(np.linalg.norm(o - centre) < 0.03 for o in others)
        others = [o for o in others if np.linalg.norm(o - centre) >= 0.03]
        near_middle = (0.0, -1.0) if centre[1] > 0 else (0.0, 1.0)
        sides = [near_middle, (0.0, -near_middle[1]), (-1.0, 0.0), (1.0, 0.0)]

        def clearance(offset) -> float:
            point = centre + RIM_RADIUS * np.asarray(offset)
            return min((float(np.linalg.norm(point - o)) for o in others), default=1.0)

        if under:
            side = max(sides[2:], key=clearance)
        elif clearance(near_middle) >= CLEARANCE:
            side = near_middle
        else:
            side = max(sides[1:], key=clearance)
        self.offset = np.array([*side, 0.0])
        turn = Rotation.from_euler("z", np.pi / 2) if side[0] != 0.0 else Rotation.identity()
        self.orientation = turn * self.start_orientation

    # -------------------------------------------------------------------------------- control
    def _move(self, state: dict, target: np.ndarray, gripper: float, speed: float | None = None) -> np.ndarray:
        c = self.config
        action = np.zeros(7, np.float32)
        error = target - state["eef_pos"]
        speed = c.max_speed if speed is None else speed
        action[:3] = np.clip(c.gain * error / MAX_POS, -speed, speed)
        # rotation back to the starting orientation, as a world-frame rotation vector
        correction = (self.orientation * Rotation.from_quat(state["eef_quat"]).inv()).as_rotvec()
        action[3:6] = np.clip(correction / MAX_ROT, -0.5, 0.5)
        action[6] = gripper
        return action

    def _reached(self, state: dict, target: np.ndarray, tolerance: float | None = None) -> bool:
        return bool(np.linalg.norm(target - state["eef_pos"]) < (tolerance or self.config.reach_tolerance))

    def _grasp_point(self, state: dict) -> np.ndarray:
        centre = state["objects"][self.bowl][0]
        return centre + RIM_RADIUS * self.offset + np.array([0.0, 0.0, BOWL_HEIGHT - PINCH_BELOW_RIM])

    def _over_plate(self, state: dict, base_above_plate: float) -> np.ndarray:
        """The eef position that puts the held bowl's centre over the plate's, its base `base_above_plate` over
        the plate's top (from where the bowl is in the hand now)."""
        bowl, plate = state["objects"][self.bowl][0], state["objects"][self.plate][0]
        target_bowl = plate + np.array([0.0, 0.0, PLATE_TOP + base_above_plate])
        return state["eef_pos"] + (target_bowl - bowl)

    def act(self, state: dict) -> np.ndarray:
        c = self.config
        self._steps += 1
        OPEN, CLOSE = -1.0, 1.0
        if self.phase == 0:  # above the grasp point, exactly over it before going down
            target = self._grasp_point(state) + np.array([0.0, 0.0, ABOVE])
            error = target - state["eef_pos"]
            if (np.linalg.norm(error[:2]) < 0.005 and abs(error[2]) < 0.02) or self._steps >= c.phase_limit:
                self._next()
            return self._move(state, target, OPEN)
        if self.phase == 1:  # down to pinch height, slowly
            return self._advance_if(state, self._grasp_point(state), OPEN, speed=c.descend_speed)
        if self.phase == 2:  # close, holding still
            return self._hold_still(state, CLOSE, c.close_steps)
        if self.phase == 3:  # lift straight up
            if self._steps == 1:
                self._lift = state["eef_pos"] + np.array([0.0, 0.0, CARRY])
            if self._steps > 4 and state["gripper_qpos"][0] < c.empty_grip and self.retries_left > 0:
                self.retries_left -= 1  # missed: open on the way up, and choose the grasp again
                self._choose_grasp(state)
                self.phase, self._steps = 0, 0
                return self._move(state, self._lift, OPEN)
            return self._advance_if(state, self._lift, CLOSE, tolerance=0.02, speed=c.carry_speed)
        if self.phase == 4:  # over the plate, carried high
            target = self._over_plate(state, CARRY)
            error = target - state["eef_pos"]
            if np.linalg.norm(error[:2]) < 0.01 or self._steps > c.phase_limit:
                self._next()
            return self._move(state, target, CLOSE, c.carry_speed)
        if self.phase == 5:  # down onto the plate
            return self._advance_if(state, self._over_plate(state, RELEASE_ABOVE_PLATE), CLOSE, tolerance=0.01,
                                    speed=c.carry_speed)
        if self.phase == 6:  # open
            return self._hold_still(state, OPEN, c.open_steps)
        # up, and wait there
        if self._steps == 1:
            self._up = state["eef_pos"] + np.array([0.0, 0.0, 0.10])
        return self._move(state, self._up, OPEN)

    def _advance_if(self, state: dict, target: np.ndarray, gripper: float, tolerance: float | None = None,
                    speed: float | None = None):
        """Move towards target; the next phase once it is reached, or after phase_limit steps (blocked short of it)."""
        action = self._move(state, target, gripper, speed)
        if self._reached(state, target, tolerance) or self._steps >= self.config.phase_limit:
            self._next()
        return action

    def _hold_still(self, state: dict, gripper: float, steps: int):
        """Hold the hand where it was at this phase's first step while the gripper command acts; the next phase
        after `steps` steps."""
        if self._steps == 1:
            self._hold = state["eef_pos"].copy()
        action = self._move(state, self._hold, gripper)
        if self._steps >= steps:
            self._next()
        return action

    def _next(self) -> None:
        self.phase += 1
        self._steps = 0
