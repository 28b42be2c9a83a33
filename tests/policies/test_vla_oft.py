"""OpenVLA-OFT-style parallel decoding of an 8 x 7 chunk on a tiny OpenVLA-layout checkpoint."""
import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerFast

from policies.vla import autoregressive, parallel
from policies.vla.modeling_openvla import OpenVLAForActionPrediction, position_ids_of
from policies.vla.policy import (
    VLAPolicy,
    VLAPolicyConfig,
    group_log_probs,
    openvla_prompt_encoder,
)
from policies.vla.prompt import prompt_token_ids
from policies.vla.sampling import SamplingConfig, action_log_probs
from policies.vla.tiny_checkpoints import save_tiny_openvla

CHUNK = 8 * 7
INSTRUCTIONS = ["put the carrot on the plate", "pick up the spoon"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    directory = save_tiny_openvla(tmp_path_factory.mktemp("oft"), seed=4)
    torch.manual_seed(0)
    model = OpenVLAForActionPrediction.from_pretrained(directory).eval()
    return model, PreTrainedTokenizerFast.from_pretrained(directory)


def prompts(model, tokenizer):
    imgs = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 28, 28, 3), dtype=np.uint8))
    return model.embed_prompts(model.pixel_values(imgs), prompt_token_ids(tokenizer, INSTRUCTIONS))


def reference_log_probs(model, embeds, mask, sampling):
    """Position by position from one forward that differs from the parallel decoder's in both places a mistake could
    hide: eager attention (softmax over an explicit additive mask) instead of SDPA, and the mask built entry by
    entry from its rule (query q sees key k iff k is a real token and (k <= q, or both are placeholders)) instead
    of by tensor broadcasting. Token j is read at sequence position length - 1 + j."""
    b, length, h = embeds.shape
    total = length + CHUNK
    add = torch.zeros(b, 1, total, total)
    for i in range(b):
        for q in range(total):
            for k in range(total):
                real = k >= length or bool(mask[i, k])
                ok = real and (k <= q or (q >= length and k >= length))
                if not ok and k != q:
                    add[i, 0, q, k] = torch.finfo(torch.float32).min
    full = torch.cat([embeds, torch.zeros(b, CHUNK, h)], dim=1)
    pos = position_ids_of(mask)
    pos = torch.cat([pos, pos[:, -1:] + 1 + torch.arange(CHUNK)], dim=1)
    lm = model.language_model
    lm.config._attn_implementation = "eager"
    try:
        assert lm.model.layers[0].self_attn.config._attn_implementation == "eager"
        hidden = lm.model(inputs_embeds=full, attention_mask=add, position_ids=pos).last_hidden_state
        tok = model.action_tokenizer
        rows = [action_log_probs(lm.lm_head(hidden[:, length - 1 + j]), tok.first_action_id, tok.n_bins, sampling)
                for j in range(CHUNK)]
    finally:
        lm.config._attn_implementation = "sdpa"
    return torch.stack(rows, 1)


def test_parallel_decode_equals_the_position_by_position_reference(loaded):
    model, tokenizer = loaded
    assert model.language_model.config._attn_implementation == "sdpa"
    sampling = SamplingConfig(temperature=0.8)
    with torch.no_grad():
        embeds, mask = prompts(model, tokenizer)
        assert (mask == 0).any()
        lp, values = parallel.chunk_log_probs(model, embeds, mask, CHUNK, sampling)
        reference = reference_log_probs(model, embeds, mask, sampling)
        torch.testing.assert_close(lp, reference, atol=2e-5, rtol=0)
        greedy = parallel.generate(model, embeds, mask, CHUNK, sampling, greedy=True)
        np.testing.assert_array_equal(greedy.tokens - 256, reference.argmax(-1))
        # the value is read at the last prompt token, which sees no placeholder: the autoregressive model's value
        ar = autoregressive.generate(model, embeds, mask, 1, sampling, greedy=True)
        torch.testing.assert_close(values, ar.values, atol=1e-5, rtol=0)
        # token 0 is predicted from the last prompt token alone: the autoregressive model's first token
        torch.testing.assert_close(lp[:, 0].gather(-1, ar.tokens - 256).squeeze(-1), ar.log_probs[:, 0], atol=1e-5,
                                   rtol=0)


def test_the_mask_makes_placeholders_bidirectional(loaded):
    """With a plain causal mask the same inputs give other log-probabilities: the 4-D mask is what the model used."""
    model, tokenizer = loaded
    sampling = SamplingConfig()
    with torch.no_grad():
        embeds, mask = prompts(model, tokenizer)
        lp, _ = parallel.chunk_log_probs(model, embeds, mask, CHUNK, sampling)
        full, _, pos = parallel.chunk_inputs(embeds, mask, CHUNK)
        causal_mask = torch.cat([mask, mask.new_ones(2, CHUNK)], dim=1)
        hidden = model.hidden_states(full, causal_mask, pos).last_hidden_state
        causal = action_log_probs(model.lm_logits(hidden[:, embeds.shape[1] - 1:-1]), 256, 256, sampling)
    torch.testing.assert_close(causal[:, 0], lp[:, 0], atol=1e-5, rtol=0)  # the last prompt token: causal either way
    assert (causal[:, 1:] - lp[:, 1:]).abs().amax() > 1e-3


def test_sampled_chunk_log_probs_equal_the_training_pass(loaded):
    model, tokenizer = loaded
    policy = VLAPolicy(model, openvla_prompt_encoder(model, tokenizer),
                       VLAPolicyConfig(decoding="parallel", action_chunk=8, temperature=1.0, top_k=64),
                       action_stats=model.action_stats(), seed=2)
    obs = {"image": np.random.default_rng(2).integers(0, 256, (2, 28, 28, 3), dtype=np.uint8),
           "instruction": INSTRUCTIONS}
    tokens, log_probs = policy.sample(obs)
    assert tokens.shape == (2, CHUNK) and log_probs.shape == (2, CHUNK)
    assert len(np.unique(tokens)) > 10  # independently sampled, not one repeated token
    scored = policy.evaluate(obs, torch.from_numpy(tokens))
    np.testing.assert_allclose(scored.log_probs.detach().numpy(), log_probs, atol=1e-5)
    assert scored.entropy.shape == (2, CHUNK) and (scored.entropy <= np.log(64) + 1e-5).all()
    assert policy.env_actions(tokens).shape == (2, 8, 7)
    (scored.log_probs.sum() + scored.values.sum()).backward()
    assert model.value_head.mlp[0].weight.grad is not None


def test_log_probs_sum_per_action_and_per_chunk():
    lp = torch.arange(2 * CHUNK, dtype=torch.float32).reshape(2, CHUNK)
    torch.testing.assert_close(group_log_probs(lp, 7, "token"), lp)
    per_action = group_log_probs(lp, 7, "action")
    assert per_action.shape == (2, 8)
    torch.testing.assert_close(per_action[0, 1], lp[0, 7:14].sum())
    torch.testing.assert_close(group_log_probs(lp, 7, "chunk"), lp.sum(1))
    with pytest.raises(ValueError):
        group_log_probs(lp[:, :10], 7, "action")
