"""OpenVLAForActionPrediction: vision backbone -> projector -> Llama causal LM, plus a value head.

Parameter names are those of OpenVLA-7B's HF checkpoint (``vision_backbone.featurizer.*``,
``vision_backbone.fused_featurizer.*``, ``projector.fc1/fc2/fc3``, ``language_model.model.*``,
``language_model.lm_head``), so ``from_pretrained`` loads a published directory (config.json +
model-0000x-of-0000y.safetensors + index). ``value_head.*`` is this project's: absent from
published checkpoints, transformers initialises it on load (``_init_weights``).

The LM is transformers' own ``LlamaForCausalLM`` built from ``config.text_config``; OpenVLA's
remote code (written for transformers 4.40) is not used.

Input sequence: [BOS, image patches, prompt tokens after BOS], left-padded across the batch (pad
rows are zero embeddings with attention mask 0), position ids counted over the unpadded tokens,
so every row's first action token is predicted from the last column.
"""
from __future__ import annotations

import inspect
from typing import ClassVar

import torch
from torch import Tensor, nn
from transformers import LlamaForCausalLM, PreTrainedModel

from policies.vla.action_tokenizer import ActionStats, ActionTokenizer
from policies.vla.configuration_openvla import OpenVLAConfig
from policies.vla.value_head import ValueHead
from policies.vla.vision import PrismaticVisionBackbone, Projector, VisionTransformer


def left_pad(rows: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Embedding rows [L_i, H] -> [B, L, H] left-padded with zeros, and the attention mask [B, L] (int64)."""
    length = max(r.shape[0] for r in rows)
    embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[1])
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=rows[0].device)
    for i, r in enumerate(rows):
        embeds[i, length - r.shape[0]:] = r
        mask[i, length - r.shape[0]:] = 1
    return embeds, mask


# transformers 5.24 names the decoder's cache argument and output `cache` (past_key_values still works there but
# warns); older releases know only past_key_values. The argument's name is read from the decoder's signature.
_CACHE_ARGUMENT: dict[type, str] = {}


def decoder_forward(decoder: nn.Module, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor,
                    cache=None, use_cache: bool = False):
    kind = type(decoder)
    if kind not in _CACHE_ARGUMENT:
        _CACHE_ARGUMENT[kind] = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
    kwargs = {_CACHE_ARGUMENT[kind]: cache} if cache is not None else {}
    return decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                   use_cache=use_cache, **kwargs)


def decoder_cache(output):
    """The KV cache of a decoder output, under either name."""
    return output["cache"] if "cache" in output else output["past_key_values"]


def position_ids_of(mask: Tensor) -> Tensor:
    """Positions counted over the attended tokens (0 at each row's first real token; pads get 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class ActionDecoding:
    """What autoregressive.py and parallel.py call on a VLA model, over its `language_model` (a transformers causal
    LM) and its `value_head`: the decoder's hidden states and cache, the LM's logits, the value."""

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def hidden_states(self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor,
                      cache=None, use_cache: bool = False):
        """The LM's decoder output (after its final norm) and its KV cache (``past_key_values``)."""
        return decoder_forward(self.language_model.model, inputs_embeds, attention_mask, position_ids, cache, use_cache)

    def lm_logits(self, hidden: Tensor) -> Tensor:
        return self.language_model.lm_head(hidden)

    def value(self, hidden: Tensor) -> Tensor:
        return self.value_head(hidden)


class OpenVLAForActionPrediction(ActionDecoding, PreTrainedModel):
    config_class = OpenVLAConfig
    base_model_prefix = "openvla"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True
    _no_split_modules: ClassVar[list[str]] = ["LlamaDecoderLayer", "Block"]
    # In published checkpoints, not used by the forward (vision.py): SigLIP's pooling head.
    _keys_to_ignore_on_load_unexpected: ClassVar[list[str]] = [r"attn_pool\.", r"\.head\."]

    def __init__(self, config: OpenVLAConfig):
        super().__init__(config)
        self.vision_backbone = PrismaticVisionBackbone(config.vit_specs())
        hidden = config.text_config.hidden_size
        self.projector = Projector(config.arch_specifier, self.vision_backbone.embed_dim, hidden)
        self.language_model = LlamaForCausalLM(config.text_config)
        self.value_head = ValueHead(hidden, config.value_head_hidden)
        self.action_tokenizer = ActionTokenizer(config.text_vocab_size, config.n_action_bins)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if any(module is m for m in self.language_model.modules()):
            self.language_model._init_weights(module)
        elif isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, VisionTransformer):
            nn.init.normal_(module.pos_embed, std=0.02)
            for p in (module.cls_token, module.reg_token):
                if p is not None:
                    nn.init.normal_(p, std=1e-6)
        if isinstance(module, ValueHead):
            nn.init.zeros_(module.mlp[-1].weight)
            nn.init.zeros_(module.mlp[-1].bias)
        if hasattr(module, "gamma") and isinstance(module.gamma, nn.Parameter):
            nn.init.ones_(module.gamma)

    # The LM's embeddings (get_input_embeddings from ActionDecoding), so that transformers/peft utilities (resize,
    # tying) find them.
    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def action_stats(self, dataset: str | None = None) -> ActionStats:
        if not self.config.norm_stats:
            raise ValueError("this checkpoint has no norm_stats (config.json) to un-normalise actions with")
        return ActionStats.from_norm_stats(self.config.norm_stats, dataset)

    def pixel_values(self, images: Tensor) -> Tensor:
        return self.vision_backbone.pixel_values(images)

    def embed_prompts(self, pixel_values: Tensor, prompt_ids: list[list[int]]) -> tuple[Tensor, Tensor]:
        """The LM's input: left-padded [BOS, projected patches, prompt] embeddings and their attention mask."""
        if len(prompt_ids) != pixel_values.shape[0]:
            raise ValueError(f"{pixel_values.shape[0]} images but {len(prompt_ids)} prompts")
        patches = self.projector(self.vision_backbone(pixel_values))
        embed = self.get_input_embeddings()
        rows = []
        for i, ids in enumerate(prompt_ids):
            tokens = embed(torch.as_tensor(ids, device=patches.device))
            rows.append(torch.cat([tokens[:1], patches[i].to(tokens.dtype), tokens[1:]], dim=0))
        return left_pad(rows)
