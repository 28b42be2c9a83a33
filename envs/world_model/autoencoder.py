"""The frame autoencoder: RGB frames <-> a small latent grid, in which the generator works.

A deterministic convolutional autoencoder (no KL term): the generator only needs a compact, smooth space, and
a frame comes back from its latent with a few per cent of error at 64 px. ``latent_shift`` / ``latent_scale``
are set after training (``set_latent_statistics``) so that the latents the generator sees have mean 0 and
standard deviation 1, the scale flow matching's Gaussian noise assumes.
"""
from __future__ import annotations

import torch
from torch import nn

from envs.world_model.config import WorldModelConfig


def frames_to_tensor(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    return frames.float().div(127.5).sub(1.0).movedim(-1, -3)


def tensor_to_frames(images: torch.Tensor) -> torch.Tensor:
    """float [..., 3, H, W] in [-1, 1] -> uint8 [..., H, W, 3] (rounded, clipped)."""
    return images.movedim(-3, -1).add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(min(8, c_out), c_out), nn.SiLU())


class FrameAutoencoder(nn.Module):
    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        widths = list(cfg.ae_widths)
        down, c = [], 3
        for w in widths:
            down += [nn.Conv2d(c, w, 4, stride=2, padding=1), nn.SiLU(), _block(w, w)]
            c = w
        self.encoder = nn.Sequential(*down, nn.Conv2d(c, cfg.latent_channels, 1))
        up, c = [nn.Conv2d(cfg.latent_channels, widths[-1], 3, padding=1), nn.SiLU()], widths[-1]
        for w in reversed(widths):
            up += [_block(c, w), nn.ConvTranspose2d(w, w, 4, stride=2, padding=1), nn.SiLU()]
            c = w
        self.decoder = nn.Sequential(*up, nn.Conv2d(c, 3, 3, padding=1))
        self.register_buffer("latent_shift", torch.zeros(()))
        self.register_buffer("latent_scale", torch.ones(()))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """float images [N, 3, H, W] in [-1, 1] -> normalised latents [N, C, h, w]."""
        return (self.encoder(images) - self.latent_shift) / self.latent_scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """normalised latents [N, C, h, w] -> float images [N, 3, H, W] (in [-1, 1] once trained)."""
        return self.decoder(latents * self.latent_scale + self.latent_shift)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))

    @torch.no_grad()
    def set_latent_statistics(self, images: torch.Tensor, batch: int = 256) -> None:
        """Shift and scale from the raw latents of `images` (float [N, 3, H, W]): mean 0, std 1 afterwards."""
        raw = torch.cat([self.encoder(images[i:i + batch]) for i in range(0, len(images), batch)])
        self.latent_shift.fill_(raw.mean())
        self.latent_scale.fill_(raw.std().clamp_min(1e-6))
