"""A scene of rigid parts drawn with Gaussians: each part's cloud lives in its own frame and is posed by
that part's world pose; a static background (in world coordinates) is rendered once per camera and
cached, and the posed parts are composited over it, C = C_parts + (1 - alpha_parts) C_background
(the parts' render is premultiplied by its alpha: rendered over black). Rendering the background
apart assumes no part is ever behind it, true of a table scene seen from above the table."""
from __future__ import annotations

import torch

from envs.gaussians.camera import Cameras
from envs.gaussians.cloud import GaussianCloud
from envs.gaussians.posing import pose_cloud
from envs.gaussians.render import render


class GaussianScene:
    def __init__(self, parts: dict[str, GaussianCloud], background: GaussianCloud | None = None,
                 background_colour=(0.0, 0.0, 0.0), backend: str = "torch", device: str | torch.device = "cpu"):
        if not parts:
            raise ValueError("a GaussianScene needs at least one part")
        self.part_names = list(parts)
        self.backend = backend
        self.device = torch.device(device)
        self.parts = GaussianCloud.cat([parts[n] for n in self.part_names]).to(self.device)
        counts = torch.tensor([len(parts[n]) for n in self.part_names], device=self.device)
        self.part_index = torch.repeat_interleave(torch.arange(len(self.part_names), device=self.device), counts)
        self.background = background.to(self.device) if background is not None else None
        self.background_colour = torch.as_tensor(background_colour, dtype=torch.float32, device=self.device)
        self._background_cache: dict[bytes, torch.Tensor] = {}

    def background_image(self, camera: Cameras) -> torch.Tensor:
        """The background seen by one camera [H, W, 3], rendered on first use."""
        key = (camera.viewmats.cpu().numpy().tobytes() + camera.Ks.cpu().numpy().tobytes()
               + bytes(f"{camera.width}x{camera.height}", "ascii"))
        if key not in self._background_cache:
            if self.background is None:
                image = self.background_colour.expand(camera.height, camera.width, 3).clone()
            else:
                with torch.no_grad():
                    image = render(self.background, camera.to(self.device), background=self.background_colour,
                                   backend=self.backend)[0][0]
            self._background_cache[key] = image
        return self._background_cache[key]

    @torch.no_grad()
    def render(self, positions: torch.Tensor, quats: torch.Tensor, camera: Cameras) -> torch.Tensor:
        """Images [B, H, W, 3] in [0, 1] of B scenes seen by one camera; positions [B, P, 3] and quats
        [B, P, 4] (w x y z) are the world poses of the P parts, in the order of ``part_names``."""
        if positions.shape[1] != len(self.part_names) or quats.shape[1] != len(self.part_names):
            raise ValueError(f"poses for {positions.shape[1]} parts given, the scene has {len(self.part_names)}: "
                             f"{self.part_names}")
        camera = camera.to(self.device)
        background = self.background_image(camera)
        black = torch.zeros(3, device=self.device)
        images = []
        for b in range(positions.shape[0]):
            posed = pose_cloud(self.parts, positions[b].to(self.device)[self.part_index],
                               quats[b].to(self.device)[self.part_index])
            rgb, alpha = render(posed, camera, background=black, backend=self.backend)
            images.append(rgb[0] + (1 - alpha[0]) * background)
        return torch.stack(images).clamp(0, 1)
