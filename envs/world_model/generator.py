"""The action-conditioned generator of the next frames: flow matching over latent grids.

Given the latents of ``memory_frames`` frames and a chunk of actions with the end-effector poses they lead to,
it makes the latents of the ``chunk`` next frames, frame k being the one after action k. Flow matching with
the straight path x_t = t * noise + (1 - t) * x (t = 1 noise, t = 0 data) and the velocity target
u = noise - x, the convention of the project's flow-matching VLAs (policies/vla/flow_sampling.py);
``sample`` integrates dx/dt = v from t = 1 to 0 in ``flow_steps`` Euler steps.

The network is a transformer over all frames' patch tokens at once (memory and future, so attention reaches
across time and space): each latent grid is cut into patch x patch cells, each cell a token; a learned
embedding of the frame's place in time and of the cell's place in the grid is added, and to the future
frames' tokens the embedding of their frame's (action, pose) and of the flow time t. Only the future tokens'
outputs are read, as velocities.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from envs.world_model.config import WorldModelConfig


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features [B, dim] of flow times t [B] in [0, 1]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class LatentFlowGenerator(nn.Module):
    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        self.cfg = cfg
        p, c, h = cfg.patch, cfg.latent_channels, cfg.hidden
        self.cells = (cfg.latent_size // p) ** 2
        self.frames = cfg.memory_frames + cfg.chunk
        self.patch_in = nn.Linear(c * p * p, h)
        self.frame_position = nn.Parameter(torch.zeros(self.frames, 1, h))
        self.cell_position = nn.Parameter(torch.zeros(1, self.cells, h))
        nn.init.normal_(self.frame_position, std=0.02)
        nn.init.normal_(self.cell_position, std=0.02)
        self.condition = nn.Sequential(nn.Linear(cfg.action_dim + cfg.pose_dim, h), nn.SiLU(), nn.Linear(h, h))
        self.time = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h))
        layer = nn.TransformerEncoderLayer(h, cfg.heads, 4 * h, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(h)
        self.patch_out = nn.Linear(h, c * p * p)
        nn.init.zeros_(self.patch_out.weight)  # starts predicting zero velocity
        nn.init.zeros_(self.patch_out.bias)

    def _tokens(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, F, C, s, s] -> [B, F, cells, C * p * p]"""
        b, f, c, s, _ = latents.shape
        p = self.cfg.patch
        x = latents.reshape(b, f, c, s // p, p, s // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(b, f, (s // p) ** 2, c * p * p)

    def _grids(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of _tokens."""
        b, f = tokens.shape[:2]
        p, c, s = self.cfg.patch, self.cfg.latent_channels, self.cfg.latent_size
        x = tokens.reshape(b, f, s // p, s // p, c, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, f, c, s, s)

    def forward(self, noisy: torch.Tensor, memory: torch.Tensor, condition: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        """Velocity [B, chunk, C, s, s] at the noisy future latents `noisy` [B, chunk, C, s, s], given the memory
        latents [B, memory_frames, C, s, s], the (action, normalised pose) of each future frame
        [B, chunk, action_dim + pose_dim] and the flow time t [B]."""
        cfg = self.cfg
        b = noisy.shape[0]
        x = self.patch_in(self._tokens(torch.cat([memory, noisy], dim=1)))  # [B, F, cells, H]
        x = x + self.frame_position + self.cell_position
        future = self.condition(condition) + self.time(time_embedding(t, cfg.hidden))[:, None]  # [B, chunk, H]
        x = torch.cat([x[:, :cfg.memory_frames], x[:, cfg.memory_frames:] + future[:, :, None]], dim=1)
        x = self.transformer(x.reshape(b, self.frames * self.cells, cfg.hidden))
        x = self.norm(x).reshape(b, self.frames, self.cells, cfg.hidden)[:, cfg.memory_frames:]
        return self._grids(self.patch_out(x))

    def loss(self, future: torch.Tensor, memory: torch.Tensor, condition: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Flow-matching loss of the true future latents [B, chunk, C, s, s]: t uniform in (0, 1)."""
        b = future.shape[0]
        t = torch.rand(b, device=future.device, generator=generator)
        noise = torch.randn(future.shape, device=future.device, generator=generator)
        tt = t.view(b, 1, 1, 1, 1)
        velocity = self(tt * noise + (1 - tt) * future, memory, condition, t)
        return (velocity - (noise - future)).pow(2).mean()

    @torch.no_grad()
    def sample(self, memory: torch.Tensor, condition: torch.Tensor, steps: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Future latents [B, chunk, C, s, s]: Euler integration from Gaussian noise (t = 1) to t = 0."""
        cfg = self.cfg
        steps = int(steps or cfg.flow_steps)
        b, s = memory.shape[0], cfg.latent_size
        x = torch.randn((b, cfg.chunk, cfg.latent_channels, s, s), device=memory.device, generator=generator)
        dt = 1.0 / steps
        for i in range(steps):
            t = torch.full((b,), 1.0 - i * dt, device=memory.device)
            x = x - dt * self(x, memory, condition, t)
        return x
