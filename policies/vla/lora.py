"""LoRA on a VLA through peft: which modules get adapters, and the value head trained in full.

Adapters go on every linear layer of the LM's decoder, the projector and the ViT blocks (OpenVLA's
fine-tuning uses peft's "all-linear", which leaves out the output layer); not on ``lm_head``, the
patch-embedding convolution or the value head. The value head is trained in full and saved with
the adapter (peft's ``modules_to_save``), so an adapter directory is the whole trained policy on
top of the base checkpoint. RLinf's OpenVLA PPO uses r = 32, alpha = 32 (OpenVLA's own
fine-tuning: alpha = min(r, 16)); ``lora_dropout`` 0 keeps rollout and training passes identical.
"""
from __future__ import annotations

from dataclasses import dataclass

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

# Module names relative to the VLA model (peft matches the whole name against this regex).
LORA_TARGET_REGEX = (r"^(language_model\.model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
                     r"|projector\.fc\d"
                     r"|vision_backbone\.\w+\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc\d))$")


@dataclass(frozen=True)
class LoRASettings:
    rank: int = 32
    alpha: int = 32
    dropout: float = 0.0
    init: str | bool = "gaussian"  # peft's init_lora_weights; "gaussian" starts with B = 0: the base policy

    def __post_init__(self):
        if self.rank < 1 or self.alpha <= 0:
            raise ValueError(f"LoRA needs rank >= 1 and alpha > 0, got rank {self.rank}, alpha {self.alpha}")


def add_lora(model: nn.Module, settings: LoRASettings, target_regex: str = LORA_TARGET_REGEX) -> PeftModel:
    """Wrap `model` with fresh LoRA adapters (base weights frozen, adapters and value head trainable)."""
    cfg = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                     target_modules=target_regex, modules_to_save=["value_head"], init_lora_weights=settings.init)
    return get_peft_model(model, cfg)


def load_lora(model: nn.Module, adapter_dir: str, trainable: bool = False) -> PeftModel:
    """The base `model` with the adapter (and value head) saved by ``PeftModel.save_pretrained`` in adapter_dir."""
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=trainable)


def unwrap(model: nn.Module) -> nn.Module:
    """The VLA inside a PeftModel (adapters injected in place), or the model itself."""
    return model.base_model.model if isinstance(model, PeftModel) else model
