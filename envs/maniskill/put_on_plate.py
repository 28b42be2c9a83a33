"""ZarlPutOnPlate-v1: put the named object on the plate (Panda, primitives only).

A Panda on ManiSkill's table. Every sub-scene holds a plate (a thin disc with a rim of 16 blocks), a
bank of 12 objects built from primitives (6 shapes x 2 sizes: cube, cylinder, sphere, capsule and, for
the `semantic` split only, bar and puck) and a pedestal. Each episode shows 4 objects of different
shapes in different colours on the table (the rest of the bank is parked on the floor far away); one
of them is the target, named by the instruction ``put the {colour} {shape} on the plate``.

Why a bank and not a new scene per episode: rebuilding a ManiSkill scene (a "reconfigure") is slow
and, as ManiSkill's users report, does not give all its memory back; collision shapes cannot be
resized in place. So sizes come from the bank, colours are set on each object's render material at
reset (every sub-scene's object has its own material), and nothing is rebuilt after the first reset.

Randomness comes from ManiSkill's per-env episode RNG (``_batched_episode_rng``), never from
``torch.rand``: ManiSkill seeds torch with the first reset env's seed only, so with GPU-batched envs a
torch draw would depend on which envs reset together. With the per-env RNG, seed s gives the same
initial state in any env of any batch.

Splits (``split=`` at make time; each split is a distribution, and ``split_seeds(split, n)`` its fixed
list of evaluation episodes):

* ``train``: colours red/green/blue/yellow/purple, shapes cube/cylinder/sphere/capsule, the default
  table and light, objects in the train layout.
* ``vision``: unseen colours (orange/cyan/pink/white/brown), a coloured cloth on the table (visual
  only) and dimmer, warmer light.
* ``semantic``: the target is an unseen shape (bar or puck) and the instruction uses unseen phrasings.
* ``execution``: objects and plate in unseen places (farther out, plate nearer the robot) and the
  target on a pedestal 3-6 cm high.

Control: 7-D ``pd_ee_delta_pose`` (delta EE position, delta EE rotation as axis-angle, gripper;
normalised to [-1, 1]; 0.1 m and 0.1 rad per step at most) at 10 Hz; 80 steps per episode.

Success: the target's centre within 7.5 cm (in xy) of the plate's centre (inside the rim), its bottom
0-1.5 cm above the plate's surface, not grasped, and nearly still (< 5 cm/s).
Reward (``reward_mode="dense"``): 0.1 if grasped + 0.1 if grasped for >= 5 steps in a row + 1.0 if
successful; with ``differenced_reward=True`` (RLinf's choice) the step's reward is that sum minus the
previous step's, so an episode's return is its final value.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sapien
import torch
from transforms3d.euler import euler2quat

from mani_skill.envs.sapien_env import BaseEnv
from mani_skill.sensors.camera import CameraConfig
from mani_skill.utils import sapien_utils
from mani_skill.utils.registration import register_env
from mani_skill.utils.scene_builder.table import TableSceneBuilder
from mani_skill.utils.structs.actor import Actor
from mani_skill.utils.structs.pose import Pose
from mani_skill.utils.structs.types import GPUMemoryConfig, SimConfig

from core.instruction import INSTRUCTION_BYTES, decode_instruction, encode_instruction  # noqa: F401 (re-exported)

ENV_ID = "ZarlPutOnPlate-v1"
MAX_EPISODE_STEPS = 80
SPLITS = ("train", "vision", "semantic", "execution")

COLOURS = {
    "red": (0.85, 0.1, 0.1), "green": (0.1, 0.7, 0.15), "blue": (0.1, 0.25, 0.9),
    "yellow": (0.95, 0.85, 0.1), "purple": (0.55, 0.15, 0.75),
    # unseen (vision split)
    "orange": (1.0, 0.5, 0.05), "cyan": (0.1, 0.85, 0.9), "pink": (1.0, 0.45, 0.7),
    "white": (0.95, 0.95, 0.95), "brown": (0.45, 0.28, 0.12),
}
TRAIN_COLOURS = ("red", "green", "blue", "yellow", "purple")
VISION_COLOURS = ("orange", "cyan", "pink", "white", "brown")

# name -> (kind, size parameters per size index 0/1)
#   kind "box": half sizes; "cyl": (radius, half height), upright; "sphere": radius;
#   "capsule": (radius, half length), lying along its own x axis.
SHAPES = {
    "cube": ("box", [(0.018, 0.018, 0.018), (0.023, 0.023, 0.023)]),
    "cylinder": ("cyl", [(0.018, 0.025), (0.023, 0.03)]),
    "sphere": ("sphere", [0.02, 0.024]),
    "capsule": ("capsule", [(0.015, 0.02), (0.018, 0.025)]),
    "bar": ("box", [(0.04, 0.014, 0.017), (0.05, 0.016, 0.02)]),  # unseen (semantic split)
    "puck": ("cyl", [(0.026, 0.011), (0.03, 0.013)]),  # unseen (semantic split)
}
SHAPE_NAMES = tuple(SHAPES)
TRAIN_SHAPES = ("cube", "cylinder", "sphere", "capsule")
SEMANTIC_SHAPES = ("bar", "puck")
# How the gripper's closing axis must line up with the object's own y axis: yaw period (0: any).
GRASP_YAW_PERIOD = {"cube": np.pi / 2, "cylinder": 0.0, "sphere": 0.0, "capsule": np.pi, "bar": np.pi,
                    "puck": 0.0}
TRAIN_PHRASINGS = ("put the {colour} {shape} on the plate",)
SEMANTIC_PHRASINGS = ("place the {colour} {shape} onto the plate", "move the {colour} {shape} to the plate",
                      "pick up the {colour} {shape} and put it on the plate")

OBJECTS_PER_EPISODE = 4
PLATE_RADIUS = 0.085  # rim centre line
PLATE_INNER = 0.075  # success: target centre within this xy distance
PLATE_TOP = 0.008  # the plate's upper surface above the table
PLATE_HALF_THICK = PLATE_TOP / 2
GROUND_Z = -0.9196429  # the floor of ManiSkill's table scene
SUCCESS_MAX_GAP = 0.015
HOLD_STEPS = 5


def half_height(shape: str, size: int) -> float:
    kind, params = SHAPES[shape]
    p = params[size]
    if kind == "box":
        return p[2]
    if kind == "cyl":
        return p[1]
    if kind == "sphere":
        return p
    return p[0]  # capsule lying down


def split_seeds(split: str, n: int) -> list[int]:
    """The fixed evaluation episodes of a split: n seeds, disjoint between splits (and from small
    training seeds), the same on every machine."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {SPLITS}")
    entropy = [0x5A41524C, SPLITS.index(split) + 1]  # "ZARL", split number
    return [int(s) for s in np.random.SeedSequence(entropy).generate_state(n, np.uint32) >> 1]


def build_plate(scene, name: str = "plate") -> Actor:
    """The plate: a thin disc (PLATE_TOP thick) with a rim of 16 blocks, kinematic, its origin on the table."""
    builder = scene.create_actor_builder()
    plate_material = sapien.render.RenderMaterial(base_color=[0.92, 0.92, 0.88, 1])
    disc_pose = sapien.Pose(p=[0, 0, PLATE_HALF_THICK], q=euler2quat(0, np.pi / 2, 0))
    builder.add_cylinder_collision(disc_pose, radius=PLATE_RADIUS + 0.006, half_length=PLATE_HALF_THICK)
    builder.add_cylinder_visual(disc_pose, radius=PLATE_RADIUS + 0.006, half_length=PLATE_HALF_THICK,
                                material=plate_material)
    for k in range(16):
        a = 2 * np.pi * k / 16
        pose = sapien.Pose(p=[PLATE_RADIUS * np.cos(a), PLATE_RADIUS * np.sin(a), PLATE_TOP + 0.005],
                           q=euler2quat(0, 0, a))
        builder.add_box_collision(pose, half_size=[0.004, 0.018, 0.005])
        builder.add_box_visual(pose, half_size=[0.004, 0.018, 0.005], material=plate_material)
    builder.initial_pose = sapien.Pose(p=[0, 0.3, 0])
    return builder.build_kinematic(name=name)


def reset_table_and_panda(env, qpos_noise: np.ndarray) -> None:
    """What the table scene's initialize does, without its draw from the first env's RNG (which would make
    env 0's episode depend on how many envs reset with it): the table in place, and the Panda at its base in
    the table scene's rest pose plus each reset env's own joint noise [b, 9], fingers open. Call inside
    ``torch.device(env.device)``."""
    env.table_scene.table.set_pose(sapien.Pose(p=[-0.12, 0, GROUND_Z], q=euler2quat(0, 0, np.pi / 2)))
    last = np.pi / 4 if env.robot_uids == "panda" else -np.pi / 4
    rest = torch.tensor([0.0, np.pi / 8, 0, -np.pi * 5 / 8, 0, np.pi * 3 / 4, last, 0.04, 0.04])
    q = rest[None].repeat(len(qpos_noise), 1) + torch.as_tensor(qpos_noise, dtype=torch.float32)
    q[:, -2:] = 0.04
    env.agent.reset(q)
    env.agent.robot.set_pose(sapien.Pose([-0.615, 0, 0]))


@register_env(ENV_ID, max_episode_steps=MAX_EPISODE_STEPS)
class PutOnPlateEnv(BaseEnv):
    SUPPORTED_ROBOTS = ["panda_wristcam", "panda"]
    SUPPORTED_REWARD_MODES = ["dense", "sparse", "none"]

    def __init__(self, *args, robot_uids="panda_wristcam", split: str = "train", differenced_reward: bool = False,
                 robot_init_qpos_noise: float = 0.02, camera_size: int = 224, wrist_camera_size: int = 128,
                 **kwargs):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; one of {SPLITS}")
        self.split = split
        self.differenced_reward = differenced_reward
        self.robot_init_qpos_noise = robot_init_qpos_noise
        self.camera_size = int(camera_size)
        self.wrist_camera_size = int(wrist_camera_size)
        kwargs.setdefault("control_mode", "pd_ee_delta_pose")
        if robot_uids == "panda_wristcam":
            sensor_configs = dict(kwargs.pop("sensor_configs", None) or {})
            sensor_configs.setdefault("hand_camera", {"width": self.wrist_camera_size,
                                                      "height": self.wrist_camera_size})
            kwargs["sensor_configs"] = sensor_configs
        super().__init__(*args, robot_uids=robot_uids, **kwargs)

    # ------------------------------------------------------------------ scene
    @property
    def _default_sim_config(self):
        # 10 Hz control, 100 Hz physics; GPU contact buffers sized for ~1,000 sub-scenes of ~35 bodies
        # (ManiSkill's defaults suit fewer bodies per scene; PhysX reports a buffer overflow when short)
        return SimConfig(sim_freq=100, control_freq=10,
                         gpu_memory_config=GPUMemoryConfig(max_rigid_contact_count=2**21, max_rigid_patch_count=2**20,
                                                           found_lost_pairs_capacity=2**26))

    @property
    def _default_sensor_configs(self):
        pose = sapien_utils.look_at(eye=[0.35, 0.0, 0.45], target=[-0.05, 0.0, 0.0])
        return [CameraConfig("base_camera", pose, self.camera_size, self.camera_size, np.deg2rad(60), 0.01, 100)]

    @property
    def _default_human_render_camera_configs(self):
        pose = sapien_utils.look_at(eye=[0.5, 0.5, 0.6], target=[-0.05, 0.0, 0.05])
        return CameraConfig("render_camera", pose, 512, 512, 1, 0.01, 100)

    def _load_agent(self, options: dict):
        super()._load_agent(options, sapien.Pose(p=[-0.615, 0, 0]))

    def _load_lighting(self, options: dict):
        if self.split != "vision":
            return super()._load_lighting(options)
        self.scene.set_ambient_light([0.22, 0.2, 0.16])
        self.scene.add_directional_light([-1, 0.5, -1], [0.9, 0.75, 0.55], shadow=self.enable_shadow,
                                         shadow_scale=5, shadow_map_size=2048)
        self.scene.add_directional_light([0, 0, -1], [0.5, 0.45, 0.4])

    def _per_scene(self, build) -> Actor:
        """One actor per sub-scene (each with its own render material), merged into one batched Actor."""
        parts = [build(i) for i in range(self.num_envs)]
        return Actor.merge(parts, name=parts[0].name.rsplit("-", 1)[0])

    def _load_scene(self, options: dict):
        self.table_scene = TableSceneBuilder(self, robot_init_qpos_noise=self.robot_init_qpos_noise)
        self.table_scene.build()
        friction = sapien.physx.PhysxMaterial(static_friction=1.0, dynamic_friction=1.0, restitution=0.0)

        if self.split == "vision":  # a cloth over the table: visual only
            builder = self.scene.create_actor_builder()
            builder.add_box_visual(half_size=[0.45, 0.6, 0.0005],
                                   material=sapien.render.RenderMaterial(base_color=[0.25, 0.35, 0.3, 1]))
            builder.initial_pose = sapien.Pose(p=[-0.1, 0, 0.0006])
            builder.build_kinematic(name="cloth")

        self.plate = build_plate(self.scene)

        builder = self.scene.create_actor_builder()
        builder.add_box_collision(half_size=[0.03, 0.03, 0.5])
        builder.add_box_visual(half_size=[0.03, 0.03, 0.5],
                               material=sapien.render.RenderMaterial(base_color=[0.35, 0.35, 0.4, 1]))
        builder.initial_pose = sapien.Pose(p=[1.5, -1.5, GROUND_Z + 0.5])
        self.pedestal = builder.build_kinematic(name="pedestal")

        self.bank: list[Actor] = []  # index = shape_index * 2 + size
        self.bank_keys: list[tuple[str, int]] = []
        for si, shape in enumerate(SHAPE_NAMES):
            kind, params = SHAPES[shape]
            for size in (0, 1):
                p = params[size]
                name = f"{shape}_{size}"

                def build(i, kind=kind, p=p, name=name, j=len(self.bank)):
                    b = self.scene.create_actor_builder()
                    mat = sapien.render.RenderMaterial(base_color=[0.5, 0.5, 0.5, 1])
                    if kind == "box":
                        b.add_box_collision(half_size=list(p), material=friction)
                        b.add_box_visual(half_size=list(p), material=mat)
                    elif kind == "cyl":  # SAPIEN's cylinders lie along x: turn upright
                        up = sapien.Pose(q=euler2quat(0, np.pi / 2, 0))
                        b.add_cylinder_collision(up, radius=p[0], half_length=p[1], material=friction)
                        b.add_cylinder_visual(up, radius=p[0], half_length=p[1], material=mat)
                    elif kind == "sphere":
                        b.add_sphere_collision(radius=p, material=friction)
                        b.add_sphere_visual(radius=p, material=mat)
                    else:
                        b.add_capsule_collision(radius=p[0], half_length=p[1], material=friction)
                        b.add_capsule_visual(radius=p[0], half_length=p[1], material=mat)
                    b.set_scene_idxs([i])
                    b.initial_pose = sapien.Pose(p=[2.0 + 0.15 * j, 2.0, GROUND_Z + 0.06])
                    return b.build(name=f"{name}-{i}")

                self.bank.append(self._per_scene(build))
                self.bank_keys.append((shape, size))
        self._half_heights = torch.tensor([half_height(s, z) for s, z in self.bank_keys], device=self.device)
        self._yaw_periods = torch.tensor([GRASP_YAW_PERIOD[s] for s, _ in self.bank_keys], device=self.device)
        n = self.num_envs
        self.target_index = torch.zeros(n, dtype=torch.long, device=self.device)  # bank index of the target
        self.episode_objects = torch.zeros((n, OBJECTS_PER_EPISODE), dtype=torch.long, device=self.device)
        self.instruction_tokens = torch.zeros((n, INSTRUCTION_BYTES), dtype=torch.uint8, device=self.device)
        self.instructions = [""] * n
        self.target_colour = [""] * n
        self._grasp_run = torch.zeros(n, dtype=torch.long, device=self.device)
        self._last_grasped = torch.zeros(n, dtype=torch.bool, device=self.device)
        self._last_potential = torch.zeros(n, device=self.device)

    # --------------------------------------------------------------- episodes
    def _layout(self, rng, b: int):
        """Plate xy [b, 2], object xy [b, 4, 2] and the pedestal height [b] for this split."""
        side = np.where(rng.uniform(0, 1, size=(1,))[:, 0] < 0.5, -1.0, 1.0)  # plate left or right
        if self.split == "execution":
            plate = np.stack([rng.uniform(-0.17, -0.12, size=(1,))[:, 0],
                              side * rng.uniform(0.1, 0.14, size=(1,))[:, 0]], -1)
            cells_x, cells_y = np.array([0.04, 0.15]), np.array([0.0, 0.11])
            pedestal = rng.uniform(0.03, 0.06, size=(1,))[:, 0]
        else:
            plate = np.stack([rng.uniform(-0.06, 0.04, size=(1,))[:, 0],
                              side * rng.uniform(0.13, 0.17, size=(1,))[:, 0]], -1)
            cells_x, cells_y = np.array([-0.1, 0.02]), np.array([0.0, 0.11])
            pedestal = np.zeros(b)
        order = rng.permutation(4)  # which grid cell each of the 4 objects takes
        cx = cells_x[order % 2]
        cy = -side[:, None] * (cells_y[order // 2] + 0.01)
        jitter = rng.uniform(-0.01, 0.01, size=(4, 2))
        objects = np.stack([cx, cy], -1) + jitter
        return plate, objects, pedestal

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict):
        with torch.device(self.device):
            b = len(env_idx)
            rng = self._batched_episode_rng[env_idx]
            idx_np = env_idx.cpu().numpy()
            plate, objects, pedestal = self._layout(rng, b)
            # objects: distinct shapes, distinct colours; the first is the target
            if self.split == "semantic":
                target_shape = np.array(SEMANTIC_SHAPES)[rng.randint(0, len(SEMANTIC_SHAPES), size=(1,))[:, 0]]
            else:
                target_shape = np.array(TRAIN_SHAPES)[rng.randint(0, len(TRAIN_SHAPES), size=(1,))[:, 0]]
            distractor_perm = rng.permutation(len(TRAIN_SHAPES))
            sizes = rng.randint(0, 2, size=(OBJECTS_PER_EPISODE,))
            palette = VISION_COLOURS if self.split == "vision" else TRAIN_COLOURS
            colour_perm = rng.permutation(len(palette))
            yaws = rng.uniform(-np.pi, np.pi, size=(OBJECTS_PER_EPISODE,))
            phrasings = SEMANTIC_PHRASINGS if self.split == "semantic" else TRAIN_PHRASINGS
            phrase_i = rng.randint(0, len(phrasings), size=(1,))[:, 0]
            qpos_noise = rng.normal(0, self.robot_init_qpos_noise, size=(9,))

            chosen = np.zeros((b, OBJECTS_PER_EPISODE), np.int64)
            tokens = np.zeros((b, INSTRUCTION_BYTES), np.uint8)
            for r in range(b):  # small bookkeeping per reset env (names, strings); physics is batched below
                shapes = [str(target_shape[r])] + [TRAIN_SHAPES[k] for k in distractor_perm[r]
                                                   if TRAIN_SHAPES[k] != target_shape[r]][: OBJECTS_PER_EPISODE - 1]
                chosen[r] = [SHAPE_NAMES.index(s) * 2 + int(z) for s, z in zip(shapes, sizes[r])]
                colour = palette[colour_perm[r][0]]
                e = int(idx_np[r])
                self.target_colour[e] = colour
                text = phrasings[phrase_i[r]].format(colour=colour, shape=shapes[0])
                self.instructions[e] = text
                tokens[r] = encode_instruction(text)
                for k, j in enumerate(chosen[r]):
                    self._set_colour(self.bank[j], e, COLOURS[palette[colour_perm[r][k]]])
            self.instruction_tokens[env_idx] = torch.as_tensor(tokens, device=self.device)
            chosen_t = torch.as_tensor(chosen, device=self.device)
            self.episode_objects[env_idx] = chosen_t
            self.target_index[env_idx] = chosen_t[:, 0]

            # every bank object parked on the floor, then the episode's four placed
            active = torch.zeros((b, len(self.bank)), dtype=torch.bool)
            active.scatter_(1, chosen_t, True)
            pedestal_t = torch.as_tensor(pedestal, dtype=torch.float32)
            for j, actor in enumerate(self.bank):
                hz = float(self._half_heights[j])
                slot = (chosen_t == j).float()  # [b, 4]
                on_table = active[:, j]
                xy = torch.einsum("bk,bkd->bd", slot, torch.as_tensor(objects, dtype=torch.float32))
                is_target = chosen_t[:, 0] == j
                z = hz + 0.001 + torch.where(is_target, pedestal_t, torch.zeros(b))
                yaw = torch.einsum("bk,bk->b", slot, torch.as_tensor(yaws, dtype=torch.float32))
                if self._yaw_periods[j] == 0:
                    yaw = torch.zeros(b)
                park = torch.tensor([2.0 + 0.15 * j, 2.0, GROUND_Z + hz + 0.001])
                p = torch.where(on_table[:, None], torch.cat([xy, z[:, None]], 1), park.expand(b, 3))
                q = torch.stack([torch.cos(yaw / 2), torch.zeros(b), torch.zeros(b), torch.sin(yaw / 2)], 1)
                actor.set_pose(Pose.create_from_pq(p, q))
            plate_p = torch.zeros((b, 3))
            plate_p[:, :2] = torch.as_tensor(plate, dtype=torch.float32)
            self.plate.set_pose(Pose.create_from_pq(plate_p))
            target_xy = torch.as_tensor(objects[:, 0], dtype=torch.float32)
            ped_p = torch.cat([target_xy, (pedestal_t - 0.5)[:, None]], 1)
            ped_p = torch.where((pedestal_t > 0)[:, None], ped_p, torch.tensor([1.5, -1.5, GROUND_Z + 0.5]))
            self.pedestal.set_pose(Pose.create_from_pq(ped_p))

            reset_table_and_panda(self, qpos_noise)
            self._grasp_run[env_idx] = 0
            self._last_potential[env_idx] = 0.0

    def _set_colour(self, actor: Actor, env: int, rgb) -> None:
        obj = actor._objs[env] if len(actor._objs) > 1 else actor._objs[0]
        render = obj.find_component_by_type(sapien.render.RenderBodyComponent)
        for shape in render.render_shapes:
            for part in (shape.parts if hasattr(shape, "parts") else [shape]):
                part.material.base_color = [*rgb, 1.0]

    # ------------------------------------------------------------- queries
    def _per_target(self, fn) -> torch.Tensor:
        """fn(actor) for each env's target: one actor when there is one env (the CPU case), else every
        bank actor batched over the envs and the target's row picked (no loop over envs)."""
        if self.num_envs == 1:
            return fn(self.bank[int(self.target_index[0])])
        values = torch.stack([fn(a) for a in self.bank], 1)  # [n, 12, ...]
        return values[torch.arange(self.num_envs, device=self.device), self.target_index]

    def target_pose(self) -> Pose:
        return Pose.create(self._per_target(lambda a: a.pose.raw_pose))

    def target_velocity(self) -> torch.Tensor:
        return self._per_target(lambda a: a.linear_velocity)

    def target_grasped(self) -> torch.Tensor:
        return self._per_target(lambda a: self.agent.is_grasping(a))

    def target_half_height(self) -> torch.Tensor:
        return self._half_heights[self.target_index]

    def privileged_state(self) -> dict[str, torch.Tensor]:
        """What the scripted expert reads (not an observation)."""
        pose = self.target_pose()
        return {"tcp_pose": self.agent.tcp.pose.raw_pose, "obj_pose": pose.raw_pose,
                "obj_half_height": self.target_half_height(), "obj_yaw_period": self._yaw_periods[self.target_index],
                "place_pos": self.plate.pose.p + torch.tensor([0, 0, PLATE_TOP], device=self.device),
                "is_grasped": self._last_grasped.clone(), "elapsed_steps": self.elapsed_steps.clone()}

    def evaluate(self):
        pose = self.target_pose()
        grasped = self.target_grasped()
        plate = self.plate.pose.p
        xy = torch.linalg.norm(pose.p[:, :2] - plate[:, :2], dim=1)
        gap = pose.p[:, 2] - self.target_half_height() - PLATE_TOP
        speed = torch.linalg.norm(self.target_velocity(), dim=1)
        on_plate = (xy < PLATE_INNER) & (gap > -0.006) & (gap < SUCCESS_MAX_GAP)
        success = on_plate & ~grasped & (speed < 0.05)
        self._last_grasped = grasped
        self._grasp_run = torch.where(grasped, self._grasp_run + 1, torch.zeros_like(self._grasp_run))
        return {"success": success, "on_plate": on_plate, "is_grasped": grasped,
                "grasp_held": self._grasp_run >= HOLD_STEPS}

    def _get_obs_extra(self, info: dict):
        obs = dict(tcp_pose=self.agent.tcp.pose.raw_pose, is_grasped=info["is_grasped"])
        if self.obs_mode_struct.use_state:
            pose = self.target_pose()
            obs.update(obj_pose=pose.raw_pose, plate_pos=self.plate.pose.p,
                       tcp_to_obj=pose.p - self.agent.tcp.pose.p, obj_to_plate=self.plate.pose.p - pose.p)
        return obs

    def compute_dense_reward(self, obs: Any, action: torch.Tensor, info: dict):
        potential = 0.1 * info["is_grasped"].float() + 0.1 * info["grasp_held"].float() + 1.0 * info["success"].float()
        if not self.differenced_reward:
            return potential
        reward = potential - self._last_potential
        self._last_potential = potential.clone()
        return reward

    def compute_normalized_dense_reward(self, obs: Any, action: torch.Tensor, info: dict):
        return self.compute_dense_reward(obs, action, info) / 1.2
