"""A language instruction as an observation entry: its UTF-8 bytes, zero-padded to a fixed length.

Observations are arrays (the wire format, the rollout store and the replay hold arrays only), so an env that
gives its policy an instruction puts it in the observation as uint8 [INSTRUCTION_BYTES]; policies decode it
back to text (ZarlPutOnPlate-v1, the play table's per-episode subtasks).
"""
from __future__ import annotations

from typing import Any

import numpy as np

INSTRUCTION_BYTES = 64


def encode_instruction(text: str, length: int = INSTRUCTION_BYTES) -> np.ndarray:
    raw = text.encode("utf-8")
    if len(raw) > length:
        raise ValueError(f"instruction {text!r} is {len(raw)} UTF-8 bytes, more than the {length} an observation holds")
    out = np.zeros(length, np.uint8)
    out[: len(raw)] = np.frombuffer(raw, np.uint8)
    return out


def decode_instruction(tokens: Any) -> str | list[str]:
    """Inverse of encode_instruction: uint8 [L] -> str, [B, L] -> list of str (numpy or torch)."""
    arr = tokens.cpu().numpy() if hasattr(tokens, "cpu") else np.asarray(tokens)
    if arr.ndim == 2:
        return [decode_instruction(row) for row in arr]
    return bytes(arr[arr != 0].astype(np.uint8)).decode("utf-8")
