"""A trained VLA on disk (policies/vla/saved.py describes the state it holds): writing it as a learner checkpoint
(learner/checkpoint.py), finding and reading it, and building the policy a `vla` section asks for with the
weights of `vla.init_from` loaded (what the VLA pipelines' roles, the SFT stage and the evaluator build)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from core.atomic_dir import MANIFEST
from learner.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from policies.vla.config import VLAConfig
from policies.vla.saved import SavedVLA, policy_stats, saved_vla


def build_policy(cfg: VLAConfig, device: str, seed: int, merge_lora: bool = False, obs_space=None):
    """build_vla_policy (policies/vla/build.py) with `vla.init_from`'s weights and statistics, if set; `obs_space`:
    the env's observation space (what a pi0 reads its cameras and state from)."""
    from policies.vla.build import build_vla_policy

    saved = load_vla(cfg.init_from) if cfg.init_from else None
    return build_vla_policy(cfg, device, seed, merge_lora=merge_lora, saved=saved, obs_space=obs_space)


def save_vla(policy, vla_cfg: VLAConfig, directory: str | Path, *, label: str, extra: dict | None = None,
             keep: int = 2) -> Path:
    """Write the policy's trained weights, action statistics and `vla` section as a new checkpoint under
    `directory` (learner/checkpoint.py's layout); returns the checkpoint directory."""
    import torch

    state = {"trained": {n: torch.from_numpy(v) for n, v in policy.trainable_weights().items()},
             **policy_stats(policy), "vla": dataclasses.asdict(vla_cfg), **(extra or {})}
    return save_checkpoint(state, directory, keep=keep, label=label, meta={"kind": "vla"})


def resolve(path: str | Path) -> Path:
    """The checkpoint directory `path` names: itself, or the newest checkpoint in it or in its checkpoints/."""
    given = Path(path).expanduser()
    if not given.is_dir():
        raise FileNotFoundError(f"vla.init_from={path}: no such directory")
    if (given / MANIFEST).is_file():
        return given
    for folder in (given / "checkpoints", given):
        found = list_checkpoints(folder) if folder.is_dir() else []
        if found:
            return found[0]
    raise FileNotFoundError(f"vla.init_from={path}: holds no checkpoint (no {MANIFEST} in it, no ckpt-* directory "
                            "in it or in its checkpoints/)")


def load_vla(path: str | Path) -> SavedVLA:
    """The trained weights, statistics and `vla` section of the saved VLA that `path` names (resolve)."""
    where = resolve(path)
    return saved_vla(load_checkpoint(where), where)
