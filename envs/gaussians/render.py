"""One entry point for rendering Gaussians, whichever back end: ``rasterize(..., backend=...)`` and
``render(cloud, cameras, ...)``. Back ends: ``torch`` (the reference rasterizer, CPU or GPU),
``gsplat`` (CUDA) and ``auto`` (gsplat where it is usable, else torch)."""
from __future__ import annotations

import torch

from envs.gaussians.camera import Cameras
from envs.gaussians.cloud import GaussianCloud
from envs.gaussians.rasterize_gsplat import GsplatUnavailable, load_gsplat, rasterize_gsplat
from envs.gaussians.rasterize_torch import rasterize_reference

BACKENDS = ("torch", "gsplat", "auto")


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown Gaussian render back end {backend!r}; one of {BACKENDS}")
    if backend != "auto":
        return backend
    try:
        load_gsplat()
        return "gsplat"
    except GsplatUnavailable:
        return "torch"


def rasterize(*args, backend: str = "torch", **kwargs):
    """rasterize_reference's arguments -> (rgb [C, H, W, 3], alpha [C, H, W, 1]) from the chosen back end."""
    backend = resolve_backend(backend)
    return (rasterize_gsplat if backend == "gsplat" else rasterize_reference)(*args, **kwargs)


def render(cloud: GaussianCloud, cameras: Cameras, background: torch.Tensor | None = None, backend: str = "torch",
           **kwargs):
    """A cloud seen by cameras -> (rgb [C, H, W, 3], alpha [C, H, W, 1]); background [3] or [C, 3]."""
    dev = cloud.means.device
    if background is not None:
        background = torch.as_tensor(background, dtype=cloud.means.dtype, device=dev)
        background = background.expand(len(cameras), 3)
    return rasterize(cloud.means, cloud.quats, cloud.scales(), cloud.opacities(), cloud.sh,
                     cameras.viewmats.to(dev), cameras.Ks.to(dev), cameras.width, cameras.height,
                     sh_degree=cloud.sh_degree, backgrounds=background, backend=backend, **kwargs)
