"""3D Gaussian splatting: Gaussian clouds (cloud.py), the standard 3DGS .ply format (ply.py), spherical
harmonics (sh.py), pinhole cameras (camera.py), rasterizers with one signature (rasterize_torch.py, the
pure-PyTorch reference; rasterize_gsplat.py, CUDA) behind render.py, rigid posing (posing.py), fitting to
posed images (views.py, losses.py, fit.py) and a scene's per-part assets (assets.py). Pure PyTorch and
numpy: nothing here imports a simulator (envs/maniskill/gs_capture.py captures from ManiSkill)."""
from __future__ import annotations

from envs.gaussians.camera import Cameras, intrinsics, look_at
from envs.gaussians.cloud import GaussianCloud
from envs.gaussians.ply import read_ply, write_ply
from envs.gaussians.render import rasterize, render

__all__ = ["Cameras", "GaussianCloud", "intrinsics", "look_at", "rasterize", "read_ply", "render", "write_ply"]
