"""ZarlGSPutCubeOnPlate-v0: pick up the cube and put it on the plate, seen through 3D Gaussian splatting.

ManiSkill simulates the scene (PhysX: a Panda on ManiSkill's table, a 4 cm red cube, the plate of
ZarlPutOnPlate-v1); the observation's image is, with ``render_backend="gaussians"`` (the default), a
render of Gaussian assets (envs/gaussians): every rigid part (each Panda link with a visual, the cube,
the plate) has its own cloud in its own frame, posed each step by the link's or actor's world pose; the
static background (table and floor) is rendered once and the parts composited over it. With
``render_backend="simulator"`` the same camera is rendered by SAPIEN instead, so that a policy trained
on one can be evaluated on the other (the appearance gap, both ways). The assets come from
``python -m launch.build_gs_assets`` (a capture of this scene by SAPIEN, fitted; envs/maniskill/gs_capture.py)
or from a real capture's .ply files with the same manifest (envs/gaussians/assets.py).

Instruction: "pick up the cube and put it on the plate" (the ``instruction`` observation, as
ZarlPutOnPlate-v1 encodes it). Control: 7-D ``pd_ee_delta_pose`` at 10 Hz (100 Hz physics, as
ZarlPutOnPlate-v1, whose scripted expert this task reuses); 100 steps per episode.

Success: the cube's centre within 7 cm (xy) of the plate's centre and 0-7 cm above the plate's base
(the table's surface); the episode ends there. Reward: sparse, 1 on success and 0 otherwise, in every
reward mode (``dense`` included, so that the vector env's default mode gives the sparse reward).

Randomness: the cube's and the plate's places and the cube's yaw come from ManiSkill's per-env episode
RNG, so a seed gives the same episode in any row of any batch (see put_on_plate.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import sapien
import torch

from mani_skill.envs.sapien_env import BaseEnv
from mani_skill.sensors.camera import CameraConfig
from mani_skill.utils import sapien_utils
from mani_skill.utils.registration import register_env
from mani_skill.utils.scene_builder.table import TableSceneBuilder
from mani_skill.utils.structs.pose import Pose
from mani_skill.utils.structs.types import SimConfig

from envs.gaussians.assets import load_assets
from envs.gaussians.camera import Cameras, intrinsics
from envs.gaussians.scene import GaussianScene
from envs.maniskill.put_on_plate import (INSTRUCTION_BYTES, PLATE_TOP, build_plate, encode_instruction,
                                         reset_table_and_panda)

ENV_ID = "ZarlGSPutCubeOnPlate-v0"
MAX_EPISODE_STEPS = 100
INSTRUCTION = "pick up the cube and put it on the plate"
CUBE_HALF = 0.02
SUCCESS_XY = 0.07
SUCCESS_DZ = 0.07
RENDER_BACKENDS = ("gaussians", "simulator")
CAMERA_EYE, CAMERA_TARGET, CAMERA_FOVY = (0.35, 0.0, 0.45), (-0.05, 0.0, 0.0), np.deg2rad(60)
ROBOT_BASE = (-0.615, 0.0, 0.0)
BACKGROUND_COLOUR = (0.0, 0.0, 0.0)  # what the background's Gaussians do not cover (SAPIEN's empty sky is black)
# SAPIEN's camera frame (x forward, y left, z up) -> OpenCV's (x right, y down, z forward)
SAPIEN_TO_OPENCV = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def sapien_pose_to_viewmat(pose: sapien.Pose) -> torch.Tensor:
    """The world -> camera matrix (OpenCV axes) of a SAPIEN camera entity at `pose`."""
    cam_to_world = torch.as_tensor(pose.to_transformation_matrix(), dtype=torch.float32)
    view = torch.eye(4)
    view[:3, :3] = SAPIEN_TO_OPENCV @ cam_to_world[:3, :3].T
    view[:3, 3] = -view[:3, :3] @ cam_to_world[:3, 3]
    return view


def observation_camera(size: int) -> Cameras:
    """The task's third-person camera for the Gaussian renderer (the same as its SAPIEN camera)."""
    pose = sapien_utils.look_at(eye=list(CAMERA_EYE), target=list(CAMERA_TARGET)).sp
    return Cameras(sapien_pose_to_viewmat(pose)[None], intrinsics(float(CAMERA_FOVY), size, size)[None], size, size)


@register_env(ENV_ID, max_episode_steps=MAX_EPISODE_STEPS)
class GSPutCubeOnPlateEnv(BaseEnv):
    SUPPORTED_ROBOTS = ["panda"]
    SUPPORTED_REWARD_MODES = ["sparse", "dense", "none"]

    def __init__(self, *args, robot_uids="panda", render_backend: str = "gaussians",
                 gaussian_assets: str | Path | None = None, gaussian_backend: str = "torch",
                 gaussian_device: str | None = None, camera_size: int = 224,
                 robot_init_qpos_noise: float = 0.02, **kwargs):
        if render_backend not in RENDER_BACKENDS:
            raise ValueError(f"unknown render_backend {render_backend!r}; one of {RENDER_BACKENDS}")
        self.render_backend = render_backend
        self.camera_size = int(camera_size)
        self.robot_init_qpos_noise = robot_init_qpos_noise
        self.gaussian_scene: GaussianScene | None = None
        if render_backend == "gaussians" and kwargs.get("obs_mode", "state") not in ("state", "state_dict", "none"):
            if gaussian_assets is None:
                raise ValueError(f"{ENV_ID} with render_backend='gaussians' needs gaussian_assets=<directory of "
                                 "per-part .ply files and manifest.json> (build them with `python -m "
                                 "launch.build_gs_assets --out DIR`), or render_backend='simulator'")
            self._assets = load_assets(gaussian_assets)
            self._gaussian_backend = gaussian_backend
            # where the Gaussians are rendered: gsplat needs CUDA even when PhysX runs on the CPU (the GPU
            # machine without SAPIEN's PhysX GPU library); by default the simulation's device otherwise
            self._gaussian_device = gaussian_device
        kwargs.setdefault("control_mode", "pd_ee_delta_pose")
        super().__init__(*args, robot_uids=robot_uids, **kwargs)

    # ------------------------------------------------------------------ scene
    @property
    def _default_sim_config(self):
        return SimConfig(sim_freq=100, control_freq=10)

    @property
    def uses_gaussians(self) -> bool:
        return self.render_backend == "gaussians" and hasattr(self, "_assets")

    @property
    def _default_sensor_configs(self):
        if self.uses_gaussians:
            return []  # the image is the Gaussians' render (_get_obs_sensor_data): no SAPIEN camera to pay for
        pose = sapien_utils.look_at(eye=list(CAMERA_EYE), target=list(CAMERA_TARGET))
        return [CameraConfig("base_camera", pose, self.camera_size, self.camera_size, float(CAMERA_FOVY), 0.01, 100)]

    @property
    def _default_human_render_camera_configs(self):
        pose = sapien_utils.look_at(eye=[0.5, 0.5, 0.6], target=[-0.05, 0.0, 0.05])
        return CameraConfig("render_camera", pose, 512, 512, 1, 0.01, 100)

    def _load_agent(self, options: dict):
        super()._load_agent(options, sapien.Pose(p=list(ROBOT_BASE)))

    def _load_scene(self, options: dict):
        self.table_scene = TableSceneBuilder(self, robot_init_qpos_noise=self.robot_init_qpos_noise)
        self.table_scene.build()
        friction = sapien.physx.PhysxMaterial(static_friction=1.0, dynamic_friction=1.0, restitution=0.0)
        builder = self.scene.create_actor_builder()
        builder.add_box_collision(half_size=[CUBE_HALF] * 3, material=friction)
        builder.add_box_visual(half_size=[CUBE_HALF] * 3,
                               material=sapien.render.RenderMaterial(base_color=[0.85, 0.1, 0.1, 1]))
        builder.initial_pose = sapien.Pose(p=[0, 0, CUBE_HALF])
        self.cube = builder.build(name="cube")
        self.plate = build_plate(self.scene)
        n = self.num_envs
        self.instruction_tokens = torch.as_tensor(encode_instruction(INSTRUCTION), device=self.device).repeat(n, 1)
        self.instructions = [INSTRUCTION] * n
        self._last_grasped = torch.zeros(n, dtype=torch.bool, device=self.device)
        if self.uses_gaussians:
            self._build_gaussian_scene()

    # ------------------------------------------------------------- Gaussians
    def rigid_parts(self) -> dict[str, tuple[str, Any]]:
        """The scene's rigid parts that move: part name -> (kind, the link or actor whose pose poses it)."""
        parts = {}
        for link in self.agent.robot.links:
            if link._objs[0].entity.find_component_by_type(sapien.render.RenderBodyComponent) is not None:  # has a visual
                parts[link.name] = ("link", link)
        parts["cube"] = ("actor", self.cube)
        parts["plate"] = ("actor", self.plate)
        return parts

    def static_actors(self) -> list:
        """What the background part holds: the table scene's actors (table, floor)."""
        return [self.table_scene.table, self.table_scene.ground]

    def _build_gaussian_scene(self):
        manifest, assets = self._assets
        if manifest.get("scene") != ENV_ID:
            raise ValueError(f"the Gaussian assets are of scene {manifest.get('scene')!r}, not {ENV_ID}")
        wanted = self.rigid_parts()
        missing = [name for name in wanted if name not in assets]
        if missing:
            raise ValueError(f"the Gaussian assets lack parts {missing} (they have {sorted(assets)})")
        background = [cloud for entry, cloud in assets.values() if entry.kind == "background"]
        self.gaussian_scene = GaussianScene({name: assets[name][1] for name in wanted},
                                            background[0] if background else None, BACKGROUND_COLOUR,
                                            backend=self._gaussian_backend, device=self._gaussian_render_device())
        self._gaussian_camera = observation_camera(self.camera_size)

    def _gaussian_render_device(self) -> torch.device:
        if self._gaussian_device is not None:
            return torch.device(self._gaussian_device)
        return torch.device("cuda") if self._gaussian_backend == "gsplat" else torch.device(self.device)

    def part_poses(self) -> tuple[torch.Tensor, torch.Tensor]:
        """World poses of the moving parts (rigid_parts' order): positions [B, P, 3], quaternions [B, P, 4] (w x y z)."""
        raw = torch.stack([body.pose.raw_pose for _, body in self.rigid_parts().values()], 1)
        return raw[..., :3], raw[..., 3:]

    def render_gaussians(self) -> torch.Tensor:
        """The observation camera's image of every sub-scene, uint8 [B, H, W, 3]."""
        positions, quats = self.part_poses()
        images = self.gaussian_scene.render(positions, quats, self._gaussian_camera)
        return (images * 255 + 0.5).to(torch.uint8).to(self.device)

    def _get_obs_sensor_data(self, apply_texture_transforms: bool = True) -> dict:
        if not self.uses_gaussians:
            return super()._get_obs_sensor_data(apply_texture_transforms)
        return {"base_camera": {"rgb": self.render_gaussians()}}

    # --------------------------------------------------------------- episodes
    def _initialize_episode(self, env_idx: torch.Tensor, options: dict):
        with torch.device(self.device):
            b = len(env_idx)
            rng = self._batched_episode_rng[env_idx]
            side = np.where(rng.uniform(0, 1, size=(1,))[:, 0] < 0.5, -1.0, 1.0)  # plate left or right of the cube
            cube_xy = np.stack([rng.uniform(-0.08, 0.04, size=(1,))[:, 0],
                                -side * rng.uniform(0.0, 0.08, size=(1,))[:, 0]], -1)
            plate_xy = np.stack([rng.uniform(-0.08, 0.04, size=(1,))[:, 0],
                                 side * rng.uniform(0.12, 0.18, size=(1,))[:, 0]], -1)
            yaw = rng.uniform(-np.pi, np.pi, size=(1,))[:, 0]
            qpos_noise = rng.normal(0, self.robot_init_qpos_noise, size=(9,))
            p = torch.zeros((b, 3))
            p[:, :2] = torch.as_tensor(cube_xy, dtype=torch.float32)
            p[:, 2] = CUBE_HALF + 0.001
            yaw_t = torch.as_tensor(yaw, dtype=torch.float32)
            q = torch.stack([torch.cos(yaw_t / 2), torch.zeros(b), torch.zeros(b), torch.sin(yaw_t / 2)], 1)
            self.cube.set_pose(Pose.create_from_pq(p, q))
            plate_p = torch.zeros((b, 3))
            plate_p[:, :2] = torch.as_tensor(plate_xy, dtype=torch.float32)
            self.plate.set_pose(Pose.create_from_pq(plate_p))
            reset_table_and_panda(self, qpos_noise)

    # ---------------------------------------------------------------- queries
    def privileged_state(self) -> dict[str, torch.Tensor]:
        """What the scripted expert (envs/maniskill/expert.py) reads (not an observation)."""
        n = self.num_envs
        return {"tcp_pose": self.agent.tcp.pose.raw_pose, "obj_pose": self.cube.pose.raw_pose,
                "obj_half_height": torch.full((n,), CUBE_HALF, device=self.device),
                "obj_yaw_period": torch.full((n,), np.pi / 2, device=self.device),
                "place_pos": self.plate.pose.p + torch.tensor([0, 0, PLATE_TOP], device=self.device),
                "is_grasped": self._last_grasped.clone(), "elapsed_steps": self.elapsed_steps.clone()}

    def evaluate(self):
        cube, plate = self.cube.pose.p, self.plate.pose.p
        xy = torch.linalg.norm(cube[:, :2] - plate[:, :2], dim=1)
        dz = cube[:, 2] - plate[:, 2]
        success = (xy < SUCCESS_XY) & (dz >= 0) & (dz <= SUCCESS_DZ)
        self._last_grasped = self.agent.is_grasping(self.cube)
        return {"success": success, "is_grasped": self._last_grasped}

    def _get_obs_extra(self, info: dict):
        obs = dict(tcp_pose=self.agent.tcp.pose.raw_pose, is_grasped=info["is_grasped"])
        if self.obs_mode_struct.use_state:
            obs.update(cube_pose=self.cube.pose.raw_pose, plate_pos=self.plate.pose.p)
        return obs

    def compute_sparse_reward(self, obs: Any, action: torch.Tensor, info: dict):
        return info["success"].float()

    def compute_dense_reward(self, obs: Any, action: torch.Tensor, info: dict):
        return self.compute_sparse_reward(obs, action, info)

    def compute_normalized_dense_reward(self, obs: Any, action: torch.Tensor, info: dict):
        return self.compute_sparse_reward(obs, action, info)


assert INSTRUCTION_BYTES >= len(INSTRUCTION.encode())
