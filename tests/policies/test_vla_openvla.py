"""OpenVLA-style policy on a tiny checkpoint saved in OpenVLA-7B's layout (random weights, published key names)."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerFast

from policies.vla import autoregressive
from policies.vla.configuration_openvla import OpenVLAConfig
from policies.vla.lora import LoRASettings, add_lora, load_lora
from policies.vla.modeling_openvla import OpenVLAForActionPrediction
from policies.vla.policy import VLAPolicy, VLAPolicyConfig, openvla_prompt_encoder
from policies.vla.prompt import openvla_prompt, prompt_token_ids
from policies.vla.sampling import SamplingConfig
from policies.vla.tiny_checkpoints import TINY_NORM_STATS, save_tiny_openvla

INSTRUCTIONS = ["put the carrot on the plate", "Pick up the spoon", "put the eggplant in the basket now"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_openvla(tmp_path_factory.mktemp("openvla"), seed=3)


def load(checkpoint):
    torch.manual_seed(0)  # the value head is not in the checkpoint: initialised on load
    return OpenVLAForActionPrediction.from_pretrained(checkpoint).eval(), PreTrainedTokenizerFast.from_pretrained(
        checkpoint)


def images(n, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 36, 40, 3), dtype=np.uint8))


def prompts(model, tokenizer, n=3, seed=0):
    return model.embed_prompts(model.pixel_values(images(n, seed)), prompt_token_ids(tokenizer, INSTRUCTIONS[:n]))


def test_prompt_is_openvlas_and_starts_with_bos(checkpoint):
    assert openvla_prompt("Put the Carrot on the plate") == (
        "In: What action should the robot take to put the carrot on the plate?\nOut: ")
    _, tokenizer = load(checkpoint)
    ids = prompt_token_ids(tokenizer, ["pick"])[0]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids[1:]) == openvla_prompt("pick")
    assert max(ids) < 512 - 256  # the tiny tokenizer's text ids stay below the action ids


def test_loads_the_published_layout(checkpoint):
    model, tokenizer = load(checkpoint)
    cfg = json.loads((checkpoint / "config.json").read_text())
    assert cfg["model_type"] == "openvla" and cfg["arch_specifier"] == "no-align+fused-gelu-mlp"
    assert cfg["timm_model_ids"] == ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"]
    saved = load_file(checkpoint / "model.safetensors")
    # published key names, loaded value for value; SigLIP's pooling head is in the file and ignored
    for key in ["vision_backbone.featurizer.blocks.0.attn.qkv.weight", "vision_backbone.featurizer.reg_token",
                "vision_backbone.featurizer.blocks.1.ls2.gamma", "vision_backbone.fused_featurizer.pos_embed",
                "projector.fc1.weight", "projector.fc3.bias", "language_model.model.layers.1.mlp.down_proj.weight",
                "language_model.model.embed_tokens.weight", "language_model.lm_head.weight"]:
        torch.testing.assert_close(model.state_dict()[key], saved[key], rtol=0, atol=0)
    assert "vision_backbone.fused_featurizer.attn_pool.latent" in saved
    assert not any(k.startswith("value_head.") for k in saved)
    state = model.state_dict()
    assert all(k.startswith(("vision_backbone.", "projector.", "language_model.", "value_head.")) for k in state)
    # vocabulary convention: 512 text ids, <PAD> = 512, embeddings padded to a multiple of 64
    assert tokenizer.vocab_size == 512 and tokenizer.pad_token_id == 512 == model.config.pad_token_id
    assert state["language_model.model.embed_tokens.weight"].shape[0] == 576
    assert model.action_tokenizer.first_action_id == 256
    # statistics: config norm_stats and dataset_statistics.json agree; gripper dim masked
    assert json.loads((checkpoint / "dataset_statistics.json").read_text()) == TINY_NORM_STATS
    stats = model.action_stats()
    np.testing.assert_allclose(stats.unnormalize(np.ones(7)), [0.05] * 3 + [0.2] * 3 + [1.0])
    np.testing.assert_allclose(stats.unnormalize(-np.ones(7)), [-0.05] * 3 + [-0.2] * 3 + [-1.0])


# The fields of OpenVLA-7B's config.json (its norm_stats shortened to one data set).
OPENVLA_7B_CONFIG = {
    "arch_specifier": "no-align+fused-gelu-mlp", "architectures": ["OpenVLAForActionPrediction"],
    "hf_llm_id": "meta-llama/Llama-2-7b-hf", "image_resize_strategy": "resize-naive", "image_sizes": [224, 224],
    "llm_backbone_id": "llama2-7b-pure", "llm_max_length": 2048, "model_type": "openvla", "n_action_bins": 256,
    "norm_stats": TINY_NORM_STATS, "output_projector_states": False, "pad_to_multiple_of": 64, "pad_token_id": 32000,
    "text_config": {"model_type": "llama", "pad_token_id": 32000, "torch_dtype": "bfloat16", "vocab_size": 32064},
    "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
    "timm_override_act_layers": [None, None], "torch_dtype": "bfloat16", "transformers_version": "4.40.1",
    "use_fused_vision_backbone": True, "vision_backbone_id": "dinosiglip-vit-so-400m-224px",
}


def test_openvla_7b_config_gives_the_published_shapes(tmp_path):
    """The published config.json's sparse fields build OpenVLA-7B's shapes (on the meta device: no memory)."""
    (tmp_path / "config.json").write_text(json.dumps(OPENVLA_7B_CONFIG))
    cfg = OpenVLAConfig.from_pretrained(tmp_path)
    assert cfg.text_config.hidden_size == 4096 and cfg.text_config.num_hidden_layers == 32
    assert cfg.use_fused_vision_backbone and cfg.text_vocab_size == 32000
    with torch.device("meta"):
        model = OpenVLAForActionPrediction(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["vision_backbone.featurizer.pos_embed"] == (1, 256, 1024)
    assert shapes["vision_backbone.featurizer.reg_token"] == (1, 4, 1024)
    assert shapes["vision_backbone.featurizer.blocks.23.ls1.gamma"] == (1024,)
    assert shapes["vision_backbone.fused_featurizer.pos_embed"] == (1, 256, 1152)
    assert shapes["vision_backbone.fused_featurizer.blocks.26.mlp.fc1.weight"] == (4304, 1152)
    assert shapes["projector.fc1.weight"] == (8704, 2176)
    assert shapes["projector.fc2.weight"] == (4096, 8704)
    assert shapes["language_model.model.layers.31.mlp.down_proj.weight"] == (4096, 11008)
    assert shapes["language_model.lm_head.weight"] == (32064, 4096)
    assert shapes["value_head.mlp.0.weight"] == (512, 4096)
    assert model.action_tokenizer.first_action_id == 32000 - 256


@pytest.mark.parametrize("sampling", [SamplingConfig(), SamplingConfig(temperature=0.7, top_k=20)])
def test_generated_log_probs_equal_teacher_forced(checkpoint, sampling):
    model, tokenizer = load(checkpoint)
    with torch.no_grad():
        embeds, mask = prompts(model, tokenizer)
        assert (mask == 0).any()  # prompts of different lengths: left padding is exercised
        out = autoregressive.generate(model, embeds, mask, 7, sampling, torch.Generator().manual_seed(1))
        scored = autoregressive.score(model, embeds, mask, out.tokens, sampling)
        alone = autoregressive.score(model, embeds[1:2, (mask[1] == 0).sum():], mask[1:2, (mask[1] == 0).sum():],
                                     out.tokens[1:2], sampling)
    assert out.tokens.shape == (3, 7) and ((out.tokens >= 256) & (out.tokens < 512)).all()
    torch.testing.assert_close(scored.log_probs, out.log_probs, atol=1e-5, rtol=0)
    torch.testing.assert_close(scored.values, out.values, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone.log_probs, out.log_probs[1:2], atol=1e-5, rtol=0)  # padding changes nothing
    assert (out.log_probs < 0).all()
    if sampling.top_k is not None:  # tokens outside the top k have probability 0 and are never drawn
        assert torch.isfinite(out.log_probs).all()
        assert ((scored.entropy > 0) & (scored.entropy <= np.log(sampling.top_k) + 1e-5)).all()


def test_lora_save_load_merge_gives_the_same_actions_and_log_probs(checkpoint, tmp_path):
    model, tokenizer = load(checkpoint)
    peft_model = add_lora(model, LoRASettings(rank=4, alpha=8, init=False))  # init=False: B != 0, a trained adapter
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("language_model.model.layers.0.self_attn.q_proj.lora_A" in n for n in names)
    assert any("projector.fc1.lora_B" in n for n in names)
    assert any("value_head" in n for n in names)
    assert not any("lm_head" in n or "embed_tokens" in n for n in names)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():  # a value head that differs from the one a reload would make
            if "value_head" in n and "modules_to_save" in n:
                p.normal_(0, 0.3)

    def run(m):
        policy = VLAPolicy(m, openvla_prompt_encoder(m, tokenizer), VLAPolicyConfig(), seed=5)
        obs = {"image": images(3).numpy(), "instruction": INSTRUCTIONS}
        tokens, log_probs = policy.sample(obs)
        with torch.no_grad():
            scored = policy.evaluate(obs, torch.from_numpy(tokens))
        return tokens, log_probs, scored.values.numpy(), policy.act(obs, deterministic=True)

    peft_model.eval()
    before = run(peft_model)
    base_before = run(load(checkpoint)[0])
    assert not np.allclose(before[1], base_before[1], atol=1e-3)  # the adapter changes the policy
    peft_model.save_pretrained(tmp_path / "adapter")
    reloaded = load_lora(load(checkpoint)[0], str(tmp_path / "adapter")).eval()
    after = run(reloaded)
    merged = reloaded.merge_and_unload().eval()
    assert isinstance(merged, OpenVLAForActionPrediction)
    after_merge = run(merged)
    for got in (after, after_merge):
        np.testing.assert_array_equal(got[0], before[0])
        np.testing.assert_allclose(got[1], before[1], atol=1e-4)
        np.testing.assert_allclose(got[2], before[2], atol=1e-4)
        np.testing.assert_array_equal(got[3], before[3])


def test_policy_interface(checkpoint):
    model, tokenizer = load(checkpoint)
    policy = VLAPolicy(model, openvla_prompt_encoder(model, tokenizer), VLAPolicyConfig(),
                       action_stats=model.action_stats(), seed=0)
    obs = {"image": images(2).numpy()}  # the config's instruction for every env
    tokens, log_probs = policy.sample(obs)
    assert tokens.shape == (2, 7) and tokens.dtype == np.int64 and log_probs.shape == (2, 7)
    actions = policy.env_actions(tokens)
    assert actions.shape == (2, 1, 7)
    assert (np.abs(actions[..., :3]) <= 0.05 + 1e-6).all() and (np.abs(actions[..., 3:6]) <= 0.2 + 1e-6).all()
    np.testing.assert_allclose(actions[:, 0, 6], model.action_tokenizer.decode(tokens[:, 6]), atol=1e-6)  # masked
    scored = policy.evaluate(obs, torch.from_numpy(tokens))
    np.testing.assert_allclose(scored.log_probs.detach().numpy(), log_probs, atol=1e-5)
    scored.log_probs.sum().backward()  # gradients reach the LM
    assert model.language_model.model.layers[0].self_attn.q_proj.weight.grad is not None
    weights = policy.trainable_weights()
    weights["value_head.mlp.0.bias"] = weights["value_head.mlp.0.bias"] + 1.0
    policy.load_weights(weights)
    np.testing.assert_allclose(model.value_head.mlp[0].bias.detach().numpy(), weights["value_head.mlp.0.bias"])
    with pytest.raises(ValueError):
        policy.load_weights({"no.such.weight": np.zeros(1)})
    with pytest.raises(ValueError):
        policy.env_actions(tokens[:, :6])


def test_with_llama2s_vocabulary_the_prompt_ends_with_its_space_piece_29871_once():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from policies.vla.prompt import LLAMA2_SPACE_ID, llama2_space_id

    # A vocabulary laid out like Llama-2's where it matters: 32,000 ids, "▁" at 29871, BOS "<s>" at 1.
    pieces = ["<unk>", "<s>", "</s>", *sorted(set("in: what action should the robot take to pick?\nout ITWO"))]
    pieces += [f"<unused_{i}>" for i in range(LLAMA2_SPACE_ID - len(pieces))] + ["\u2581"]
    pieces += [f"<unused_b{i}>" for i in range(32000 - len(pieces))]
    backend = Tokenizer(models.BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=[], unk_token="<unk>"))
    llama_like = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    assert llama2_space_id(llama_like) == LLAMA2_SPACE_ID
    ids = prompt_token_ids(llama_like, ["pick", "pick"])
    assert ids[0] == ids[1] and ids[0][0] == 1 and ids[0][-1] == LLAMA2_SPACE_ID
    assert ids[0].count(LLAMA2_SPACE_ID) == 1
    # Any other vocabulary is left as it tokenizes (the tiny checkpoints' tokenizer here).
    from policies.vla.tiny_checkpoints import tiny_tokenizer

    assert llama2_space_id(tiny_tokenizer()) is None
    assert LLAMA2_SPACE_ID not in prompt_token_ids(tiny_tokenizer(), ["pick"])[0]
