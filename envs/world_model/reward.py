"""The success classifier: the probability that a frame shows the task done. Its output is the world-model
env's reward and, above ``success_threshold``, the episode's termination."""
from __future__ import annotations

import torch
from torch import nn

from envs.world_model.config import WorldModelConfig


class SuccessClassifier(nn.Module):
    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        layers, c = [], 3
        for w in cfg.classifier_widths:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GroupNorm(min(8, w), w), nn.SiLU()]
            c = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Success logits [N] of float images [N, 3, H, W] in [-1, 1]."""
        return self.head(self.features(images)).squeeze(1)
