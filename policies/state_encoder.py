"""Encoder for vector observations: flatten (and concatenate dict entries) to float features."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn


class StateEncoder(nn.Module):
    """No parameters: state features are the observation itself.

    It still follows the encoder interface (``precompute`` and ``forward``) so
    that SAC treats state and pixel observations the same way.
    """

    def __init__(self, obs_space: gym.Space):
        super().__init__()
        if isinstance(obs_space, gym.spaces.Dict):
            self.keys = sorted(obs_space.spaces)
            for k in self.keys:
                if not isinstance(obs_space[k], gym.spaces.Box):
                    raise TypeError(f"StateEncoder needs Box entries, '{k}' is {obs_space[k]}")
            self.out_dim = int(sum(np.prod(obs_space[k].shape) for k in self.keys))
        elif isinstance(obs_space, gym.spaces.Box):
            self.keys = None
            self.out_dim = int(np.prod(obs_space.shape))
        else:
            raise TypeError(f"StateEncoder supports Box or Dict of Box observations, got {obs_space}")

    def precompute(self, obs) -> None:
        return None

    def forward(self, obs, precomputed=None) -> torch.Tensor:
        if self.keys is None:
            return obs.float().flatten(1)
        return torch.cat([obs[k].float().flatten(1) for k in self.keys], dim=-1)
