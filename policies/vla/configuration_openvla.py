"""OpenVLAConfig: the fields of OpenVLA-7B's published config.json, plus the policy's own.

Published fields (openvla/openvla-7b, HF layout): ``vision_backbone_id``, ``llm_backbone_id``,
``arch_specifier`` ("no-align+fused-gelu-mlp"), ``use_fused_vision_backbone``,
``image_resize_strategy``, ``image_sizes``, ``timm_model_ids``, ``timm_override_act_layers``,
``llm_max_length``, ``pad_token_id`` (32000), ``pad_to_multiple_of`` (64), ``n_action_bins`` (256),
``norm_stats`` (per data set: action q01/q99/mask, ...), ``output_projector_states`` and a sparse
``text_config`` (model_type llama, vocab_size 32064, pad_token_id 32000; the rest are Llama-2-7B's
defaults, which are LlamaConfig's defaults).

Fields this project adds (absent from published files, with defaults that fit them):
``vision_specs`` (the featurizers' shapes, when the timm ids are not in vision.TIMM_VIT_SPECS: tiny
test models), ``text_vocab_size`` (the tokenizer's vocabulary without added tokens, which the action
tokens count back from; 32000 for Llama 2: vocab_size - pad_to_multiple_of padding - the pad token),
``action_dim`` (7), ``action_chunk`` (OFT's chunk, 8) and ``value_head_hidden`` ((512, 128)).
"""
from __future__ import annotations

from transformers import LlamaConfig, PretrainedConfig

from policies.vla.vision import TIMM_VIT_SPECS, ViTSpec


class OpenVLAConfig(PretrainedConfig):
    model_type = "openvla"

    def __init__(self, vision_backbone_id: str = "dinosiglip-vit-so-400m-224px",
                 llm_backbone_id: str = "llama2-7b-pure", arch_specifier: str = "no-align+fused-gelu-mlp",
                 use_fused_vision_backbone: bool | None = None, image_resize_strategy: str = "resize-naive",
                 image_sizes: list[int] | None = None, timm_model_ids: list[str] | None = None,
                 timm_override_act_layers: list | None = None, llm_max_length: int = 2048,
                 pad_token_id: int = 32000, pad_to_multiple_of: int = 64, n_action_bins: int = 256,
                 norm_stats: dict | None = None, output_projector_states: bool = False,
                 text_config: dict | LlamaConfig | None = None, vision_specs: list[dict] | None = None,
                 text_vocab_size: int | None = None, action_dim: int = 7, action_chunk: int = 8,
                 value_head_hidden: list[int] | None = None, **kwargs):
        self.vision_backbone_id, self.llm_backbone_id, self.arch_specifier = (vision_backbone_id, llm_backbone_id,
                                                                              arch_specifier)
        self.timm_model_ids = list(timm_model_ids or ["vit_large_patch14_reg4_dinov2.lvd142m",
                                                      "vit_so400m_patch14_siglip_224"])
        self.use_fused_vision_backbone = (len(self.timm_model_ids) == 2 if use_fused_vision_backbone is None
                                          else bool(use_fused_vision_backbone))
        self.image_resize_strategy = image_resize_strategy
        self.image_sizes = list(image_sizes or [224] * len(self.timm_model_ids))
        self.timm_override_act_layers = list(timm_override_act_layers or [None] * len(self.timm_model_ids))
        self.llm_max_length, self.pad_to_multiple_of = int(llm_max_length), int(pad_to_multiple_of)
        self.n_action_bins, self.output_projector_states = int(n_action_bins), bool(output_projector_states)
        self.norm_stats = norm_stats
        if isinstance(text_config, dict):
            text_config = LlamaConfig(**{k: v for k, v in text_config.items() if k != "model_type"})
        self.text_config = text_config if text_config is not None else LlamaConfig(vocab_size=32064,
                                                                                  pad_token_id=pad_token_id)
        self.vision_specs = vision_specs
        # Llama 2: 32064 embeddings = 32000 tokens + <PAD> + 63 rows of padding to a multiple of 64.
        self.text_vocab_size = int(text_vocab_size) if text_vocab_size is not None else 32000
        self.action_dim, self.action_chunk = int(action_dim), int(action_chunk)
        self.value_head_hidden = list(value_head_hidden or [512, 128])
        if self.text_vocab_size > self.text_config.vocab_size:
            raise ValueError(f"text_vocab_size {self.text_vocab_size} exceeds the LM's vocab_size "
                             f"{self.text_config.vocab_size}")
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    def vit_specs(self) -> list[ViTSpec]:
        """The featurizers' shapes: from vision_specs when given, else by timm id from vision.TIMM_VIT_SPECS."""
        if self.vision_specs is not None:
            specs = [ViTSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()})
                     for s in self.vision_specs]
        else:
            unknown = [m for m in self.timm_model_ids if m not in TIMM_VIT_SPECS]
            if unknown:
                raise ValueError(f"no ViT shape known for timm model(s) {unknown}; known: {', '.join(TIMM_VIT_SPECS)} "
                                 "(or give vision_specs in the config)")
            specs = [TIMM_VIT_SPECS[m] for m in self.timm_model_ids]
        expected = 2 if self.use_fused_vision_backbone else 1
        if len(specs) != expected:
            raise ValueError(f"use_fused_vision_backbone={self.use_fused_vision_backbone} needs {expected} "
                             f"featurizer(s), the config names {len(specs)}")
        return specs

    def to_dict(self) -> dict:
        out = super().to_dict()
        if isinstance(out.get("text_config"), PretrainedConfig):
            out["text_config"] = out["text_config"].to_dict()
        return out
