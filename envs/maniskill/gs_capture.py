"""Capture for Real2Sim: each rigid part of a ManiSkill scene photographed alone by SAPIEN's renderer from
many camera poses, with its exact mask, as a real capture would photograph it (turntable views of an
object, the robot's links, the empty table). The result per part is ``Views`` in the part's own frame
(envs/gaussians/views.py) and a coloured point cloud (back-projected from the depth buffer) that
initialises its Gaussians; envs/gaussians/fit.py fits them.

How: one SAPIEN camera is added to the (single, CPU-simulated) sub-scene; for each part every other
render body is made invisible (``visibility = 0``), so the part is seen whole, never occluded, and its
mask is where the segmentation buffer shows its entity. SAPIEN's ``PositionSegmentation`` buffer holds,
per pixel, the camera-frame position in millimetres (OpenGL axes: -z forward) and the entity's id.
Cameras are placed on a sphere around the part's bounding box (a Fibonacci spiral of directions, from
below the horizon only for robot links, which the task's camera can see from below), at a distance that
fits the box in the field of view; the background's cameras are jittered around the task's camera,
since that is the only place it is ever seen from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sapien
import torch
from mani_skill.utils import sapien_utils

from envs.gaussians.camera import Cameras, intrinsics
from envs.gaussians.cloud import GaussianCloud
from envs.gaussians.views import Views
from envs.maniskill.put_cube_on_plate import CAMERA_EYE, CAMERA_TARGET, sapien_pose_to_viewmat

OPENGL_TO_OPENCV = torch.tensor([1.0, -1.0, -1.0])


@dataclass
class PartCapture:
    name: str
    kind: str  # "link", "actor" or "background"
    source: str  # the link's or actor's name
    views: Views  # in the part's frame ("world" for the background)
    points: torch.Tensor  # [M, 3] back-projected surface points in the part's frame
    colours: torch.Tensor  # [M, 3]


def _render_bodies(scene: sapien.Scene) -> list[tuple[sapien.Entity, sapien.render.RenderBodyComponent]]:
    out = []
    for entity in scene.entities:
        body = entity.find_component_by_type(sapien.render.RenderBodyComponent)
        if body is not None:
            out.append((entity, body))
    return out


def body_entity(body) -> sapien.Entity:
    """The SAPIEN entity of a ManiSkill Link (its component's entity) or Actor (the entity itself) in sub-scene 0."""
    obj = body._objs[0]
    return obj if isinstance(obj, sapien.Entity) else obj.entity


def fibonacci_directions(n: int, min_elevation: float) -> np.ndarray:
    """n unit vectors spread evenly over the sphere above elevation `min_elevation` (radians)."""
    k = np.arange(n) + 0.5
    z_low = math.sin(min_elevation)
    z = 1 - k / n * (1 - z_low)
    phi = k * math.pi * (3 - math.sqrt(5))
    r = np.sqrt(np.clip(1 - z * z, 0, 1))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


class SceneCapture:
    """Photographs of one ManiSkill env (num_envs=1, CPU simulation) at size x size pixels."""

    def __init__(self, env, size: int, fovy: float = math.radians(50)):
        if env.num_envs != 1:
            raise ValueError(f"capture works on a single sub-scene (num_envs=1), got num_envs={env.num_envs}")
        self.env = env
        self.scene = env.scene.sub_scenes[0]
        self.size, self.fovy = int(size), float(fovy)
        self.entity = sapien.Entity()
        self.camera = sapien.render.RenderCameraComponent(self.size, self.size)
        self.camera.set_fovy(self.fovy)
        self.camera.near, self.camera.far = 0.01, 100.0
        self.entity.add_component(self.camera)
        self.scene.add_entity(self.entity)
        self.K = intrinsics(self.fovy, self.size, self.size)

    def _show_only(self, entities: list[sapien.Entity]):
        keep = {id(e) for e in entities}
        for entity, body in _render_bodies(self.scene):
            body.visibility = 1.0 if id(entity) in keep else 0.0

    def _shoot(self, pose: sapien.Pose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.entity.set_pose(pose)
        self.scene.update_render()
        self.camera.take_picture()
        rgb = self.camera.get_picture("Color")[..., :3]
        pos_seg = self.camera.get_picture("PositionSegmentation")
        return rgb, pos_seg[..., :3].astype(np.float32) / 1000.0, pos_seg[..., 3].astype(np.int64)

    def capture(self, name: str, kind: str, source: str, entities: list[sapien.Entity], frame_pose: sapien.Pose | None,
                poses: list[sapien.Pose]) -> PartCapture:
        """Views of `entities` alone from camera `poses`, in the frame of `frame_pose` (None: world)."""
        self._show_only(entities)
        ids = torch.tensor([e.per_scene_id for e in entities])
        images, masks, viewmats, points, colours = [], [], [], [], []
        to_world = torch.eye(4) if frame_pose is None else torch.as_tensor(frame_pose.to_transformation_matrix(),
                                                                            dtype=torch.float32)
        for pose in poses:
            rgb, pos_gl, seg = self._shoot(pose)
            view_world = sapien_pose_to_viewmat(pose)
            view_part = view_world @ to_world  # the camera seen from the part's frame
            mask = torch.isin(torch.from_numpy(seg), ids)
            image = torch.from_numpy(rgb.astype(np.float32) / 255.0)
            images.append(image)
            masks.append(mask.float())
            viewmats.append(view_part)
            # back-projection: OpenGL camera coordinates -> OpenCV -> the part's frame
            cam_pts = torch.from_numpy(pos_gl)[mask] * OPENGL_TO_OPENCV
            rot, t = view_part[:3, :3], view_part[:3, 3]
            points.append((cam_pts - t) @ rot)
            colours.append(image[mask])
        self._show_only([e for e, _ in _render_bodies(self.scene)])
        n = len(poses)
        views = Views(torch.stack(images), torch.stack(masks),
                      Cameras(torch.stack(viewmats), self.K.expand(n, 3, 3).clone(), self.size, self.size))
        return PartCapture(name, kind, source, views, torch.cat(points), torch.cat(colours))

    def orbit_poses(self, entities: list[sapien.Entity], n: int, min_elevation: float) -> list[sapien.Pose]:
        boxes = [e.find_component_by_type(sapien.render.RenderBodyComponent).compute_global_aabb_tight()
                 for e in entities]
        lo, hi = np.min([b[0] for b in boxes], 0), np.max([b[1] for b in boxes], 0)
        centre, radius = (lo + hi) / 2, max(float(np.linalg.norm(hi - lo)) / 2, 0.01)
        distance = 1.15 * radius / math.sin(self.fovy / 2)  # the bounding sphere fits the view
        poses = []
        for d in fibonacci_directions(n, min_elevation):
            up = [0, 0, 1] if abs(d[2]) < 0.99 else [1, 0, 0]
            poses.append(sapien_utils.look_at(eye=(centre + distance * d).tolist(), target=centre.tolist(),
                                              up=up).sp)
        return poses

    def background_poses(self, n: int, seed: int) -> list[sapien.Pose]:
        rng = np.random.default_rng(seed)
        poses = []
        for i in range(n):
            eye = np.asarray(CAMERA_EYE) + (rng.uniform(-0.12, 0.12, 3) if i else 0.0)
            target = np.asarray(CAMERA_TARGET) + (rng.uniform(-0.08, 0.08, 3) if i else 0.0)
            poses.append(sapien_utils.look_at(eye=eye.tolist(), target=target.tolist()).sp)
        return poses

    def close(self):
        self.scene.remove_entity(self.entity)


def capture_scene(env, size: int, views_per_part: int, background_views: int, seed: int = 0) -> list[PartCapture]:
    """Every part of a GSPutCubeOnPlateEnv (render_backend='simulator', num_envs=1, reset): the moving parts
    in their own frames, then the background (the table scene's actors) in the world frame."""
    cap = SceneCapture(env, size)
    out = []
    try:
        for name, (kind, body) in env.rigid_parts().items():
            entity = body_entity(body)
            below = math.radians(-60) if kind == "link" else math.radians(5)
            poses = cap.orbit_poses([entity], views_per_part, below)
            out.append(cap.capture(name, kind, body.name, [entity], entity.pose, poses))
        statics = [body_entity(a) for a in env.static_actors()]
        out.append(cap.capture("background", "background", "+".join(a.name for a in env.static_actors()), statics,
                               None, cap.background_poses(background_views, seed)))
    finally:
        cap.close()
    return out


def neighbour_distance(points: torch.Tensor, k: int = 3, chunk: int = 2048) -> torch.Tensor:
    """Mean distance of each point to its k nearest neighbours [M] (3DGS's initial scale), in chunks."""
    out = []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start:start + chunk], points)
        out.append(d.topk(min(k + 1, len(points)), largest=False).values[:, 1:].mean(1))
    return torch.cat(out)


def initial_cloud(part: PartCapture, max_points: int, seed: int, sh_degree: int = 0) -> GaussianCloud:
    """Gaussians at (a random subset of) the part's back-projected points, coloured by their pixels, as
    wide as the mean distance to their 3 nearest neighbours (as 3DGS initialises from points)."""
    g = torch.Generator().manual_seed(int(seed))
    n = len(part.points)
    if n == 0:
        raise ValueError(f"part {part.name!r} was not seen in any capture view (empty masks)")
    pick = torch.randperm(n, generator=g)[:max_points]
    points = part.points[pick]
    scale = neighbour_distance(points).clamp(1e-4, 0.05)
    return GaussianCloud.from_points(points, part.colours[pick], scale, 0.7, sh_degree)
