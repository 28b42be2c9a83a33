"""Fitting a part's Gaussians to its posed images (the "fit" of Real2Sim), as the 3DGS paper trains:
Adam on the unconstrained parameters (means, log-scales, quaternions, opacity logits, SH), the loss
(1 - 0.2) L1 + 0.2 (1 - SSIM) on the part's image over a black background, plus an L1 loss between the
rendered alpha and the part's mask (the part's silhouette, which the simulator gives exactly and keeps
Gaussians from floating outside the part).

Densification, simplified from 3DGS: every ``densify_every`` steps (until ``densify_until``) the
``densify_fraction`` of Gaussians with the largest mean image-space gradient are split in two (each
copy moved by a sample of its own Gaussian, both scales divided by 1.6), and Gaussians whose opacity is
under ``prune_opacity`` are removed; Adam's moments restart after each change (simpler than carrying
them over, at the cost of a few noisier steps).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from envs.gaussians.cloud import GaussianCloud
from envs.gaussians.losses import psnr, splat_loss
from envs.gaussians.rasterize_torch import quat_to_rotmat
from envs.gaussians.render import render
from envs.gaussians.views import Views


@dataclass
class FitConfig:
    steps: int = 3000
    views_per_step: int = 1
    lr_means: float = 1.6e-4  # times the part's extent, as 3DGS scales it
    lr_log_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 5e-2
    lr_sh_dc: float = 2.5e-3
    lr_sh_rest: float = 1.25e-4
    mask_weight: float = 0.1
    densify_every: int = 100
    densify_from: int = 200
    densify_until: int = 2000
    densify_fraction: float = 0.05
    max_gaussians: int = 30_000
    prune_opacity: float = 0.005
    backend: str = "torch"


PARAMS = ("means", "log_scales", "quats", "opacity_logits", "sh")


def _optimizer(cloud: GaussianCloud, cfg: FitConfig, extent: float) -> torch.optim.Adam:
    groups = [{"params": [cloud.means], "lr": cfg.lr_means * extent}, {"params": [cloud.log_scales], "lr": cfg.lr_log_scales},
              {"params": [cloud.quats], "lr": cfg.lr_quats}, {"params": [cloud.opacity_logits], "lr": cfg.lr_opacity},
              {"params": [cloud.sh], "lr": cfg.lr_sh_dc}]
    return torch.optim.Adam(groups, eps=1e-15)


def _trainable(cloud: GaussianCloud) -> GaussianCloud:
    return cloud.map(lambda t: t.detach().clone().requires_grad_(True))


def _sh_lr_mask(cloud: GaussianCloud, cfg: FitConfig) -> torch.Tensor:
    """Per-coefficient scale of the SH gradient, so that the higher bands learn at lr_sh_rest."""
    scale = torch.full((1, cloud.sh.shape[1], 1), cfg.lr_sh_rest / cfg.lr_sh_dc, device=cloud.sh.device)
    scale[:, 0] = 1.0
    return scale


def _densify(cloud: GaussianCloud, grad_accum: torch.Tensor, count: torch.Tensor, cfg: FitConfig,
             generator: torch.Generator) -> GaussianCloud:
    cloud = cloud.detach()
    keep = cloud.opacities() >= cfg.prune_opacity
    mean_grad = torch.where(count > 0, grad_accum / count.clamp_min(1), torch.zeros_like(grad_accum))
    k = min(int(cfg.densify_fraction * len(cloud)), max(cfg.max_gaussians - len(cloud), 0))
    split = torch.zeros_like(keep)
    if k > 0:
        split[torch.topk(torch.where(keep, mean_grad, torch.full_like(mean_grad, -1.0)), k).indices] = True
        split &= mean_grad > 0
    parents = cloud.select(split)
    offsets = torch.randn(len(parents), 3, generator=generator, dtype=cloud.means.dtype).to(cloud.means.device)
    offsets = (quat_to_rotmat(parents.quats) @ (offsets * parents.scales())[..., None])[..., 0]
    shrink = torch.log(torch.tensor(1.6, dtype=cloud.means.dtype, device=cloud.means.device))
    children = GaussianCloud(parents.means + offsets, parents.quats, parents.log_scales - shrink,
                             parents.opacity_logits, parents.sh)
    stay = cloud.select(keep & ~split)
    moved = GaussianCloud(parents.means - offsets, parents.quats, parents.log_scales - shrink,
                          parents.opacity_logits, parents.sh)
    return GaussianCloud.cat([stay, moved, children])


def fit(init: GaussianCloud, views: Views, cfg: FitConfig | None = None, seed: int = 0,
        progress=None) -> tuple[GaussianCloud, dict]:
    """Fit `init` to `views` -> (fitted cloud, history: per-step loss, final Gaussian count), on the device
    `init` is on (the views are moved there)."""
    cfg = cfg or FitConfig()
    dev = init.means.device
    views = views.to(dev)
    generator = torch.Generator().manual_seed(int(seed))  # on the CPU: the same draws on any device
    black = torch.zeros(3, device=dev)
    targets = views.images * views.masks[..., None]
    extent = float((init.means - init.means.mean(0)).norm(dim=1).max().clamp_min(1e-3))
    cloud = _trainable(init)
    opt = _optimizer(cloud, cfg, extent)
    sh_scale = _sh_lr_mask(cloud, cfg)
    grad_accum = torch.zeros(len(cloud), device=dev)
    count = torch.zeros(len(cloud), device=dev)
    losses = []
    for step in range(cfg.steps):
        pick = torch.randint(len(views), (cfg.views_per_step,), generator=generator).to(dev)
        batch = views.cameras.select(pick)
        rgb, alpha = render(cloud, batch, background=black, backend=cfg.backend)
        loss = splat_loss(rgb, targets[pick]) + cfg.mask_weight * (alpha[..., 0] - views.masks[pick]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        cloud.sh.grad *= sh_scale
        with torch.no_grad():
            # the densification signal: how hard each Gaussian's mean is pulled, scaled by the image size
            g = cloud.means.grad.norm(dim=1) * extent * views.cameras.width
            grad_accum += g
            count += (g > 0).float()
        opt.step()
        losses.append(float(loss.detach()))
        if (cfg.densify_from <= step < cfg.densify_until and step % cfg.densify_every == 0 and step > 0):
            cloud = _trainable(_densify(cloud, grad_accum, count, cfg, generator))
            opt = _optimizer(cloud, cfg, extent)
            grad_accum = torch.zeros(len(cloud), device=dev)
            count = torch.zeros(len(cloud), device=dev)
        if progress is not None:
            progress(step, losses[-1], len(cloud))
    fitted = cloud.detach()
    keep = fitted.opacities() >= cfg.prune_opacity
    return fitted.select(keep), {"loss": losses, "num_gaussians": int(keep.sum())}


@torch.no_grad()
def evaluate(cloud: GaussianCloud, views: Views, backend: str = "torch") -> float:
    """PSNR (dB) of the cloud's renders against the views' part images (black background)."""
    views = views.to(cloud.means.device)
    rgb, _ = render(cloud, views.cameras, background=torch.zeros(3, device=cloud.means.device), backend=backend)
    return psnr(rgb.clamp(0, 1), views.images * views.masks[..., None])
