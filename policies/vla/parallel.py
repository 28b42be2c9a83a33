"""OpenVLA-OFT-style decoding: a chunk of actions (8 x 7 = 56 tokens) in one forward pass.

The sequence is [prompt, 56 placeholders] (OFT's [BOS, image patches, prompt, 8 x 7 placeholders]). Placeholder input embeddings are zero, so no
placeholder carries information about any sampled token and all 56 are sampled independently from
one pass; this is also why the rollout's log-probabilities and the training pass's are the same
computation (``decode`` serves both).

Attention (a 4-D additive mask handed to the transformers decoder, no patched attention):
prompt tokens attend causally to real prompt tokens; placeholders attend to every real prompt
token and to every placeholder (bidirectional among them); padding is never attended. Position
ids continue from the prompt's last position.

Reading: next-token alignment, as in OpenVLA's autoregressive decoding: the hidden state at
sequence position L - 1 + j (the last prompt token for j = 0, placeholder j - 1 after it) gives
the logits of action token j; the last placeholder's output is not read (at training time OFT's
last action token predicts the stop token from there). The value is read at the last prompt token, which attends to
nothing after it, so it equals the autoregressive model's value.
"""
from __future__ import annotations

import torch
from torch import Tensor

from policies.vla.autoregressive import Decoded
from policies.vla.modeling_openvla import position_ids_of
from policies.vla.sampling import SamplingConfig, action_log_probs, entropy, sample


def chunk_attention_mask(mask: Tensor, n_placeholders: int, dtype: torch.dtype) -> Tensor:
    """[B, L] prompt mask -> [B, 1, L + n, L + n] additive mask (0 attended, dtype's min not)."""
    b, length = mask.shape
    total = length + n_placeholders
    q = torch.arange(total, device=mask.device)[:, None]
    k = torch.arange(total, device=mask.device)[None, :]
    allowed = (k <= q) | ((q >= length) & (k >= length))
    key_real = torch.cat([mask.bool(), mask.new_ones(b, n_placeholders, dtype=torch.bool)], dim=1)
    allowed = allowed[None] & key_real[:, None, :]
    # A padded query row would attend to nothing (NaN softmax): let it see itself; its output is never read.
    allowed = allowed | torch.eye(total, dtype=torch.bool, device=mask.device)[None]
    out = torch.zeros(b, 1, total, total, dtype=dtype, device=mask.device)
    return out.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


def chunk_inputs(embeds: Tensor, mask: Tensor, n_placeholders: int) -> tuple[Tensor, Tensor, Tensor]:
    """Inputs embeddings with zero placeholders appended, the 4-D mask and the position ids."""
    b, _, h = embeds.shape
    full = torch.cat([embeds, embeds.new_zeros(b, n_placeholders, h)], dim=1)
    prompt_pos = position_ids_of(mask)
    positions = torch.cat([prompt_pos, prompt_pos[:, -1:] + 1 + torch.arange(n_placeholders, device=mask.device)],
                          dim=1)
    return full, chunk_attention_mask(mask, n_placeholders, embeds.dtype), positions


def chunk_log_probs(model, embeds: Tensor, mask: Tensor, n_tokens: int,
                    sampling: SamplingConfig) -> tuple[Tensor, Tensor]:
    """Log-probabilities over the action ids of every chunk token [B, n, n_bins], and the values [B]."""
    length = embeds.shape[1]
    full, mask4d, positions = chunk_inputs(embeds, mask, n_tokens)
    hidden = model.hidden_states(full, mask4d, positions).last_hidden_state
    tok = model.action_tokenizer
    lp = action_log_probs(model.lm_logits(hidden[:, length - 1:length - 1 + n_tokens]), tok.first_action_id,
                          tok.n_bins, sampling)
    return lp, model.value(hidden[:, length - 1])


def generate(model, embeds: Tensor, mask: Tensor, n_tokens: int, sampling: SamplingConfig,
             generator: torch.Generator | None = None, greedy: bool = False) -> Decoded:
    """Sample the n_tokens of a chunk, each independently, from one pass."""
    lp, values = chunk_log_probs(model, embeds, mask, n_tokens, sampling)
    index = sample(lp, generator, greedy)
    return Decoded(index + model.action_tokenizer.first_action_id, lp.gather(-1, index[..., None]).squeeze(-1), values)


def score(model, embeds: Tensor, mask: Tensor, tokens: Tensor, sampling: SamplingConfig) -> Decoded:
    """Per-token log-probabilities and entropies of a given chunk's tokens [B, n], and the values."""
    first, n_bins = model.action_tokenizer.first_action_id, model.action_tokenizer.n_bins
    if ((tokens < first) | (tokens >= first + n_bins)).any():
        raise ValueError(f"tokens to score must be action ids in [{first}, {first + n_bins})")
    lp, values = chunk_log_probs(model, embeds, mask, tokens.shape[1], sampling)
    return Decoded(tokens, lp.gather(-1, (tokens - first)[..., None]).squeeze(-1), values, entropy(lp))
