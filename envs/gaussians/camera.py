"""Pinhole cameras as the rasterizers take them: ``viewmats`` [C, 4, 4] world -> camera in the OpenCV
convention (x right, y down, z forward) and intrinsics ``Ks`` [C, 3, 3] in pixels, with pixel (i, j)
centred at (j + 0.5, i + 0.5), so a principal point of (W / 2, H / 2) is the image centre."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def intrinsics(fovy: float, width: int, height: int) -> torch.Tensor:
    """K [3, 3] for a vertical field of view `fovy` (radians), square pixels, centred principal point."""
    f = 0.5 * height / math.tan(0.5 * fovy)
    return torch.tensor([[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]])


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """The world -> camera matrix [4, 4] (OpenCV axes) of a camera at `eye` looking at `target`."""
    eye, target, up = (torch.as_tensor(v, dtype=torch.float32) for v in (eye, target, up))
    forward = torch.nn.functional.normalize(target - eye, dim=0)
    right = torch.linalg.cross(forward, up)
    if right.norm() < 1e-6:  # looking along `up`: any right vector will do
        right = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0]))
    right = torch.nn.functional.normalize(right, dim=0)
    down = torch.linalg.cross(forward, right)
    rot = torch.stack([right, down, forward], 0)  # rows: camera axes in world coordinates
    view = torch.eye(4)
    view[:3, :3] = rot
    view[:3, 3] = -rot @ eye
    return view


def camera_centres(viewmats: torch.Tensor) -> torch.Tensor:
    """Camera centres in world coordinates [C, 3] of world -> camera matrices [C, 4, 4]."""
    rot, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    return -(rot.transpose(1, 2) @ t[..., None])[..., 0]


@dataclass
class Cameras:
    viewmats: torch.Tensor  # [C, 4, 4]
    Ks: torch.Tensor  # [C, 3, 3]
    width: int
    height: int

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    def select(self, index) -> "Cameras":
        return Cameras(self.viewmats[index], self.Ks[index], self.width, self.height)

    def to(self, device) -> "Cameras":
        return Cameras(self.viewmats.to(device), self.Ks.to(device), self.width, self.height)
