"""Instructions as observations: a fixed-length, zero-padded UTF-8 byte row (uint8 [INSTRUCTION_BYTES]), so
that they travel in the same arrays as images and states. The VLA policies decode them back to strings."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

INSTRUCTION_BYTES = 64


def encode_instruction(text: str, length: int = INSTRUCTION_BYTES) -> np.ndarray:
    raw = text.encode("utf-8")[:length]
    out = np.zeros(length, np.uint8)
    out[: len(raw)] = np.frombuffer(raw, np.uint8)
    return out


def decode_instruction(tokens: Any) -> str | list[str]:
    """Inverse of encode_instruction: uint8 [L] -> str, [B, L] -> list of str (numpy or torch)."""
    arr = tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    if arr.ndim == 2:
        return [decode_instruction(row) for row in arr]
    return bytes(arr[arr != 0].astype(np.uint8)).decode("utf-8")
