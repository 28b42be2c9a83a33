"""ResNet-10: the small image backbone of SERL / HIL-SERL, in plain PyTorch.

Architecture (ResNet v1 with basic blocks, one block per stage, GroupNorm):

    stem:    conv 7x7 stride 2 (64) -> GroupNorm(4) -> ReLU -> max-pool 3x3 stride 2
    stage 0: basic block  64 -> 64,  stride 1
    stage 1: basic block  64 -> 128, stride 2 (1x1 projection shortcut)
    stage 2: basic block 128 -> 256, stride 2 (1x1 projection shortcut)
    stage 3: basic block 256 -> 512, stride 2 (1x1 projection shortcut)

4,905,792 parameters. A 128x128 image becomes a [512, 4, 4] feature map.

Two details make the published pretrained weights (trained in JAX/flax) give the
same features here:

* Padding. Flax pads convolutions and pooling "SAME": for a stride-2 window on
  an even-sized input it pads 0 before and 1 after, while PyTorch's symmetric
  ``padding=1`` pads 1 on both sides and so samples different pixels. The
  stride-2 3x3 convolutions and the max-pool therefore pad explicitly
  (``same_padding``). The 7x7 stem is the exception: SERL gives it an explicit
  symmetric padding of 3.
* Tensor names. The PyTorch port published as the Hugging Face model
  ``helper2424/resnet10`` (used by LeRobot's HIL-SERL) names its tensors
  ``embedder.0.weight``, ``embedder.1.group_norm.weight``,
  ``encoder.stages.<i>.conv1.conv.weight``, ``encoder.stages.<i>.norm1.group_norm.bias``,
  ``encoder.stages.<i>.shortcut.0.conv.weight``, ... The small wrapper modules
  below (a ``conv`` inside each padded convolution, a ``group_norm`` inside each
  norm) exist only so that a state dict saved from that model loads here as is.
  Exports made before April 2025 held the norms one level up (``norm1.weight``
  rather than ``norm1.group_norm.weight``); ``load_resnet10_weights`` accepts both.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ImageNet statistics the pretrained weights expect: images are scaled to [0, 1]
# and then normalised per channel with these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESNET10_STAGE_CHANNELS = (64, 128, 256, 512)
RESNET10_NUM_PARAMETERS = 4_905_792


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Padding (before, after) along one axis that flax/TensorFlow "SAME" uses.

    "SAME" keeps ceil(size / stride) outputs and puts the odd pixel of padding,
    if any, after the input rather than before it.
    """
    out = math.ceil(size / stride)
    total = max(0, (out - 1) * stride + kernel - size)
    return total // 2, total - total // 2


class SamePaddedConv2d(nn.Module):
    """A bias-free convolution with flax "SAME" padding (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        # With stride 1 and an odd kernel "SAME" is symmetric, so the convolution
        # pads by itself and we skip a separate padding pass over the tensor.
        self.symmetric = stride == 1 and kernel_size % 2 == 1
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride,
            padding=kernel_size // 2 if self.symmetric else 0, bias=False,
        )

    def forward(self, x: Tensor) -> Tensor:
        if not self.symmetric:
            top, bottom = same_padding(x.shape[-2], self.kernel_size, self.stride)
            left, right = same_padding(x.shape[-1], self.kernel_size, self.stride)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return self.conv(x)


class SameMaxPool2d(nn.Module):
    """Max-pooling with flax "SAME" padding; padded cells never win the max."""

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size, self.stride)
        left, right = same_padding(x.shape[-1], self.kernel_size, self.stride)
        x = F.pad(x, (left, right, top, bottom), value=-math.inf)
        return F.max_pool2d(x, self.kernel_size, self.stride)


class GroupNormLayer(nn.Module):
    """GroupNorm, held as ``.group_norm`` so that tensor names match the public checkpoint."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.group_norm = nn.GroupNorm(num_groups, num_channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.group_norm(x)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet v1: ReLU after the sum)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm_groups: int):
        super().__init__()
        self.conv1 = SamePaddedConv2d(in_channels, out_channels, 3, stride)
        self.norm1 = GroupNormLayer(norm_groups, out_channels)
        self.conv2 = SamePaddedConv2d(out_channels, out_channels, 3, 1)
        self.norm2 = GroupNormLayer(norm_groups, out_channels)
        # The identity cannot be added when the block changes the channel count
        # (and, with it, the resolution): a 1x1 projection makes the shapes agree.
        self.shortcut: nn.Sequential | None = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Sequential(
                SamePaddedConv2d(in_channels, out_channels, 1, stride),
                GroupNormLayer(norm_groups, out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + residual)


class ResidualStages(nn.Module):
    """The four stages of basic blocks; the first keeps the resolution, the rest halve it."""

    def __init__(self, in_channels: int, stage_channels: tuple[int, ...], norm_groups: int):
        super().__init__()
        self.stages = nn.ModuleList()
        for i, out_channels in enumerate(stage_channels):
            self.stages.append(BasicBlock(in_channels, out_channels, 1 if i == 0 else 2, norm_groups))
            in_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


class ResNet10(nn.Module):
    """ResNet-10 backbone: normalised images [B, 3, H, W] -> feature map [B, 512, h, w].

    Input: float images scaled to [0, 1] and normalised with ``IMAGENET_MEAN`` /
    ``IMAGENET_STD``. Output: the last stage's map, before any pooling (the
    policy pools it with learned spatial kernels).
    """

    def __init__(self, in_channels: int = 3, stem_channels: int = 64,
                 stage_channels: tuple[int, ...] = RESNET10_STAGE_CHANNELS, norm_groups: int = 4):
        super().__init__()
        self.out_channels = stage_channels[-1]
        self.embedder = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False),
            GroupNormLayer(norm_groups, stem_channels),
            nn.ReLU(),
            SameMaxPool2d(3, 2),
        )
        self.encoder = ResidualStages(stem_channels, tuple(stage_channels), norm_groups)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal convolutions (as SERL), unit-scale zero-shift norms."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> Tensor:
        return self.encoder(self.embedder(images))

    @staticmethod
    def output_size(height: int, width: int) -> tuple[int, int]:
        """Spatial size (h, w) of the feature map for an input of height x width."""
        def one_axis(n: int) -> int:
            n = (n + 2 * 3 - 7) // 2 + 1  # stem convolution, explicit padding 3
            n = math.ceil(n / 2)          # "SAME" max-pool, stride 2
            for _ in range(3):            # stages 1-3 halve the resolution ("SAME")
                n = math.ceil(n / 2)
            return n
        return one_axis(height), one_axis(width)


# --------------------------------------------------------------------------- weights files

_TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"ResNet-10 weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path), device="cpu")
    if suffix in _TORCH_SUFFIXES:
        # weights_only: a weights file must not be able to run code when loaded.
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
        ):
            raise ValueError(f"{path} does not hold a state dict (a mapping of tensor names to tensors)")
        return state
    raise ValueError(
        f"unknown weights file type {suffix!r} for {path}: use .safetensors or one of {_TORCH_SUFFIXES}"
    )


def _accept_older_norm_names(state: dict[str, Tensor], expected: set[str]) -> dict[str, Tensor]:
    """Rename ``<norm>.weight`` to ``<norm>.group_norm.weight`` where only the latter is a model name."""
    renamed = {}
    for name, tensor in state.items():
        if name not in expected and "." in name:
            module, leaf = name.rsplit(".", 1)
            newer = f"{module}.group_norm.{leaf}"
            if newer in expected:
                name = newer
        renamed[name] = tensor
    return renamed


def check_tensors(state: dict[str, Tensor], expected: dict[str, Tensor], what: str) -> None:
    """Raise ValueError, headed `what`, listing every tensor of `expected` missing from `state`, every
    unexpected one and every one of another shape; return if the names and shapes match exactly."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k}: file {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected) if state[k].shape != expected[k].shape
    )
    if missing or unexpected or misshaped:
        problems = [f"{what}:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                problems.append(f"  {len(items)} {title}: " + ", ".join(items))
        raise ValueError("\n".join(problems))


def load_resnet10_weights(model: ResNet10, path: str | Path, prefix: str = "") -> None:
    """Copy the tensors of a local weights file into ``model``, checking every name and shape.

    ``path``: a ``.safetensors`` file or a torch ``.pt``/``.pth``/``.bin`` state dict
    with the public ResNet-10 tensor names (see the module docstring).
    ``prefix``: when the file holds a bigger model, only the tensors whose names
    start with it are read, with the prefix removed (e.g. ``"encoder.backbone."``).
    Raises ``ValueError`` that lists every missing, unexpected and mis-shaped tensor.
    """
    path = Path(path)
    state = _read_state_dict(path)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    expected = model.state_dict()
    state = _accept_older_norm_names(state, set(expected))
    check_tensors(state, expected, f"{path} does not match ResNet-10 (prefix {prefix!r})")
    with torch.no_grad():
        for name, tensor in expected.items():
            tensor.copy_(state[name])  # copy_ keeps the model's device and dtype


def save_resnet10_weights(model: ResNet10, path: str | Path) -> None:
    """Write ``model``'s tensors to ``path`` (.safetensors, or a torch state dict for .pt/.pth/.bin)."""
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(state, str(path))
    elif suffix in _TORCH_SUFFIXES:
        torch.save(state, path)
    else:
        raise ValueError(
            f"unknown weights file type {suffix!r} for {path}: use .safetensors or one of {_TORCH_SUFFIXES}"
        )
