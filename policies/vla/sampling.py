"""The action-token distribution both decoders sample from and score with.

Logits are restricted to the 256 action ids (the last 256 of the text vocabulary), divided by the
temperature, and (if top_k) cut to the k largest; the log-probability a rollout records and the
one training recomputes are both of this distribution, so the PPO ratio starts at exactly 1.
Index i of the restricted distribution is token id ``first_action_id + i``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0
    top_k: int | None = None  # None: all 256 action tokens

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"sampling temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")


def action_log_probs(logits: Tensor, first_action_id: int, n_bins: int, sampling: SamplingConfig) -> Tensor:
    """Full-vocabulary logits [..., V] -> log-probabilities over the action ids [..., n_bins], in float32."""
    if logits.shape[-1] < first_action_id + n_bins:
        raise ValueError(f"logits have {logits.shape[-1]} entries, fewer than the action ids' end "
                         f"{first_action_id + n_bins}")
    scaled = logits[..., first_action_id:first_action_id + n_bins].float() / sampling.temperature
    if sampling.top_k is not None and sampling.top_k < n_bins:
        kth = scaled.topk(sampling.top_k, dim=-1).values[..., -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return torch.log_softmax(scaled, dim=-1)


def sample(log_probs: Tensor, generator: torch.Generator | None, greedy: bool = False) -> Tensor:
    """Indices [...] into the action ids, drawn from (or the mode of) log_probs [..., n_bins]."""
    if greedy:
        return log_probs.argmax(-1)
    flat = log_probs.reshape(-1, log_probs.shape[-1]).exp()
    return torch.multinomial(flat, 1, generator=generator).reshape(log_probs.shape[:-1])


def entropy(log_probs: Tensor) -> Tensor:
    p = log_probs.exp()
    return -(p * torch.where(p > 0, log_probs, torch.zeros_like(log_probs))).sum(-1)
