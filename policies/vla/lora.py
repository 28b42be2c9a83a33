"""LoRA on a VLA through peft: which modules get adapters, and the value head trained in full.

Adapters go on every linear layer of the LM's decoder, the projector and the ViT blocks (OpenVLA's
fine-tuning uses peft's "all-linear", which leaves out the output layer); not on ``lm_head``, the
patch-embedding convolution or the value head. The value head is trained in full and saved with
the adapter (peft's ``modules_to_save``), so an adapter directory is the whole trained policy on
top of the base checkpoint. A pi0's adapters go on its VLM prefix only (``add_vlm_lora``), the action expert and
heads training in full beside them. RLinf's OpenVLA PPO uses r = 32, alpha = 32 (OpenVLA's own
fine-tuning: alpha = min(r, 16)); ``lora_dropout`` 0 keeps rollout and training passes identical.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

# Module names relative to the VLA model (peft matches the whole name against this regex).
LORA_TARGET_REGEX = (r"^(language_model\.model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
                     r"|projector\.fc\d"
                     r"|vision_backbone\.\w+\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc\d))$")
# pi0 / pi0.5 (modeling_pi0.py): the VLM prefix only, the same kinds of layer: the Gemma LM's attention and MLP
# projections, SigLIP's attention and MLP, the projector. The action expert (``gemma_expert``) is not adapted: it
# trains in full beside the adapters (seed 003 trains it with the VLM frozen; LoRA is the alternative for the VLM).
PI0_VLM_LORA_REGEX = (r"^paligemma_with_expert\.paligemma\.model\.("
                      r"language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
                      r"|vision_tower\.vision_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc\d)"
                      r"|multi_modal_projector\.linear)$")


@dataclass(frozen=True)
class LoRASettings:
    rank: int = 32
    alpha: int = 32
    dropout: float = 0.0
    init: str | bool = "gaussian"  # peft's init_lora_weights; "gaussian" starts with B = 0: the base policy

    def __post_init__(self):
        if self.rank < 1 or self.alpha <= 0:
            raise ValueError(f"LoRA needs rank >= 1 and alpha > 0, got rank {self.rank}, alpha {self.alpha}")


def add_lora(model: nn.Module, settings: LoRASettings, target_regex: str = LORA_TARGET_REGEX,
             modules_to_save: Iterable[str] = ("value_head",)) -> PeftModel:
    """Wrap `model` with fresh LoRA adapters (base weights frozen, adapters and `modules_to_save` trainable)."""
    cfg = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                     target_modules=target_regex, modules_to_save=list(modules_to_save) or None,
                     init_lora_weights=settings.init)
    return get_peft_model(model, cfg)


def add_vlm_lora(model: nn.Module, settings: LoRASettings) -> PeftModel:
    """A pi0 / pi0.5 with LoRA adapters on its VLM prefix (PI0_VLM_LORA_REGEX): the prefix's own weights frozen,
    the adapters trained, and everything outside the prefix that trained before (the action expert, its
    projections, the value and noise heads) still trained in full. peft freezes all but the adapters, so those are
    switched back on by name; nothing is copied (no modules_to_save), so the names stay the model's."""
    model.paligemma_with_expert.paligemma.requires_grad_(False)
    full = [p for n, p in model.named_parameters() if p.requires_grad]
    wrapped = add_lora(model, settings, PI0_VLM_LORA_REGEX, modules_to_save=())
    for p in full:
        p.requires_grad_(True)
    return wrapped


def has_lora(model: nn.Module) -> bool:
    return isinstance(model, PeftModel)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters by role: ``lora`` (adapter weights), ``trained`` (the other parameters that require grad),
    ``frozen``; ``total`` (a shared tensor counted once)."""
    counts = {"lora": 0, "trained": 0, "frozen": 0}
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        key = "frozen" if not p.requires_grad else "lora" if ".lora_" in name else "trained"
        counts[key] += p.numel()
    counts["total"] = sum(counts.values())
    return counts


def load_lora(model: nn.Module, adapter_dir: str, trainable: bool = False) -> PeftModel:
    """The base `model` with the adapter (and value head) saved by ``PeftModel.save_pretrained`` in adapter_dir."""
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=trainable)


def unwrap(model: nn.Module) -> nn.Module:
    """The VLA inside a PeftModel (adapters injected in place), or the model itself."""
    return model.base_model.model if isinstance(model, PeftModel) else model
