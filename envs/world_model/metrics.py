"""Image quality of generated frames: PSNR and SSIM (Wang et al. 2004: an 11-tap Gaussian window of
sigma 1.5, constants (0.01 L)^2 and (0.03 L)^2), on uint8 frames seen as [0, 1] images."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [0, 1]."""
    return frames.float().div(255.0).permute(0, 3, 1, 2)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR in dB [N] of uint8 frames [N, H, W, 3] (a perfect frame is capped at 100 dB)."""
    mse = (_unit(pred) - _unit(target)).pow(2).flatten(1).mean(1)
    return (10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))).clamp_max(100.0)


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-frame SSIM [N] of uint8 frames [N, H, W, 3], averaged over the channels and the valid window
    positions (the window shrinks to the frame for frames smaller than it)."""
    x, y = _unit(pred), _unit(target)
    size = min(window, x.shape[-1], x.shape[-2])
    coords = torch.arange(size, dtype=torch.float32, device=x.device) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, kernel, groups=3)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)
