"""The play table's geometry, its four variants A-D, and the URDF files built from them.

World frame (metres): the Panda's base at the origin, x away from the robot, y to its left, z up; the
desk's top surface at z = 0. As in CALVIN, the four scenes share the desk's top, the robot and the
cameras; what differs is the colour of every part and where the static elements stand: the drawer
(under the top, opening towards the robot), the cabinet whose sliding door covers one half of its
compartment, the button with its LED and the switch with its light bulb (the bulb stands on the
cabinet's roof). CALVIN's switch is a lever moved up and down; here it is a knob on a rail moved
along y, so that every static element is worked by the same kind of push.

The URDF files in ``assets/`` are written by :func:`write_assets` from these numbers
(``python -m envs.calvin.scene`` rewrites them; the suite checks the files are up to date), so the
positions the env, the oracles and the experts use are the ones the files hold.
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass

ASSETS = pathlib.Path(__file__).resolve().parent / "assets"
SCENES = ("A", "B", "C", "D")

# Desk top (one slab) and the floor.
TABLE_X = (0.30, 0.78)  # the front edge is the closed drawer's front face
TABLE_Y = (-0.58, 0.58)
TABLE_THICKNESS = 0.03
FLOOR_Z = -0.70

# Drawer: a box under the top; its prismatic joint moves it towards the robot (-x) by up to DRAWER_TRAVEL.
DRAWER_FRONT_X = 0.30  # the drawer's front face when closed, flush with the top's front edge
DRAWER_DEPTH = 0.30
DRAWER_WIDTH = 0.30
DRAWER_Z = (-0.16, -0.05)  # floor and rim
DRAWER_TRAVEL = 0.14
DRAWER_HANDLE_X = 0.22  # the outer face of the handle plate, closed; the plate is 1 cm thick
DRAWER_HANDLE_Z = (-0.12, -0.07)

# Cabinet: back wall, two side walls, a roof; the compartment's floor is the desk top. The sliding door
# (half the cabinet's width) runs along its front on a prismatic joint.
CABINET_FRONT_X = 0.50  # near enough that the hand reaches the compartment's far corners pointing down
CABINET_BACK_X = 0.68
CABINET_WIDTH = 0.56
CABINET_HEIGHT = 0.58  # the roof stays above the forearm when the hand reaches into the compartment
DOOR_HEIGHT = 0.30
DOOR_THICKNESS = 0.02
DOOR_TRAVEL = CABINET_WIDTH / 2
# The handle stays low, so the hand (above the closed fingers) clears its top while the fingers push its side.
DOOR_HANDLE = {"x": (0.44, 0.48), "z": (0.035, 0.11), "width": 0.025}

# Button (pressed down by up to BUTTON_TRAVEL) and the LED beside it.
BUTTON_RADIUS = 0.03
BUTTON_HEIGHT = 0.03  # above its base plate (1 cm)
BUTTON_TRAVEL = 0.02
BUTTON_PRESSED = 0.012  # the LED toggles when the button goes down past this
# Switch: a knob on a rail of length SWITCH_TRAVEL along y; the bulb is on at the knob's +y half.
SWITCH_TRAVEL = 0.12
SWITCH_KNOB = (0.04, 0.025, 0.06)  # x, y, z size
SWITCH_ON = 0.08  # joint value above which the bulb goes on; below SWITCH_OFF it goes off
SWITCH_OFF = 0.04

# Blocks: (x, y, z) sizes; each is graspable across its 4.5 cm side.
BLOCKS = {
    "red": (0.050, 0.045, 0.045),
    "blue": (0.075, 0.045, 0.045),
    "pink": (0.060, 0.045, 0.035),
}
BLOCK_COLOURS = {"red": (0.85, 0.12, 0.10, 1), "blue": (0.12, 0.30, 0.85, 1), "pink": (0.95, 0.45, 0.70, 1)}
BLOCK_MASS = 0.08

LED_OFF, LED_ON = (0.10, 0.25, 0.10, 1), (0.20, 1.00, 0.20, 1)
BULB_OFF, BULB_ON = (0.55, 0.55, 0.50, 1), (1.00, 0.95, 0.40, 1)


@dataclass(frozen=True)
class SceneVariant:
    """What one of the scenes A-D changes: colours and the positions of the static elements."""

    name: str
    drawer_y: float  # centre of the drawer
    cabinet_y: float  # centre of the cabinet
    button_xy: tuple[float, float]
    switch_xy: tuple[float, float]  # centre of the rail
    top_rgba: tuple[float, float, float, float]
    body_rgba: tuple[float, float, float, float]  # drawer, cabinet and door
    handle_rgba: tuple[float, float, float, float]

    @property
    def cabinet_y_range(self) -> tuple[float, float]:
        return self.cabinet_y - CABINET_WIDTH / 2, self.cabinet_y + CABINET_WIDTH / 2

    @property
    def drawer_y_range(self) -> tuple[float, float]:
        return self.drawer_y - DRAWER_WIDTH / 2, self.drawer_y + DRAWER_WIDTH / 2

    def door_centre_y(self, q: float) -> float:
        """The door's centre at joint value q: at 0 it covers the cabinet's right (-y) half, at
        DOOR_TRAVEL its left half."""
        return self.cabinet_y - CABINET_WIDTH / 4 + q

    def open_half(self, q: float) -> tuple[float, float]:
        """The y range of the compartment the door leaves open at joint value q: from the door's edge to
        the far side wall's inner face."""
        lo, hi = self.cabinet_y_range
        centre = self.door_centre_y(q)
        if q < DOOR_TRAVEL / 2:
            return centre + CABINET_WIDTH / 4, hi - 0.02
        return lo + 0.02, centre - CABINET_WIDTH / 4


VARIANTS: dict[str, SceneVariant] = {
    "A": SceneVariant("A", drawer_y=-0.20, cabinet_y=0.04, button_xy=(0.33, 0.44), switch_xy=(0.40, -0.44),
                      top_rgba=(0.72, 0.56, 0.38, 1), body_rgba=(0.45, 0.30, 0.18, 1),
                      handle_rgba=(0.20, 0.20, 0.22, 1)),
    "B": SceneVariant("B", drawer_y=0.20, cabinet_y=-0.04, button_xy=(0.33, -0.44), switch_xy=(0.40, 0.44),
                      top_rgba=(0.82, 0.82, 0.78, 1), body_rgba=(0.30, 0.42, 0.55, 1),
                      handle_rgba=(0.75, 0.70, 0.35, 1)),
    "C": SceneVariant("C", drawer_y=-0.14, cabinet_y=0.08, button_xy=(0.37, 0.44), switch_xy=(0.32, -0.44),
                      top_rgba=(0.45, 0.45, 0.48, 1), body_rgba=(0.62, 0.20, 0.18, 1),
                      handle_rgba=(0.90, 0.90, 0.90, 1)),
    "D": SceneVariant("D", drawer_y=0.14, cabinet_y=-0.08, button_xy=(0.37, -0.44), switch_xy=(0.32, 0.44),
                      top_rgba=(0.60, 0.66, 0.52, 1), body_rgba=(0.85, 0.80, 0.65, 1),
                      handle_rgba=(0.25, 0.15, 0.10, 1)),
}


# How far from the desk's middle (|y|) a block stands on the table at the start (and where the expert sets an
# unstacked block down): the fixtures' inner ends are the switch rail's (|y| = 0.355 at the knob's end) and
# the button plate's (0.39), and a block pushed 10 cm (the push oracle's distance) towards either side must
# stop short of them, with room for its half-width turned 30 degrees (4 cm) and the push's overshoot (1.6 cm).
FIXTURE_INNER_Y = min(min(abs(v.switch_xy[1]) - SWITCH_TRAVEL / 2 - SWITCH_KNOB[1], abs(v.button_xy[1]) - 0.05)
                      for v in VARIANTS.values())
BLOCK_START_Y = round(FIXTURE_INNER_Y - 0.10 - 0.04 - 0.016, 3)


def variant(name: str) -> SceneVariant:
    if name not in VARIANTS:
        raise ValueError(f"unknown scene {name!r}; scenes are {', '.join(SCENES)}")
    return VARIANTS[name]


# ------------------------------------------------------------------------------------------- URDF text
def _rgba(c) -> str:
    return " ".join(f"{v:.3f}" for v in c)


def _box(centre, size, rgba=None, collision=True) -> str:
    xyz = " ".join(f"{v:.4f}" for v in centre)
    dims = " ".join(f"{v:.4f}" for v in size)
    geom = f'<origin xyz="{xyz}"/><geometry><box size="{dims}"/></geometry>'
    out = f'  <visual>{geom}<material name="m{_rgba(rgba).replace(" ", "_")}"><color rgba="{_rgba(rgba)}"/></material></visual>\n'
    if collision:
        out += f"  <collision>{geom}</collision>\n"
    return out


def _span(a, b):
    """(centre, size) of the interval [a, b]."""
    return (a + b) / 2, abs(b - a)


def _slab(xr, yr, zr, rgba, collision=True) -> str:
    (cx, sx), (cy, sy), (cz, sz) = _span(*xr), _span(*yr), _span(*zr)
    return _box((cx, cy, cz), (sx, sy, sz), rgba, collision)


def _link(name: str, body: str, mass: float = 0.0) -> str:
    inertial = (f'  <inertial><mass value="{mass}"/><inertia ixx="1e-3" ixy="0" ixz="0" iyy="1e-3" iyz="0" '
                f'izz="1e-3"/></inertial>\n') if mass else ""
    return f'<link name="{name}">\n{inertial}{body}</link>\n'


def _joint(name, kind, parent, child, axis=(1, 0, 0), limits=None) -> str:
    out = f'<joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="{child}"/><origin xyz="0 0 0"/>'
    if kind == "prismatic":
        out += f'<axis xyz="{axis[0]} {axis[1]} {axis[2]}"/><limit lower="{limits[0]}" upper="{limits[1]}" ' \
               f'effort="100" velocity="1"/><dynamics damping="2.0" friction="0.5"/>'
    return out + "</joint>\n"


def desk_urdf(v: SceneVariant) -> str:
    """The desk of scene v: a fixed base (top, legs, cabinet, plates) and the moving parts as links whose
    joint value 0 is the closed / left-off state; every link's geometry is given in world coordinates."""
    top, body, handle = v.top_rgba, v.body_rgba, v.handle_rgba
    t = TABLE_THICKNESS
    base = _slab(TABLE_X, TABLE_Y, (-t, 0.0), top)
    for lx in (TABLE_X[0] + 0.03, TABLE_X[1] - 0.03):
        for ly in (TABLE_Y[0] + 0.03, TABLE_Y[1] - 0.03):
            base += _slab((lx - 0.025, lx + 0.025), (ly - 0.025, ly + 0.025), (FLOOR_Z, -t), body)
    # Robot stand under the Panda's base.
    base += _slab((-0.12, 0.12), (-0.12, 0.12), (FLOOR_Z, -0.001), (0.3, 0.3, 0.3, 1))
    # Drawer housing rails under the top (the drawer slides on its own floor's edges through them).
    dy0, dy1 = v.drawer_y_range
    # Cabinet: back wall, side walls, roof.
    cy0, cy1 = v.cabinet_y_range
    base += _slab((CABINET_BACK_X - 0.02, CABINET_BACK_X), (cy0, cy1), (0.0, CABINET_HEIGHT), body)
    for y in (cy0, cy1 - 0.02):
        base += _slab((CABINET_FRONT_X, CABINET_BACK_X), (y, y + 0.02), (0.0, CABINET_HEIGHT), body)
    base += _slab((CABINET_FRONT_X, CABINET_BACK_X), (cy0, cy1), (CABINET_HEIGHT, CABINET_HEIGHT + 0.02), body)
    # Door rail along the cabinet's front bottom edge (1 cm high, so blocks slide over it).
    base += _slab((CABINET_FRONT_X - DOOR_THICKNESS - 0.01, CABINET_FRONT_X - DOOR_THICKNESS), (cy0, cy1),
                  (0.0, 0.005), handle)
    # Button base plate, LED housing; switch rail; bulb socket on the cabinet roof.
    bx, by = v.button_xy
    base += _slab((bx - 0.05, bx + 0.05), (by - 0.05, by + 0.05), (0.0, 0.01), body)
    # The LED on the button's far side, so a block pushed towards the button stops only at its plate.
    led_y = by + 0.075 if by > 0 else by - 0.075
    base += _slab((bx - 0.02, bx + 0.02), (led_y - 0.02, led_y + 0.02), (0.0, 0.015), body)
    sx, sy = v.switch_xy
    rail = SWITCH_TRAVEL / 2 + SWITCH_KNOB[1]
    base += _slab((sx - 0.03, sx + 0.03), (sy - rail, sy + rail), (0.0, 0.012), body)
    bulb_x, bulb_y = (CABINET_FRONT_X + CABINET_BACK_X) / 2, cy1 - 0.08
    base += _slab((bulb_x - 0.025, bulb_x + 0.025), (bulb_y - 0.025, bulb_y + 0.025),
                  (CABINET_HEIGHT + 0.02, CABINET_HEIGHT + 0.05), handle)

    links = _link("base", base)
    # Drawer: floor, front, back and side walls; handle plate on two posts.
    d = ""
    x0, x1 = DRAWER_FRONT_X, DRAWER_FRONT_X + DRAWER_DEPTH
    z0, z1 = DRAWER_Z
    d += _slab((x0, x1), (dy0, dy1), (z0, z0 + 0.01), body)
    d += _slab((x0, x0 + 0.01), (dy0, dy1), (z0, z1), body)
    d += _slab((x1 - 0.01, x1), (dy0, dy1), (z0, z1), body)
    for y in (dy0, dy1 - 0.01):
        d += _slab((x0, x1), (y, y + 0.01), (z0, z1), body)
    hx = DRAWER_HANDLE_X
    d += _slab((hx, hx + 0.01), (v.drawer_y - 0.09, v.drawer_y + 0.09), DRAWER_HANDLE_Z, handle)
    for y in (v.drawer_y - 0.085, v.drawer_y + 0.075):
        d += _slab((hx + 0.01, x0), (y, y + 0.01), (DRAWER_HANDLE_Z[1] - 0.015, DRAWER_HANDLE_Z[1]), handle)
    links += _link("drawer", d, mass=1.0)
    # Sliding door at q = 0 over the right half; a vertical handle bar in its middle.
    door_y = v.door_centre_y(0.0)
    door = _slab((CABINET_FRONT_X - DOOR_THICKNESS, CABINET_FRONT_X), (door_y - CABINET_WIDTH / 4,
                 door_y + CABINET_WIDTH / 4), (0.006, DOOR_HEIGHT), body)
    w = DOOR_HANDLE["width"] / 2
    door += _slab(DOOR_HANDLE["x"], (door_y - w, door_y + w), DOOR_HANDLE["z"], handle)
    door += _slab((DOOR_HANDLE["x"][1], CABINET_FRONT_X - DOOR_THICKNESS), (door_y - w, door_y + w),
                  (DOOR_HANDLE["z"][0], DOOR_HANDLE["z"][0] + 0.02), handle)
    links += _link("door", door, mass=1.0)
    links += _link("button", _box((bx, by, 0.01 + BUTTON_HEIGHT / 2), (2 * BUTTON_RADIUS, 2 * BUTTON_RADIUS,
                                  BUTTON_HEIGHT), (0.85, 0.85, 0.85, 1)), mass=0.05)
    # The switch knob at q = 0 sits at the rail's -y end.
    kx, ky, kz = SWITCH_KNOB
    knob_y = sy - SWITCH_TRAVEL / 2
    links += _link("switch", _box((sx, knob_y, 0.012 + kz / 2), (kx, ky, kz), handle), mass=0.05)
    links += _link("led", _box((bx, led_y, 0.02), (0.03, 0.03, 0.01), LED_OFF, collision=False), mass=0.01)
    links += _link("bulb", _box((bulb_x, bulb_y, CABINET_HEIGHT + 0.08), (0.05, 0.05, 0.06), BULB_OFF,
                                collision=False), mass=0.01)
    joints = _joint("drawer_joint", "prismatic", "base", "drawer", (-1, 0, 0), (0.0, DRAWER_TRAVEL))
    joints += _joint("door_joint", "prismatic", "base", "door", (0, 1, 0), (0.0, DOOR_TRAVEL))
    joints += _joint("button_joint", "prismatic", "base", "button", (0, 0, -1), (0.0, BUTTON_TRAVEL))
    joints += _joint("switch_joint", "prismatic", "base", "switch", (0, 1, 0), (0.0, SWITCH_TRAVEL))
    joints += _joint("led_joint", "fixed", "base", "led")
    joints += _joint("bulb_joint", "fixed", "base", "bulb")
    return (f'<?xml version="1.0"?>\n<!-- Written by envs/calvin/scene.py (scene {v.name}); do not edit. -->\n'
            f'<robot name="play_table_{v.name}">\n{links}{joints}</robot>\n')


def block_urdf(colour: str) -> str:
    sx, sy, sz = BLOCKS[colour]
    ixx = BLOCK_MASS * (sy * sy + sz * sz) / 12
    iyy = BLOCK_MASS * (sx * sx + sz * sz) / 12
    izz = BLOCK_MASS * (sx * sx + sy * sy) / 12
    return (f'<?xml version="1.0"?>\n<!-- Written by envs/calvin/scene.py; do not edit. -->\n'
            f'<robot name="block_{colour}">\n<link name="block">\n'
            f'  <inertial><mass value="{BLOCK_MASS}"/><inertia ixx="{ixx:.3e}" ixy="0" ixz="0" iyy="{iyy:.3e}" '
            f'iyz="0" izz="{izz:.3e}"/></inertial>\n'
            + _box((0, 0, 0), (sx, sy, sz), BLOCK_COLOURS[colour]) + "</link>\n</robot>\n")


def asset_texts() -> dict[str, str]:
    """File name -> URDF text of every asset."""
    out = {f"desk_{name}.urdf": desk_urdf(v) for name, v in VARIANTS.items()}
    out.update({f"block_{colour}.urdf": block_urdf(colour) for colour in BLOCKS})
    return out


def write_assets(folder: pathlib.Path = ASSETS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in asset_texts().items():
        (folder / name).write_text(text)


if __name__ == "__main__":
    write_assets()
    print(f"wrote {len(asset_texts())} URDF files to {ASSETS}")
