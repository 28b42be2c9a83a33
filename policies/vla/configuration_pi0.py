"""Pi0Config: the shapes of a pi0 / pi0.5 flow-matching VLA, with openpi's published variants.

openpi's PyTorch checkpoints (a directory with ``model.safetensors``, ``config.json`` and
``assets/<asset_id>/norm_stats.json``) name their shapes by variant only: ``config.json`` holds
``action_dim`` (32), ``action_horizon`` (50), ``paligemma_variant`` ("gemma_2b"),
``action_expert_variant`` ("gemma_300m") and ``precision``; whether it is pi0 or pi0.5 is not written
there, and the loader (openpi_checkpoint.py) reads it off the tensors. ``GEMMA_VARIANTS`` holds the
Gemma shapes of openpi's ``models/gemma.py`` ("dummy", "gemma_300m", "gemma_2b"); the vision tower is
always SigLIP So400m/14 at 224 px (``SO400M``), projected to the LM's width.

Fields this project adds (absent from the published file, defaults fit it): ``pi05``, ``prefix``
("paligemma": SigLIP + Gemma as openpi; "small": SmallPi0's pretrained EfficientNet-Lite0 + MiniLM-L6,
small_pi0.py), ``vision`` (a smaller SigLIP for tiny tests), ``vocab_size`` (PaliGemma's
257152; tiny tests shrink it), ``env_action_dim`` (the env's action dims inside the 32: CALVIN 7),
``state_dim`` (the env's state dims inside the 32), ``num_images``, ``max_token_len`` (openpi: 48 for
pi0, 200 for pi0.5), ``value_head_hidden`` ((512, 256, 128)), ``value_detach``, ``noise_std_bounds``
((0.08, 0.16), Flow-Noise), ``norm_stats`` (openpi's norm_stats.json content, carried by saved
policies) and SmallPi0's ``small`` settings.
"""
from __future__ import annotations

from transformers import GemmaConfig, PretrainedConfig, SiglipVisionConfig

# openpi models/gemma.py: width, depth, mlp_dim, num_heads, num_kv_heads, head_dim
GEMMA_VARIANTS = {
    "dummy": dict(width=64, depth=4, mlp_dim=128, num_heads=8, num_kv_heads=1, head_dim=16),
    "gemma_300m": dict(width=1024, depth=18, mlp_dim=4096, num_heads=8, num_kv_heads=1, head_dim=256),
    "gemma_2b": dict(width=2048, depth=18, mlp_dim=16384, num_heads=8, num_kv_heads=1, head_dim=256),
}
PALIGEMMA_VOCAB = 257152
# SigLIP So400m/14 at 224 px, as PaliGemma holds it (no attention-pooling head)
SO400M = dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16, intermediate_size=4304, patch_size=14,
              image_size=224)
PREFIXES = ("paligemma", "small")


def gemma_config(variant: str | dict, vocab_size: int = PALIGEMMA_VOCAB) -> GemmaConfig:
    """A transformers GemmaConfig for an openpi variant name (or a dict of the same six fields)."""
    if isinstance(variant, str):
        if variant not in GEMMA_VARIANTS:
            raise ValueError(f"unknown Gemma variant {variant!r}; known: {', '.join(GEMMA_VARIANTS)}")
        variant = GEMMA_VARIANTS[variant]
    v = dict(variant)
    return GemmaConfig(vocab_size=vocab_size, hidden_size=v["width"], intermediate_size=v["mlp_dim"],
                       num_hidden_layers=v["depth"], num_attention_heads=v["num_heads"],
                       num_key_value_heads=v["num_kv_heads"], head_dim=v["head_dim"],
                       hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, max_position_embeddings=8192,
                       # Gemma's special ids; none for a prefix without a vocabulary (SmallPi0's)
                       **(dict(pad_token_id=0, bos_token_id=2, eos_token_id=1) if vocab_size > 2 else
                          dict(pad_token_id=None, bos_token_id=None, eos_token_id=None)))


class Pi0Config(PretrainedConfig):
    model_type = "zarl_pi0"

    def __init__(self, action_dim: int = 32, action_horizon: int = 50, paligemma_variant: str | dict = "gemma_2b",
                 action_expert_variant: str | dict = "gemma_300m", precision: str = "float32", pi05: bool = False,
                 prefix: str = "paligemma", vision: dict | None = None, vocab_size: int = PALIGEMMA_VOCAB,
                 env_action_dim: int = 7, state_dim: int = 15, num_images: int = 2, max_token_len: int | None = None,
                 value_head_hidden: list[int] | None = None, value_detach: bool = True,
                 noise_std_bounds: list[float] | None = None, norm_stats: dict | None = None,
                 small: dict | None = None, **kwargs):
        self.action_dim, self.action_horizon = int(action_dim), int(action_horizon)
        self.paligemma_variant, self.action_expert_variant = paligemma_variant, action_expert_variant
        self.precision, self.pi05, self.prefix = precision, bool(pi05), prefix
        self.vision = dict(vision) if vision is not None else None
        self.vocab_size = int(vocab_size)
        self.env_action_dim, self.state_dim, self.num_images = int(env_action_dim), int(state_dim), int(num_images)
        self.max_token_len = int(max_token_len) if max_token_len is not None else (200 if self.pi05 else 48)
        self.value_head_hidden = list(value_head_hidden or [512, 256, 128])
        self.value_detach = bool(value_detach)
        self.noise_std_bounds = list(noise_std_bounds or [0.08, 0.16])
        self.norm_stats = norm_stats
        self.small = dict(small) if small is not None else None
        self._validate()
        super().__init__(**kwargs)

    def _validate(self) -> None:
        if self.prefix not in PREFIXES:
            raise ValueError(f"prefix must be one of {', '.join(PREFIXES)}, got {self.prefix!r}")
        if not 1 <= self.env_action_dim <= self.action_dim:
            raise ValueError(f"env_action_dim {self.env_action_dim} must be in 1..action_dim ({self.action_dim})")
        if not 1 <= self.state_dim <= self.action_dim:
            raise ValueError(f"state_dim {self.state_dim} must be in 1..action_dim ({self.action_dim}): the state is "
                             "zero-padded to action_dim as openpi does")
        lo, hi = self.noise_std_bounds
        if not 0 < lo < hi:
            raise ValueError(f"noise_std_bounds must be 0 < low < high, got {self.noise_std_bounds}")
        vlm, expert = self.vlm_config, self.expert_config
        # The expert's queries attend to the prefix's keys layer by layer: same depth, head width and KV heads.
        for field in ("num_hidden_layers", "head_dim", "num_key_value_heads"):
            if getattr(vlm, field) != getattr(expert, field):
                raise ValueError(f"the action expert must match the VLM's {field} to read its KV cache: "
                                 f"{getattr(expert, field)} vs {getattr(vlm, field)}")

    @property
    def vlm_config(self) -> GemmaConfig:
        return gemma_config(self.paligemma_variant, self.vocab_size)

    @property
    def expert_config(self) -> GemmaConfig:
        return gemma_config(self.action_expert_variant, self.vocab_size)

    @property
    def siglip_config(self) -> SiglipVisionConfig:
        v = dict(SO400M if self.vision is None else self.vision)
        return SiglipVisionConfig(**v, vision_use_head=False, hidden_act="gelu_pytorch_tanh",
                                  layer_norm_eps=1e-6, attn_implementation="sdpa")

    @property
    def noise_logvar_bounds(self) -> tuple[float, float]:
        import math

        lo, hi = self.noise_std_bounds
        return 2 * math.log(lo), 2 * math.log(hi)
