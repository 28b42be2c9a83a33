"""Posed images of one rigid part, the input of fitting: RGB images with the part's mask (1 where the
part is seen) and the cameras that took them, all in the part's own frame (the capture moves each
camera by the inverse of the part's pose, so a part's Gaussians are fitted where they will be posed)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from envs.gaussians.camera import Cameras


@dataclass
class Views:
    images: torch.Tensor  # [V, H, W, 3] float in [0, 1]
    masks: torch.Tensor  # [V, H, W] float in {0, 1}
    cameras: Cameras

    def __post_init__(self):
        v = len(self.cameras)
        if self.images.shape[:1] != (v,) or self.masks.shape != self.images.shape[:3] \
                or self.images.shape[1:3] != (self.cameras.height, self.cameras.width):
            raise ValueError(f"Views: images {tuple(self.images.shape)}, masks {tuple(self.masks.shape)} and "
                             f"{v} cameras of {self.cameras.width}x{self.cameras.height} do not agree")

    def __len__(self) -> int:
        return len(self.cameras)

    def select(self, index) -> "Views":
        return Views(self.images[index], self.masks[index], self.cameras.select(index))

    def to(self, device) -> "Views":
        return Views(self.images.to(device), self.masks.to(device), self.cameras.to(device))

    def split(self, every: int) -> tuple["Views", "Views"]:
        """(training views, held-out views): every `every`-th view is held out."""
        idx = torch.arange(len(self))
        return self.select(idx[idx % every != 0]), self.select(idx[idx % every == 0])
