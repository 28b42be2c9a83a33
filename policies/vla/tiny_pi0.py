"""Tiny random pi0 / pi0.5 models and checkpoint directories in openpi's PyTorch layout, for tests.

``save_tiny_openpi`` writes what a converted openpi checkpoint holds (openpi_checkpoint.py): ``model.safetensors``
with openpi's tensor names (the VLM embedding under the tied name ``...paligemma.lm_head.weight`` and the
expert's unused ``gemma_expert.lm_head.weight``, as safetensors' save_model leaves them), ``config.json``
with openpi's five fields (Gemma variant "dummy" of openpi's gemma.py for both the VLM and the expert) plus
the tiny vision tower and vocabulary, and ``assets/calvin/norm_stats.json``. Nothing is downloaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from policies.vla.configuration_pi0 import Pi0Config
from policies.vla.modeling_pi0 import Pi0Model
from policies.vla.openpi_checkpoint import EMBEDDING, EXPERT_LM_HEAD, TIED_EMBEDDING, ZARL_ONLY

TINY_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8,
                   image_size=16)
TINY_VOCAB = 384  # the character-level tokenizer of tiny_checkpoints.py fits below it
TINY_ASSET = "calvin"


def tiny_norm_stats(state_dim: int = 15, action_dim: int = 7) -> dict:
    def entry(n, scale):
        return {"mean": [0.01 * i for i in range(n)], "std": [scale] * n,
                "q01": [-2 * scale] * n, "q99": [2 * scale] * n}
    return {"state": entry(state_dim, 0.5), "actions": entry(action_dim, 0.2)}


def tiny_pi0_config(pi05: bool = False, horizon: int = 4, **overrides) -> Pi0Config:
    fields = dict(paligemma_variant="dummy", action_expert_variant="dummy", vocab_size=TINY_VOCAB, vision=TINY_VISION,
                  action_horizon=horizon, pi05=pi05, max_token_len=160 if pi05 else 48, value_head_hidden=[32, 16, 8])
    return Pi0Config(**{**fields, **overrides})


def save_tiny_openpi(directory: str | Path, pi05: bool = False, seed: int = 0, horizon: int = 4) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Pi0Model(tiny_pi0_config(pi05, horizon))
    # Perturbed so that zero-initialised tensors (norm weights, adaptive-norm kernels) differ from a fresh model's:
    # a tensor the loader skipped would show in the tests.
    state = {k: (v + 0.01 * torch.randn_like(v)).contiguous() for k, v in model.state_dict().items()
             if not k.startswith(ZARL_ONLY)}
    state[TIED_EMBEDDING] = state.pop(EMBEDDING)
    state[EXPERT_LM_HEAD] = torch.randn(TINY_VOCAB, model.expert.config.hidden_size)
    save_file(state, directory / "model.safetensors")
    config = {"action_dim": 32, "action_horizon": horizon, "paligemma_variant": "dummy",
              "action_expert_variant": "dummy", "precision": "float32", "vision": TINY_VISION,
              "vocab_size": TINY_VOCAB}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    assets = directory / "assets" / TINY_ASSET
    assets.mkdir(parents=True, exist_ok=True)
    (assets / "norm_stats.json").write_text(json.dumps({"norm_stats": tiny_norm_stats()}, indent=2))
    return directory
