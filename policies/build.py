"""Builds the observation encoder a policy config asks for (the policies themselves come from the run's
pipeline builder, pipelines/)."""
from __future__ import annotations

import gymnasium as gym
from torch import nn

from policies.config import EncoderConfig


def build_encoder(encoder_cfg: EncoderConfig, obs_space: gym.Space, seed: int = 0) -> nn.Module:
    if encoder_cfg.type == "state":
        from policies.state_encoder import StateEncoder

        return StateEncoder(obs_space)
    if encoder_cfg.type == "resnet10":
        from policies.vision_encoder import VisionEncoder

        return VisionEncoder(obs_space, encoder_cfg, seed=seed)
    raise ValueError(f"policy.encoder.type must be 'state' or 'resnet10', not '{encoder_cfg.type}'")
