"""Image losses and metrics of 3DGS fitting: L1, SSIM (Wang et al. 2004: 11 x 11 Gaussian window of std
1.5, C1 = 0.01^2, C2 = 0.03^2 for images in [0, 1]), the 3DGS loss (1 - l) L1 + l (1 - SSIM) with l = 0.2,
and PSNR."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
DSSIM_WEIGHT = 0.2


def _window(channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - SSIM_WINDOW // 2
    g = torch.exp(-x ** 2 / (2 * SSIM_SIGMA ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of images [B, H, W, C] in [0, 1] (zero-padded at the borders, as the 3DGS code does)."""
    a, b = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    ch = a.shape[1]
    w = _window(ch, a.device, a.dtype)

    def blur(x):
        return F.conv2d(x, w, padding=SSIM_WINDOW // 2, groups=ch)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean()


def splat_loss(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (1 - DSSIM_WEIGHT) * (render - target).abs().mean() + DSSIM_WEIGHT * (1 - ssim(render, target))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)
