"""OpenVLA-style decoding: the action tokens one after another, each conditioned on the ones before.

``generate`` runs the prompt once and then one cached step per token (7 for a 7-D action);
``score`` recomputes the same per-token log-probabilities in one teacher-forced pass over
[prompt, tokens[:-1]] (position t's logits predict token t + 1). The value is read at the last
prompt token in both, before any action token is seen.

``model`` is anything with OpenVLAForActionPrediction's decoding surface: ``hidden_states``,
``lm_logits``, ``value``, ``get_input_embeddings`` and ``action_tokenizer``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from policies.vla.modeling_openvla import decoder_cache, position_ids_of
from policies.vla.sampling import SamplingConfig, action_log_probs, entropy, sample


@dataclass
class Decoded:
    tokens: Tensor  # [B, n] token ids
    log_probs: Tensor  # [B, n] per-token log-probabilities (float32)
    values: Tensor  # [B] (float32)
    entropy: Tensor | None = None  # [B, n]


def _log_probs(model, hidden: Tensor, sampling: SamplingConfig) -> Tensor:
    tok = model.action_tokenizer
    return action_log_probs(model.lm_logits(hidden), tok.first_action_id, tok.n_bins, sampling)


def generate(model, embeds: Tensor, mask: Tensor, n_tokens: int, sampling: SamplingConfig,
             generator: torch.Generator | None = None, greedy: bool = False) -> Decoded:
    """Sample n_tokens action tokens after the prompt (embeds [B, L, H], mask [B, L])."""
    if n_tokens < 1:
        raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
    first = model.action_tokenizer.first_action_id
    positions = position_ids_of(mask)
    out = model.hidden_states(embeds, mask, positions, use_cache=True)
    past, hidden = decoder_cache(out), out.last_hidden_state[:, -1]
    values = model.value(hidden)
    tokens, log_probs = [], []
    for t in range(n_tokens):
        lp = _log_probs(model, hidden, sampling)
        index = sample(lp, generator, greedy)
        tokens.append(index + first)
        log_probs.append(lp.gather(-1, index[:, None]).squeeze(-1))
        if t == n_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        positions = positions[:, -1:] + 1
        step = model.get_input_embeddings()(tokens[-1][:, None])
        out = model.hidden_states(step, mask, positions, cache=past, use_cache=True)
        past, hidden = decoder_cache(out), out.last_hidden_state[:, -1]
    return Decoded(torch.stack(tokens, 1), torch.stack(log_probs, 1), values)


def score(model, embeds: Tensor, mask: Tensor, tokens: Tensor, sampling: SamplingConfig) -> Decoded:
    """Per-token log-probabilities and entropies of given action tokens [B, n], and the values: one pass."""
    n = tokens.shape[1]
    first, n_bins = model.action_tokenizer.first_action_id, model.action_tokenizer.n_bins
    if ((tokens < first) | (tokens >= first + n_bins)).any():
        raise ValueError(f"tokens to score must be action ids in [{first}, {first + n_bins})")
    length = embeds.shape[1]
    full = torch.cat([embeds, model.get_input_embeddings()(tokens[:, :-1]).to(embeds.dtype)], dim=1)
    full_mask = torch.cat([mask, mask.new_ones(mask.shape[0], n - 1)], dim=1)
    hidden = model.hidden_states(full, full_mask, position_ids_of(full_mask), use_cache=False).last_hidden_state
    lp = _log_probs(model, hidden[:, length - 1:], sampling)
    chosen = lp.gather(-1, (tokens - first)[..., None]).squeeze(-1)
    return Decoded(tokens, chosen, model.value(hidden[:, length - 1]), entropy(lp))
