"""SmallVLA built from the installed weight packages (EfficientNet-Lite0, MiniLM-L6), acting through VLAPolicy."""
import numpy as np
import pytest
import torch

from policies.vla.policy import VLAPolicy, VLAPolicyConfig
from policies.vla.small_vla import SmallVLA, SmallVLAConfig, load_minilm


def test_minilm_loads_from_the_package_zip():
    model, tokenizer = load_minilm()
    ids = tokenizer.encode("put the carrot on the plate").ids
    assert ids[0] == 101 and ids[-1] == 102 and 0 not in ids  # [CLS] ... [SEP], no padding
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids])).last_hidden_state
        other = model(input_ids=torch.tensor([tokenizer.encode("open the drawer").ids])).last_hidden_state
    # a trained sentence encoder: mean-pooled embeddings of unrelated sentences are far from identical
    a, b = out.mean(1)[0], other.mean(1)[0]
    assert 0.0 < torch.cosine_similarity(a, b, dim=0) < 0.9


@pytest.fixture(scope="module")
def small_model():
    return SmallVLA(SmallVLAConfig(hidden=64, layers=2, heads=2, intermediate=128, image_size=64,
                                   value_head_hidden=(32,)))


@pytest.mark.parametrize("decoding,chunk", [("autoregressive", 1), ("parallel", 8)])
def test_small_vla_acts_with_log_probs_for_a_batch_of_two(small_model, decoding, chunk):
    model = small_model
    model.zero_grad(set_to_none=True)
    assert not any(p.requires_grad for p in model._text_encoder[0].parameters())
    assert model.image_encoder._bn0.running_mean.abs().sum() > 0  # ImageNet statistics, not a fresh BatchNorm
    policy = VLAPolicy(model, model.embed_prompts, VLAPolicyConfig(decoding=decoding, action_chunk=chunk), seed=0)
    obs = {"image": np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3), dtype=np.uint8),
           "instruction": ["put the carrot on the plate", "put the spoon on the plate"]}
    model.eval()
    tokens, log_probs = policy.sample(obs)
    assert tokens.shape == (2, 7 * chunk) and log_probs.shape == (2, 7 * chunk)
    assert ((tokens >= 2) & (tokens < 258)).all() and (log_probs < 0).all()
    actions = policy.env_actions(tokens)
    assert actions.shape == (2, chunk, 7) and (np.abs(actions) < 1).all()
    model.train()
    scored = policy.evaluate(obs, torch.from_numpy(tokens))
    np.testing.assert_allclose(scored.log_probs.detach().numpy(), log_probs, atol=1e-4)
    (scored.log_probs.sum() + scored.values.sum()).backward()
    assert model.image_projector.weight.grad.abs().sum() > 0 and model.image_encoder._conv_stem.weight.grad is not None
    assert "_text_encoder" not in "".join(model.state_dict())
    assert set(policy.trainable_weights()) == {n for n, p in model.named_parameters() if p.requires_grad}
