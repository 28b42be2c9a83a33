"""A trained VLA on disk: what an SFT run (learner/sft.py) or a VLA learner (learner/vla.py) saved, as the policy
builder reads it (`vla.init_from`, policies/vla/build.py). Writing and finding it on disk is
learner/vla_checkpoint.py's (a learner checkpoint, learner/checkpoint.py).

The directory is a learner checkpoint (learner/checkpoint.py: tensors.safetensors, state.json, manifest.json;
written atomically, CRC-checked on load). Its state holds

    trained        {parameter name: tensor}: VLAPolicy.trainable_weights(), i.e. the LoRA adapters and the value
                   head (or SmallVLA's trainable parts), named as the policy's model names them
    action_stats   {"q01", "q99", "mask"}: how the policy's action tokens are un-normalised (absent: the model's)
    norm_stats     pi0 / pi0.5 instead: openpi's {"state"|"actions": {mean, std, q01, q99}} (absent: the model's)
    vla            the `vla` config section the weights were trained with (what gives them their shapes and sense)
    layout         pi0 / pi0.5: the observation entries it reads ({image_keys, state_key, state_dim}, Pi0Layout)

An RL learner's checkpoint holds `trained` and `action_stats` under "algorithm" and the config under "config";
both layouts are read. Only the trained part is saved: the base weights are the model's own (a checkpoint
directory, or random from `vla.model_seed`), so the config that loads the weights must build the same base,
which `check_fits` makes sure of.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policies.vla.action_tokenizer import ActionStats
from policies.vla.config import VLAConfig

# The `vla` keys that decide which base model the trained weights sit on, their shapes and how the tokens are
# read: loading weights under other values would give another policy.
ARCHITECTURE_KEYS = ("model", "checkpoint", "model_seed", "lora", "lora_rank", "lora_alpha", "decoding",
                     "action_chunk", "tiny_hidden", "tiny_layers", "tiny_image_size", "small_hidden", "small_layers",
                     "small_heads", "small_image_size", "small_pretrained", "pi0_horizon")


@dataclass
class SavedVLA:
    path: Path  # the checkpoint directory read
    weights: dict[str, np.ndarray]
    action_stats: ActionStats | None
    vla: dict  # the `vla` section it was trained with
    state: dict  # the whole saved state (counters of the run that wrote it)
    norm_stats: dict | None = None  # pi0 / pi0.5's state and action statistics
    layout: dict | None = None  # pi0 / pi0.5's observation layout (Pi0Layout.to_dict)


def policy_stats(policy) -> dict:
    """What a saved policy carries to normalise its inputs and un-normalise its actions: a token VLA's
    `action_stats`, a pi0's `norm_stats` (Pi0Policy.stats)."""
    if hasattr(policy, "action_stats"):
        return {"action_stats": stats_state(policy.action_stats)}
    return {"norm_stats": policy.stats, "layout": policy.layout.to_dict()}


def stats_state(stats: ActionStats | None) -> dict | None:
    if stats is None:
        return None
    return {"q01": stats.q01.tolist(), "q99": stats.q99.tolist(), "mask": stats.mask.tolist()}


def saved_vla(state: dict, path: Path) -> SavedVLA:
    """The trained weights, statistics and `vla` section in a checkpoint's state (either layout, module docstring)."""
    holder: dict[str, Any] = state if "trained" in state else state.get("algorithm", {})
    if "trained" not in holder:
        raise ValueError(f"{path} is a checkpoint but not of a VLA: it holds no trained VLA weights "
                         f"(keys: {sorted(state)})")
    vla = state.get("vla") or (state.get("config") or {}).get("vla")
    if not vla:
        raise ValueError(f"{path} does not say which `vla` config its weights were trained with")
    stats = holder.get("action_stats", state.get("action_stats"))
    return SavedVLA(path=path, weights={n: t.float().numpy() for n, t in holder["trained"].items()},
                    action_stats=None if stats is None else ActionStats(**{k: np.asarray(v) for k, v in stats.items()}),
                    vla=dict(vla), state=state, norm_stats=holder.get("norm_stats", state.get("norm_stats")),
                    layout=holder.get("layout", state.get("layout")))


def _same(key: str, a, b) -> bool:
    if key == "checkpoint" and a and b:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    return a == b


def check_fits(saved: SavedVLA, cfg: VLAConfig, ignore: tuple[str, ...] = ()) -> None:
    """ValueError naming every architecture key (but those in `ignore`) where the saved weights' config and `cfg`
    differ."""
    differ = [f"vla.{k}: saved {saved.vla.get(k)!r}, this config {getattr(cfg, k)!r}" for k in ARCHITECTURE_KEYS
              if k in saved.vla and k not in ignore and not _same(k, saved.vla[k], getattr(cfg, k))]
    if differ:
        raise ValueError(f"the VLA weights in {saved.path} were trained on another model than this config builds: "
                         + "; ".join(differ))
