"""Language annotations of the 34 subtasks: several phrasings each, split into train and validation.

As in CALVIN, a policy is trained on the train phrasings and evaluated with the validation ones
(different wording of the same subtask). The phrasings are this project's own.
"""
from __future__ import annotations

from envs.calvin.state import COLOURS
from envs.calvin.tasks import TASKS


def _blocks() -> dict[str, tuple[list[str], list[str]]]:
    out = {}
    for c in COLOURS:
        for side in ("left", "right"):
            out[f"rotate_{c}_block_{side}"] = (
                [f"rotate the {c} block to the {side}", f"turn the {c} block {side}",
                 f"take the {c} block and rotate it {side}"],
                [f"twist the {c} block towards the {side}", f"grasp the {c} block and turn it to the {side}"])
            out[f"push_{c}_block_{side}"] = (
                [f"push the {c} block to the {side}", f"slide the {c} block {side}wards",
                 f"go push the {c} block {side}"],
                [f"move the {c} block to the {side} side by pushing it", f"nudge the {c} block {side}"])
        for where, place in (("table", "the table"), ("slider", "the sliding cabinet"), ("drawer", "the drawer")):
            out[f"lift_{c}_block_{where}"] = (
                [f"lift the {c} block from {place}", f"pick up the {c} block in {place}",
                 f"grasp the {c} block lying in {place} and lift it"],
                [f"take the {c} block off {place}", f"raise the {c} block from {place}"])
    return out


ANNOTATIONS: dict[str, tuple[list[str], list[str]]] = {
    **_blocks(),
    "move_slider_left": (["push the sliding door to the left", "move the slider left", "slide the door left"],
                         ["shift the sliding door to the left side", "open the cabinet's right half"]),
    "move_slider_right": (["push the sliding door to the right", "move the slider right", "slide the door right"],
                          ["shift the sliding door to the right side", "open the cabinet's left half"]),
    "open_drawer": (["open the drawer", "pull the drawer out", "pull the handle to open the drawer"],
                    ["slide the drawer open", "grab the drawer handle and open it"]),
    "close_drawer": (["close the drawer", "push the drawer in", "push the drawer shut"],
                     ["slide the drawer closed", "shut the drawer"]),
    "place_in_slider": (["put the block in the sliding cabinet", "place the block in the slider",
                         "store the grasped block in the cabinet"],
                        ["drop the block inside the cabinet", "set the block down in the sliding cabinet"]),
    "place_in_drawer": (["put the block in the drawer", "place the block in the drawer",
                         "store the grasped block in the drawer"],
                        ["drop the block into the drawer", "set the block down inside the drawer"]),
    "push_into_drawer": (["push the block into the drawer", "slide the block off the table into the drawer",
                          "shove the block into the open drawer"],
                         ["sweep the block into the drawer", "push a block over the edge into the drawer"]),
    "stack_block": (["stack the blocks", "put the block on top of another block", "place the block on the other one"],
                    ["build a tower of two blocks", "set the grasped block onto another block"]),
    "unstack_block": (["unstack the blocks", "take the top block off the stack", "remove the block from the tower"],
                      ["take the stacked block down", "put the top block back on the table"]),
    "turn_on_lightbulb": (["turn on the light bulb", "move the switch to turn on the lamp", "switch the bulb on"],
                          ["make the yellow lamp light up", "slide the switch to light the bulb"]),
    "turn_off_lightbulb": (["turn off the light bulb", "move the switch to turn off the lamp", "switch the bulb off"],
                           ["make the lamp go dark", "slide the switch to put the bulb out"]),
    "turn_on_led": (["turn on the green light", "press the button to turn on the led", "switch the led on"],
                    ["make the green lamp light up", "push the button so the led goes on"]),
    "turn_off_led": (["turn off the green light", "press the button to turn off the led", "switch the led off"],
                     ["make the green lamp go dark", "push the button so the led goes off"]),
}
assert set(ANNOTATIONS) == set(TASKS)


def phrasings(task: str, split: str = "train") -> list[str]:
    if task not in ANNOTATIONS:
        raise ValueError(f"unknown subtask {task!r}; see envs.calvin.tasks.TASKS")
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    return list(ANNOTATIONS[task][0 if split == "train" else 1])


def instruction(task: str, split: str = "validation", index: int = 0) -> str:
    """One phrasing (the index-th, cycling), e.g. the evaluation's instruction for a subtask."""
    options = phrasings(task, split)
    return options[index % len(options)]
