"""Learner checkpoints: every tensor in safetensors, everything else in a small JSON file, written atomically.

A checkpoint is a directory ``<run_dir>/checkpoints/ckpt-<time ns>-u<updates>/`` holding

    tensors.safetensors   every tensor of the state (networks, targets, optimiser moments, RNG states)
    state.json            the rest of the state tree (step counters, hyperparameters of the optimisers,
                          the run id), with ``{"__tensor__": key}`` where a tensor was
    manifest.json         size and CRC-32 of both files (see core/atomic_dir.py)

Why not one ``torch.save`` pickle: unpickling runs code, so loading a checkpoint from someone else is
unsafe, and a pickle cut short by a full disk fails with an unhelpful message. Safetensors holds only
numbers, and the manifest says exactly which file is damaged.

The state tree may hold dicts (any keys), lists, tuples, numbers, strings, None, torch tensors and numpy
arrays: what ``nn.Module.state_dict()`` and ``Optimizer.state_dict()`` return. It comes back with the
same types (optimiser dicts keep their int keys, Adam's betas stay a tuple).

The last ``keep`` checkpoints are kept. ``load_latest_checkpoint`` takes the newest one that is intact; a
damaged one is reported (naming the file), renamed to ``*.corrupt`` and the previous one is used.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from core.atomic_dir import (
    CorruptError,
    mark_corrupt,
    prune,
    read_manifest,
    saved_dirs,
    write_atomic_dir,
)

PREFIX = "ckpt"
TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"


class CheckpointError(RuntimeError):
    """No usable checkpoint; the message names every file that was tried and what was wrong with it."""


# -- the state tree <-> JSON + a flat dict of tensors -------------------------------------------------------


def _encode(node: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(node, torch.Tensor):
        key = f"t{len(tensors)}"
        # A private, contiguous CPU copy: safetensors refuses views that share memory.
        tensors[key] = node.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": key}
    if isinstance(node, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.array(node, copy=True, order="C"))
        return {"__ndarray__": key}
    if isinstance(node, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in node):
            return {k: _encode(v, tensors, f"{where}.{k}") for k, v in node.items()}
        return {"__map__": [[_encode(k, tensors, where), _encode(v, tensors, f"{where}[{k!r}]")]
                            for k, v in node.items()]}
    if isinstance(node, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(node)]}
    if isinstance(node, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, np.generic):
        return node.item()
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    raise TypeError(f"checkpoint state at {where or 'the top'} is a {type(node).__name__}; a checkpoint holds "
                    "dicts, lists, tuples, numbers, strings, None, tensors and numpy arrays")


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__ndarray__" in node:
            return tensors[node["__ndarray__"]].numpy()
        if "__tuple__" in node:
            return tuple(_decode(v, tensors) for v in node["__tuple__"])
        if "__map__" in node:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in node["__map__"]}
        return {k: _decode(v, tensors) for k, v in node.items()}
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    return node


# -- saving and loading --------------------------------------------------------------------------------------


def save_checkpoint(state: dict, directory: str | os.PathLike, *, keep: int = 2, label: str = "",
                    meta: dict | None = None) -> Path:
    """Write `state` as a new checkpoint under `directory`, then delete all but the `keep` newest.

    `label` goes into the directory name (e.g. "u12000" for 12,000 updates); `meta` (small JSON values,
    e.g. the run id) goes into the manifest, readable without loading the tensors.
    """
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors, "")
    files = {TENSORS_FILE: save_safetensors(tensors), STATE_FILE: json.dumps(tree).encode()}
    path = write_atomic_dir(directory, PREFIX, label or "state", files, meta or {})
    prune(directory, PREFIX, keep)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load one checkpoint directory; raises CorruptError naming the damaged file."""
    path = Path(path)
    read_manifest(path)  # sizes and CRC-32 of both files
    try:
        tensors = load_safetensors((path / TENSORS_FILE).read_bytes())
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise CorruptError(path / TENSORS_FILE, f"not a safetensors file ({type(e).__name__}: {e})") from None
    try:
        tree = json.loads((path / STATE_FILE).read_text())
        return _decode(tree, tensors)
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptError(path / STATE_FILE, f"unreadable ({type(e).__name__}: {e})") from None


def checkpoint_meta(path: str | os.PathLike) -> dict:
    """The metadata saved with a checkpoint (from its manifest), without checking or loading the tensors."""
    return read_manifest(path, verify=False).get("meta", {})


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints under `directory`, newest first."""
    return saved_dirs(directory, PREFIX)


def load_latest_checkpoint(directory: str | os.PathLike, log: logging.Logger | None = None) -> tuple[dict, Path] | None:
    """The newest intact checkpoint under `directory` as (state, path); None if there is none at all.

    A damaged checkpoint is logged as an error naming the file, renamed to ``*.corrupt`` and skipped, so the
    previous one is used. If checkpoints exist but none is intact, raises CheckpointError listing them:
    silently starting from scratch when a resume was asked for would waste the run.
    """
    problems = []
    for path in list_checkpoints(directory):
        try:
            return load_checkpoint(path), path
        except CorruptError as e:
            moved = mark_corrupt(path)
            problems.append(str(e))
            if log is not None:
                log.error(f"checkpoint unusable: {e}; renamed to {moved.name}, trying the previous one")
    if problems:
        raise CheckpointError(f"no intact checkpoint in {directory}: " + "; ".join(problems))
    return None
