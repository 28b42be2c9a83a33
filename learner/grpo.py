"""Group Relative Policy Optimisation: critic-free advantages from groups of rollouts."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GRPOConfig:
    group_size: int = 8  # each reset state is repeated this many times
    clip: float = 0.2
    epochs: int = 4
    minibatch_size: int = 256
    lr: float = 3e-4
    max_grad_norm: float = 0.5
    entropy_coef: float = 0.0
    filter_uniform_groups: bool = True  # drop groups where all failed or all succeeded
