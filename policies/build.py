"""Builds the networks a config asks for."""
from __future__ import annotations

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf
from torch import nn


def build_encoder(encoder_cfg: DictConfig, obs_space: gym.Space, seed: int = 0) -> nn.Module:
    if encoder_cfg.type == "state":
        from policies.state_encoder import StateEncoder

        return StateEncoder(obs_space)
    if encoder_cfg.type == "resnet10":
        from policies.vision_encoder import VisionEncoder, VisionEncoderConfig

        fields = OmegaConf.to_container(encoder_cfg, resolve=True)
        fields.pop("type")
        fields["cameras"] = tuple(fields["cameras"])
        return VisionEncoder(obs_space, VisionEncoderConfig(**fields), seed=seed)
    raise ValueError(f"policy.encoder.type must be 'state' or 'resnet10', not '{encoder_cfg.type}'")


def build_policy(cfg: DictConfig, obs_space: gym.Space, action_space: gym.Space, device: str, seed: int = 0):
    """The acting policy for `cfg.algo`, on `device`."""
    if cfg.algo == "sac":
        from policies.sac_agent import SACPolicy

        return SACPolicy(obs_space, action_space, cfg.policy, device, seed=seed)
    from policies.actor_critic import build_actor_critic_policy

    return build_actor_critic_policy(cfg, obs_space, action_space, device, seed=seed)
