"""OpenVLA-OFT's checkpoint layout: an OpenVLA HF directory plus OFT's separately saved heads.

A published OFT fine-tune (e.g. the LIBERO ones) is a directory with
* the OpenVLA files: config.json (model_type "openvla", the same fields), the safetensors shards
  (LoRA merged), dataset_statistics.json, the tokenizer; optionally ``lora_adapter/`` (peft);
* ``action_head--<step>_checkpoint.pt``: the continuous-action head, a state dict under
  ``model.*``: an MLP-ResNet on the chunk's hidden states, one row per action
  (input action_dim x LM width): ``layer_norm1``, ``fc1``, ``mlp_resnet_blocks.<i>.ffn.{0: LayerNorm,
  1: Linear}`` (ReLU after), ``layer_norm2``, ``fc2`` (to action_dim);
* ``proprio_projector--<step>_checkpoint.pt``: ``fc1`` (proprio dim -> LM width), GELU, ``fc2``.
The .pt files were saved from DDP, so their keys may carry a ``module.`` prefix (dropped on load).

The token policy (parallel.py, RLinf's OFT variant for PPO/GRPO) uses only the OpenVLA part; the
heads load for a deterministic regression evaluation and so that such a directory is read whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from policies.resnet10 import check_tensors
from policies.vla.modeling_openvla import OpenVLAForActionPrediction


class MLPResNetBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return x + self.ffn(x)


class MLPResNet(nn.Module):
    def __init__(self, num_blocks: int, input_dim: int, hidden_dim: int, output_dim: int):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(input_dim)
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.relu = nn.ReLU()
        self.mlp_resnet_blocks = nn.ModuleList(MLPResNetBlock(hidden_dim) for _ in range(num_blocks))
        self.layer_norm2 = nn.LayerNorm(hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.fc1(self.layer_norm1(x)))
        for block in self.mlp_resnet_blocks:
            x = block(x)
        return self.fc2(self.layer_norm2(x))


class L1RegressionActionHead(nn.Module):
    """Chunk hidden states [B, chunk * action_dim, width] -> actions [B, chunk, action_dim] (normalised units)."""

    def __init__(self, width: int, hidden_dim: int, action_dim: int = 7, num_blocks: int = 2):
        super().__init__()
        self.action_dim = action_dim
        self.model = MLPResNet(num_blocks, width * action_dim, hidden_dim, action_dim)

    def forward(self, hidden: Tensor) -> Tensor:
        b, n, w = hidden.shape
        if n % self.action_dim:
            raise ValueError(f"{n} chunk positions are not a whole number of {self.action_dim}-D actions")
        return self.model(hidden.reshape(b, n // self.action_dim, self.action_dim * w))


class ProprioProjector(nn.Module):
    def __init__(self, proprio_dim: int, width: int):
        super().__init__()
        self.fc1, self.act_fn1, self.fc2 = nn.Linear(proprio_dim, width), nn.GELU(), nn.Linear(width, width)

    def forward(self, proprio: Tensor) -> Tensor:
        return self.fc2(self.act_fn1(self.fc1(proprio)))


@dataclass
class OFTCheckpoint:
    model: OpenVLAForActionPrediction
    action_head: L1RegressionActionHead | None
    proprio_projector: ProprioProjector | None


def _head_file(directory: Path, prefix: str) -> Path | None:
    files = sorted(directory.glob(f"{prefix}--*checkpoint.pt"))
    if len(files) > 1:
        raise ValueError(f"{directory} holds {len(files)} {prefix} files ({', '.join(f.name for f in files)}); "
                         "keep the one to load")
    return files[0] if files else None


def _head_state(path: Path) -> dict[str, Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)  # a weights file must not run code
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_oft_checkpoint(directory: str | Path, **from_pretrained_kwargs) -> OFTCheckpoint:
    """The OpenVLA model and, when present, OFT's action head and proprio projector, all names and shapes checked.

    The heads' sizes come from their tensors (fc1 shapes); ValueError lists any tensor that does not fit.
    """
    directory = Path(directory)
    model = OpenVLAForActionPrediction.from_pretrained(directory, **from_pretrained_kwargs)
    width = model.config.text_config.hidden_size
    action_head = proprio = None
    if (path := _head_file(directory, "action_head")) is not None:
        state = _head_state(path)
        if "model.fc1.weight" not in state:
            raise ValueError(f"{path} has no model.fc1.weight: not an OFT L1 regression action head")
        hidden_dim, in_dim = state["model.fc1.weight"].shape
        blocks = len({k.split(".")[2] for k in state if k.startswith("model.mlp_resnet_blocks.")})
        action_head = L1RegressionActionHead(width, hidden_dim, in_dim // width, blocks)
        check_tensors(state, action_head.state_dict(), f"{path} does not match OFT's action head")
        action_head.load_state_dict(state)
    if (path := _head_file(directory, "proprio_projector")) is not None:
        state = _head_state(path)
        if "fc1.weight" not in state:
            raise ValueError(f"{path} has no fc1.weight: not an OFT proprio projector")
        proprio = ProprioProjector(state["fc1.weight"].shape[1], width)
        check_tensors(state, proprio.state_dict(), f"{path} does not match OFT's proprio projector")
        proprio.load_state_dict(state)
    return OFTCheckpoint(model, action_head, proprio)
