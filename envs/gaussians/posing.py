"""Rigid posing: Gaussians stored in a part's own frame (a robot link's, an object's) placed in the world
by the part's pose (position p, unit quaternion q, w x y z), as the simulator reports it each step.

A rigid motion x -> R x + p maps a Gaussian of mean m and covariance S to mean R m + p and covariance
R S R^T; since S = R_g diag(s)^2 R_g^T, the new covariance is that of rotation R R_g with the same
scales, so the Gaussian's quaternion becomes q * q_g and its scales do not change. Its colour's
degree-1 SH band turns with it (sh.rotate_sh_degree1; the degree-2 and 3 bands are not rotated).
"""
from __future__ import annotations

import torch

from envs.gaussians.cloud import GaussianCloud
from envs.gaussians.rasterize_torch import quat_to_rotmat
from envs.gaussians.sh import rotate_sh_degree1


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of quaternions [..., 4] (w x y z): the rotation b, then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def pose_cloud(cloud: GaussianCloud, position: torch.Tensor, quat: torch.Tensor) -> GaussianCloud:
    """The cloud (in its part's frame) moved by the part's world pose: position [3] and quat [4] (w x y z),
    or one pose per Gaussian ([N, 3] and [N, 4]) to move many parts of one concatenated cloud at once."""
    dtype, dev = cloud.means.dtype, cloud.means.device
    position = torch.as_tensor(position, dtype=dtype, device=dev).expand(len(cloud), 3)
    quat = torch.nn.functional.normalize(torch.as_tensor(quat, dtype=dtype, device=dev), dim=-1).expand(len(cloud), 4)
    rot = quat_to_rotmat(quat)  # [N, 3, 3]
    return GaussianCloud((rot @ cloud.means[..., None])[..., 0] + position, quat_multiply(quat, cloud.quats),
                         cloud.log_scales, cloud.opacity_logits, rotate_sh_degree1(cloud.sh, rot))


def invert_pose(position: torch.Tensor, quat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse rigid motion of (position, quat)."""
    quat = torch.nn.functional.normalize(quat, dim=-1)
    conj = quat * quat.new_tensor([1.0, -1.0, -1.0, -1.0])
    return -(quat_to_rotmat(conj) @ position), conj


def pose_matrix(position: torch.Tensor, quat: torch.Tensor) -> torch.Tensor:
    """The 4 x 4 homogeneous matrix of a pose."""
    m = torch.eye(4, dtype=position.dtype, device=position.device)
    m[:3, :3] = quat_to_rotmat(quat)
    m[:3, 3] = position
    return m
