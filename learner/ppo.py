"""Proximal Policy Optimisation: the update on one on-policy rollout."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PPOConfig:
    rollout_len: int = 200  # env steps per env per rollout
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    huber_delta: float = 10.0
    epochs: int = 8
    minibatch_size: int = 256
    lr: float = 3e-4
    weight_decay: float = 0.01
    max_grad_norm: float = 0.5
    entropy_coef: float = 0.0
    value_coef: float = 0.5
    normalize_advantages: bool = True
