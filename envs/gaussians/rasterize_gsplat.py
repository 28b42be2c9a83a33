"""The gsplat back end (CUDA): ``gsplat.rasterization`` with the reference rasterizer's arguments.

gsplat ships CUDA sources only and compiles them with nvcc the first time it is imported (minutes; the
build lands in torch's extension cache). It is imported here, lazily, only when this back end is used,
and every way that can fail (not installed, no GPU, no nvcc, a failed build) ends in one error that
names the problem. It is not a dependency of the CPU install: scripts/gs_gpu.sh installs and builds it
on the GPU machine.
"""
from __future__ import annotations

import shutil

import torch

_RASTERIZATION = None


class GsplatUnavailable(RuntimeError):
    """gsplat cannot run here (not installed, no CUDA device, or its CUDA build failed)."""


def load_gsplat():
    """gsplat.rasterization, importing (and so building) gsplat on first use."""
    global _RASTERIZATION
    if _RASTERIZATION is not None:
        return _RASTERIZATION
    if not torch.cuda.is_available():
        raise GsplatUnavailable("the gsplat back end needs a CUDA GPU and torch with CUDA; this torch sees none "
                                "(use backend='torch', the reference rasterizer, on the CPU)")
    try:
        import gsplat
    except ModuleNotFoundError as e:
        raise GsplatUnavailable("gsplat is not installed: `pip install gsplat` (the `gaussians_gpu` extra; "
                                "scripts/gs_gpu.sh installs and builds it)") from e
    try:
        from gsplat import rasterization
        from gsplat.cuda._backend import _C  # the compiled extension; importing it runs the JIT build
    except Exception as e:  # noqa: BLE001  (any build failure: name it)
        nvcc = shutil.which("nvcc")
        hint = ("nvcc is not on PATH: install the CUDA toolkit that matches torch "
                f"(torch.version.cuda = {torch.version.cuda}) or set CUDA_HOME" if nvcc is None
                else f"nvcc is {nvcc}; check that its CUDA version matches torch's ({torch.version.cuda})")
        raise GsplatUnavailable(f"gsplat {getattr(gsplat, '__version__', '?')} failed to build or load its CUDA "
                                f"extension ({type(e).__name__}: {e}); {hint}") from e
    if _C is None:
        raise GsplatUnavailable("gsplat imported but its CUDA extension is missing (the JIT build did not run or "
                                "failed silently); run `python -c 'import gsplat.cuda._backend'` to see the build log")
    _RASTERIZATION = rasterization
    return rasterization


def rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=0.01,
                     far_plane=1e10, sh_degree=None, backgrounds=None, eps2d=0.3, tile_size=16):
    """Same arguments and results as rasterize_torch.rasterize_reference, rendered by gsplat."""
    rasterization = load_gsplat()
    rgb, alpha, _ = rasterization(means, quats, scales, opacities, colors, viewmats, Ks, int(width), int(height),
                                  near_plane=near_plane, far_plane=far_plane, sh_degree=sh_degree,
                                  backgrounds=backgrounds, eps2d=eps2d, tile_size=tile_size, packed=False,
                                  rasterize_mode="classic", render_mode="RGB")
    return rgb, alpha
