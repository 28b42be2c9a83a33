"""openpi's PyTorch checkpoint layout, read from a local directory (modeling_pi0.load_openpi_checkpoint builds
the Pi0Model).

A converted openpi checkpoint directory (openpi's examples/convert_jax_model_to_pytorch.py writes it) holds:
* ``model.safetensors``: PI0Pytorch's tensors under ``paligemma_with_expert.paligemma.model.vision_tower
  .vision_model.*`` (SigLIP), ``...paligemma.model.multi_modal_projector.linear.*``,
  ``...paligemma.model.language_model.*`` (Gemma 2B), ``paligemma_with_expert.gemma_expert.model.*`` (the
  300M expert; pi0.5's norms as ``...layernorm.dense.weight/bias`` and ``model.norm.dense.*``),
  ``action_in_proj``, ``action_out_proj`` and either ``state_proj``, ``action_time_mlp_in/out`` (pi0) or
  ``time_mlp_in/out`` (pi0.5). The file is written by safetensors' ``save_model``, which keeps one name
  of tied tensors, the alphabetically first: the VLM's token embedding appears as
  ``paligemma_with_expert.paligemma.lm_head.weight`` (tied to ``...language_model.embed_tokens.weight``;
  either name is accepted). The expert's ``gemma_expert.lm_head.weight`` (a vocabulary projection the
  expert never uses: openpi drops its token embedding) is recognised and dropped.
* ``config.json``: ``action_dim``, ``action_horizon``, ``paligemma_variant``, ``action_expert_variant``,
  ``precision``. pi0 vs pi0.5 is not written there: it is read off the tensors (``time_mlp_in`` or
  ``state_proj``). Tiny test files add ``vision`` and ``vocab_size`` (configuration_pi0.py).
* ``assets/<asset_id>/norm_stats.json``: ``{"norm_stats": {"state": {"mean", "std", "q01", "q99"},
  "actions": {...}}}``. openpi normalises pi0 with mean/std ((x - mean) / (std + 1e-6)) and pi0.5 with
  quantiles ((x - q01) / (q99 - q01 + 1e-6) * 2 - 1), over the data's own dims; padding stays zero.

Every tensor of the file must be consumed and every openpi-layout tensor of the model present; what zarl adds
(value and noise heads) starts fresh. bfloat16 files are loaded into the float32 model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from policies.vla.configuration_pi0 import PALIGEMMA_VOCAB, Pi0Config

WEIGHTS = "model.safetensors"
TIED_EMBEDDING = "paligemma_with_expert.paligemma.lm_head.weight"
EMBEDDING = "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight"
EXPERT_LM_HEAD = "paligemma_with_expert.gemma_expert.lm_head.weight"
ZARL_ONLY = ("value_head.", "noise_head.")
CONFIG_FIELDS = ("action_dim", "action_horizon", "paligemma_variant", "action_expert_variant", "precision")


@dataclass(frozen=True)
class LoadReport:
    loaded: tuple[str, ...]  # model tensors filled from the file
    dropped: tuple[str, ...]  # file tensors recognised as unused (the expert's lm_head)
    fresh: tuple[str, ...]  # model tensors the layout lacks (zarl's heads)


# --- norm statistics -------------------------------------------------------------------------------------------
def load_norm_stats(directory: str | Path, asset_id: str | None = None) -> dict | None:
    """``assets/<asset_id>/norm_stats.json``'s ``norm_stats`` (the only asset when ``asset_id`` is None); None
    when the directory has no assets."""
    assets = Path(directory) / "assets"
    if not assets.is_dir():
        return None
    if asset_id is None:
        found = sorted(p.parent.name for p in assets.glob("*/norm_stats.json"))
        if len(found) != 1:
            raise ValueError(f"{assets} holds norm statistics for {found or 'no asset'}; name one (asset_id)")
        asset_id = found[0]
    path = assets / asset_id / "norm_stats.json"
    if not path.is_file():
        raise FileNotFoundError(f"no norm statistics for asset {asset_id!r}: {path}")
    stats = json.loads(path.read_text())["norm_stats"]
    for key, entry in stats.items():
        missing = [f for f in ("mean", "std") if f not in entry]
        if missing:
            raise ValueError(f"{path}: norm statistics {key!r} lack {missing}")
    return stats


def normalize(x: np.ndarray, stats: dict, quantile: bool) -> np.ndarray:
    """openpi's Normalize over the statistics' dims (x may be wider: the rest passes through)."""
    x = np.asarray(x, dtype=np.float32).copy()
    n = len(stats["mean"])
    if quantile:
        q01, q99 = np.asarray(stats["q01"], np.float32), np.asarray(stats["q99"], np.float32)
        x[..., :n] = (x[..., :n] - q01) / (q99 - q01 + 1e-6) * 2.0 - 1.0
    else:
        mean, std = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
        x[..., :n] = (x[..., :n] - mean) / (std + 1e-6)
    return x


def unnormalize(x: np.ndarray, stats: dict, quantile: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).copy()
    n = min(len(stats["mean"]), x.shape[-1])
    if quantile:
        q01, q99 = np.asarray(stats["q01"], np.float32)[:n], np.asarray(stats["q99"], np.float32)[:n]
        x[..., :n] = (x[..., :n] + 1.0) / 2.0 * (q99 - q01 + 1e-6) + q01
    else:
        mean, std = np.asarray(stats["mean"], np.float32)[:n], np.asarray(stats["std"], np.float32)[:n]
        x[..., :n] = x[..., :n] * (std + 1e-6) + mean
    return x


# --- tensors ---------------------------------------------------------------------------------------------------
def detect_pi05(state: dict) -> bool:
    has_time, has_state = "time_mlp_in.weight" in state, "state_proj.weight" in state
    if has_time == has_state:
        raise ValueError("cannot tell pi0 from pi0.5: the file must hold exactly one of time_mlp_in.weight (pi0.5) "
                         f"and state_proj.weight (pi0); it holds {'both' if has_time else 'neither'}")
    return has_time


def map_openpi_state(state: dict) -> tuple[dict, list[str]]:
    """openpi's tensors -> this model's names (tied embedding resolved), and the names dropped as unused."""
    state, dropped = dict(state), []
    if TIED_EMBEDDING in state:
        tied = state.pop(TIED_EMBEDDING)
        if EMBEDDING in state and not torch.equal(state[EMBEDDING], tied):
            raise ValueError(f"{TIED_EMBEDDING} and {EMBEDDING} are tied in openpi but differ in this file")
        state.setdefault(EMBEDDING, tied)
    if EXPERT_LM_HEAD in state:
        state.pop(EXPERT_LM_HEAD)
        dropped.append(EXPERT_LM_HEAD)
    return state, dropped


def load_state_into(model: torch.nn.Module, state: dict) -> LoadReport:
    """openpi's tensors into a Pi0Model (modeling_pi0.py, which imports this module: hence no import of it here)."""
    mapped, dropped = map_openpi_state(state)
    own = model.state_dict()
    expected = {k for k in own if not k.startswith(ZARL_ONLY)}
    unexpected = sorted(set(mapped) - set(own))
    missing = sorted(expected - set(mapped))
    if unexpected or missing:
        raise ValueError(f"checkpoint does not fit the {'pi0.5' if model.config.pi05 else 'pi0'} model: "
                         f"unexpected tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}, "
                         f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in mapped.items() if v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"checkpoint tensor shapes differ from the model's (name, file, model): {wrong[:5]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()}, strict=False)
    return LoadReport(tuple(sorted(mapped)), tuple(dropped), tuple(sorted(set(own) - expected)))


def read_openpi_checkpoint(directory: str | Path, asset_id: str | None = None,
                           **config_overrides) -> tuple[Pi0Config, dict]:
    """The Pi0Config and the tensors of an openpi PyTorch checkpoint directory; norm statistics (when present) land
    in ``config.norm_stats``. ``config_overrides`` set zarl's own fields (env_action_dim, state_dim, ...).
    modeling_pi0.load_openpi_checkpoint builds the model from them."""
    directory = Path(directory)
    for name in ("config.json", WEIGHTS):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} is not an openpi PyTorch checkpoint: {name} is missing")
    raw = json.loads((directory / "config.json").read_text())
    absent = [f for f in CONFIG_FIELDS[:4] if f not in raw]
    if absent:
        raise ValueError(f"{directory / 'config.json'} lacks openpi's fields {absent}")
    state = load_file(directory / WEIGHTS)
    fields = {f: raw[f] for f in CONFIG_FIELDS if f in raw}
    config = Pi0Config(**fields, pi05=detect_pi05(state), vision=raw.get("vision"),
                       vocab_size=raw.get("vocab_size", PALIGEMMA_VOCAB),
                       norm_stats=load_norm_stats(directory, asset_id), **config_overrides)
    return config, state
