"""CALVIN's 34 subtasks and their oracles: each decides completion from the (start, current) scene state.

The subtasks are CALVIN's (rotate and push each block left/right, move the slider left/right,
open/close the drawer, lift each block from the table/slider/drawer, place in the slider/drawer, push
into the drawer, stack/unstack, the LED and the bulb on/off). The thresholds are this scene's
(its drawer travels 14 cm, its door 28 cm):

* rotate X left/right: X rests on the table at the start and at the end, not held at the end; its yaw
  turned by more than 60 degrees counter-clockwise (left) / clockwise (right) seen from above, and it
  did not tip over (tilt below 30 degrees).
* push X left/right: X on the table at the start and the end, not held; moved more than 10 cm along
  +y (left, the robot's left) / -y.
* move slider left/right: the door moved more than 15 cm towards +y / -y.
* open/close drawer: the drawer moved more than 8 cm out / in.
* lift X from the table/slider/drawer: X rested there at the start; now held, resting on nothing,
  and at least 5 cm above its start height.
* place in slider/drawer: some block held at the start, not resting there; now resting there, released.
* push into drawer: some block on the table at the start; now resting in the drawer, not held.
* stack: some block held at the start; now resting on another block, released.
* unstack: some block resting on another at the start; now on the table, off the other one.
* turn on/off the LED / the light bulb: the light's state went 0 -> 1 / 1 -> 0.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from envs.calvin.state import COLOURS, SceneState

ROTATE_ANGLE = math.radians(60)
MAX_TILT = math.radians(30)
PUSH_DISTANCE = 0.10
SLIDER_DISTANCE = 0.15
DRAWER_DISTANCE = 0.08
LIFT_HEIGHT = 0.05


def _yaw_change(a, b) -> float:
    d = b.yaw - a.yaw
    return (d + math.pi) % (2 * math.pi) - math.pi


def _on_table_still(s, e, colour) -> bool:
    a, b = s.blocks[colour], e.blocks[colour]
    return "table" in a.on and "table" in b.on and not b.held and b.tilt < MAX_TILT


def _rotate(colour, sign):
    def oracle(s: SceneState, e: SceneState) -> bool:
        return _on_table_still(s, e, colour) and sign * _yaw_change(s.blocks[colour], e.blocks[colour]) > ROTATE_ANGLE
    return oracle


def _push(colour, sign):
    def oracle(s: SceneState, e: SceneState) -> bool:
        dy = e.blocks[colour].pos[1] - s.blocks[colour].pos[1]
        return _on_table_still(s, e, colour) and sign * dy > PUSH_DISTANCE
    return oracle


def _lift(colour, where):
    def oracle(s: SceneState, e: SceneState) -> bool:
        a, b = s.blocks[colour], e.blocks[colour]
        return (where in a.on and b.held and not b.on and b.pos[2] - a.pos[2] > LIFT_HEIGHT)
    return oracle


def _place(where):
    def oracle(s: SceneState, e: SceneState) -> bool:
        return any(s.blocks[c].held and where not in s.blocks[c].on and where in e.blocks[c].on
                   and not e.blocks[c].held for c in COLOURS)
    return oracle


def _push_into_drawer(s: SceneState, e: SceneState) -> bool:
    return any("table" in s.blocks[c].on and "drawer" in e.blocks[c].on and not e.blocks[c].held for c in COLOURS)


def _stack(s: SceneState, e: SceneState) -> bool:
    return any(s.blocks[c].held and not e.blocks[c].held and e.blocks[c].on & set(COLOURS) for c in COLOURS)


def _unstack(s: SceneState, e: SceneState) -> bool:
    return any(s.blocks[c].on & set(COLOURS) and not e.blocks[c].on & set(COLOURS) and "table" in e.blocks[c].on
               for c in COLOURS)


def _joint(name, sign, distance):
    def oracle(s: SceneState, e: SceneState) -> bool:
        return sign * (getattr(e, name) - getattr(s, name)) > distance
    return oracle


def _light(name, value):
    def oracle(s: SceneState, e: SceneState) -> bool:
        return getattr(s, name) == 1 - value and getattr(e, name) == value
    return oracle


TASKS: dict[str, Callable[[SceneState, SceneState], bool]] = {}
for _c in COLOURS:
    TASKS[f"rotate_{_c}_block_right"] = _rotate(_c, -1)
    TASKS[f"rotate_{_c}_block_left"] = _rotate(_c, +1)
    TASKS[f"push_{_c}_block_right"] = _push(_c, -1)
    TASKS[f"push_{_c}_block_left"] = _push(_c, +1)
TASKS["move_slider_left"] = _joint("door", +1, SLIDER_DISTANCE)
TASKS["move_slider_right"] = _joint("door", -1, SLIDER_DISTANCE)
TASKS["open_drawer"] = _joint("drawer", +1, DRAWER_DISTANCE)
TASKS["close_drawer"] = _joint("drawer", -1, DRAWER_DISTANCE)
for _where in ("table", "slider", "drawer"):
    for _c in COLOURS:
        TASKS[f"lift_{_c}_block_{_where}"] = _lift(_c, _where)
TASKS["place_in_slider"] = _place("slider")
TASKS["place_in_drawer"] = _place("drawer")
TASKS["push_into_drawer"] = _push_into_drawer
TASKS["stack_block"] = _stack
TASKS["unstack_block"] = _unstack
TASKS["turn_on_lightbulb"] = _light("bulb", 1)
TASKS["turn_off_lightbulb"] = _light("bulb", 0)
TASKS["turn_on_led"] = _light("led", 1)
TASKS["turn_off_led"] = _light("led", 0)
assert len(TASKS) == 34


def is_completed(task: str, start: SceneState, current: SceneState) -> bool:
    if task not in TASKS:
        raise ValueError(f"unknown subtask {task!r}; see envs.calvin.tasks.TASKS")
    return bool(TASKS[task](start, current))


def completed_tasks(start: SceneState, current: SceneState) -> set[str]:
    """Every subtask the change from `start` to `current` completes."""
    return {name for name, oracle in TASKS.items() if oracle(start, current)}
