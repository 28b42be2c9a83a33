"""The scene state the oracles judge: joint values, lights and, per block, its pose, whether the gripper
holds it and what it rests on. A plain value (no simulator handle), so oracles are pure functions of
(start, current) and the tests can build states by hand."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

COLOURS = ("red", "blue", "pink")
# What a block can rest on: a region of the desk or another block (its colour).
SUPPORTS = ("table", "slider", "drawer") + COLOURS


@dataclass(frozen=True)
class BlockState:
    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float]  # x, y, z, w (pybullet's order)
    held: bool = False  # touched by both fingers
    on: frozenset = field(default_factory=frozenset)  # members of SUPPORTS it touches from above

    @property
    def yaw(self) -> float:
        """Rotation about the world z axis of the block's x axis (radians)."""
        x, y, z, w = self.quat
        return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))

    @property
    def tilt(self) -> float:
        """Angle between the block's z axis and the world's (radians)."""
        x, y, _z, _w = self.quat
        return math.acos(max(-1.0, min(1.0, 1 - 2 * (x * x + y * y))))


@dataclass(frozen=True)
class SceneState:
    door: float  # sliding door joint (0: covers the right half, DOOR_TRAVEL: the left)
    drawer: float  # 0 closed .. DRAWER_TRAVEL open
    button: float  # how far the button is pressed down
    switch: float  # knob position along its rail (0 .. SWITCH_TRAVEL, +y)
    led: int  # 0 off, 1 on
    bulb: int
    blocks: dict  # colour -> BlockState

    def held_block(self) -> str | None:
        held = [c for c, b in self.blocks.items() if b.held]
        return held[0] if held else None

    def scene_obs(self) -> np.ndarray:
        """CALVIN's 24-D scene_obs: door, drawer, button, switch, bulb, LED, then per block (red, blue,
        pink) position (3) and euler angles (3, pybullet's xyz convention)."""
        out = [self.door, self.drawer, self.button, self.switch, float(self.bulb), float(self.led)]
        for colour in COLOURS:
            b = self.blocks[colour]
            out.extend(b.pos)
            out.extend(_euler(b.quat))
        return np.asarray(out, np.float32)


def _euler(q) -> tuple[float, float, float]:
    x, y, z, w = q
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw


def yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
