"""Network heads shared by the algorithms: MLPs, a tanh-squashed Gaussian actor, a Q ensemble."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import tree


def as_tensors(obs, device: torch.device):
    """An observation (array or dict of arrays) -> tensors on `device`; uint8 images stay uint8 until the encoder."""
    return tree.map(lambda a: torch.as_tensor(np.asarray(a), device=device), obs)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int | None, layer_norm: bool = False,
        activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear -> [LayerNorm] -> activation, per hidden size; then an optional linear output layer."""
    layers: list[nn.Module] = []
    dim = in_dim
    for h in hidden:
        layers.append(nn.Linear(dim, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(activation())
        dim = h
    if out_dim is not None:
        layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


def activation_class(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class TanhGaussianActor(nn.Module):
    """pi(a|s) = tanh(N(mu(s), sigma(s))): actions in [-1, 1] with a tractable log-probability."""

    def __init__(self, feature_dim: int, action_dim: int, hidden: Sequence[int],
                 log_std_min: float = -5.0, log_std_max: float = 2.0, layer_norm: bool = True,
                 activation: str = "tanh"):
        super().__init__()
        self.trunk = mlp(feature_dim, hidden, None, layer_norm=layer_norm, activation=activation_class(activation))
        self.mean = nn.Linear(hidden[-1], action_dim)
        self.log_std = nn.Linear(hidden[-1], action_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, features: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (action, log_prob); log_prob is that of the squashed sample (zeros when deterministic)."""
        h = self.trunk(features)
        mean = self.mean(h)
        if deterministic:
            return torch.tanh(mean), torch.zeros(mean.shape[0], device=mean.device)
        # Bounded log-std (soft clamp) keeps the Gaussian from collapsing or exploding early on.
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(self.log_std(h)) + 1)
        std = log_std.exp()
        u = mean + std * torch.randn_like(mean)
        action = torch.tanh(u)
        # log N(u) - sum log(1 - tanh(u)^2), the latter written in a numerically stable form.
        log_prob = (-0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return action, log_prob


class EnsembleLinear(nn.Module):
    """E independent linear layers applied in one batched matmul: [E, B, in] -> [E, B, out]."""

    def __init__(self, num_heads: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_heads, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(num_heads, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # the same initialisation as nn.Linear, head by head
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with a separate scale and shift per head."""

    def __init__(self, num_heads: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_heads, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num_heads, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


class QEnsemble(nn.Module):
    """E independent Q(s, a) heads evaluated together; returns [E, B].

    The heads share no parameters, but their layers are stacked so that one
    batched matmul runs all of them: an ensemble of 10 costs about as many GPU
    kernel launches as a single head.
    """

    def __init__(self, feature_dim: int, action_dim: int, hidden: Sequence[int], num_heads: int,
                 layer_norm: bool = True, activation: str = "tanh"):
        super().__init__()
        self.num_heads = num_heads
        layers: list[nn.Module] = []
        dim = feature_dim + action_dim
        for h in hidden:
            layers.append(EnsembleLinear(num_heads, dim, h))
            if layer_norm:
                layers.append(EnsembleLayerNorm(num_heads, h))
            layers.append(activation_class(activation)())
            dim = h
        layers.append(EnsembleLinear(num_heads, dim, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([features, action], dim=-1)
        return self.layers(x.unsqueeze(0).expand(self.num_heads, *x.shape)).squeeze(-1)
