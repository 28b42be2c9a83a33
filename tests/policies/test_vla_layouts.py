"""OpenVLA-OFT's published layout (the OpenVLA files + OFT's heads + lora_adapter/), on a tiny random directory."""
import numpy as np
import pytest
import torch

from policies.vla import parallel
from policies.vla.lora import load_lora
from policies.vla.oft_checkpoint import load_oft_checkpoint
from policies.vla.prompt import prompt_token_ids
from policies.vla.sampling import SamplingConfig
from policies.vla.tiny_checkpoints import save_tiny_oft


@pytest.fixture(scope="module")
def oft_dir(tmp_path_factory):
    return save_tiny_oft(tmp_path_factory.mktemp("oft_layout"), seed=7)


def test_loads_oft_heads_and_adapter(oft_dir):
    from transformers import PreTrainedTokenizerFast

    ckpt = load_oft_checkpoint(oft_dir)
    saved_head = torch.load(next(oft_dir.glob("action_head--*.pt")), weights_only=True)
    assert all(k.startswith("module.model.") for k in saved_head)
    for k, v in ckpt.action_head.state_dict().items():
        torch.testing.assert_close(v, saved_head[f"module.{k}"], rtol=0, atol=0)
    assert len(ckpt.action_head.model.mlp_resnet_blocks) == 2
    assert ckpt.proprio_projector.fc1.in_features == 8
    assert ckpt.proprio_projector(torch.zeros(3, 8)).shape == (3, 64)
    # the regression head reads the chunk's 56 hidden states as 8 rows of 7 x width
    tokenizer = PreTrainedTokenizerFast.from_pretrained(oft_dir)
    model = ckpt.model.eval()
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 28, 28, 3), dtype=np.uint8))
    with torch.no_grad():
        embeds, mask = model.embed_prompts(model.pixel_values(images), prompt_token_ids(tokenizer, ["a", "bb"]))
        full, mask4d, pos = parallel.chunk_inputs(embeds, mask, 56)
        hidden = model.hidden_states(full, mask4d, pos).last_hidden_state[:, embeds.shape[1]:]
        assert ckpt.action_head(hidden).shape == (2, 8, 7)
        base = parallel.chunk_log_probs(model, embeds, mask, 56, SamplingConfig())[0]
        adapted_model = load_lora(model, str(oft_dir / "lora_adapter")).eval()
        adapted = parallel.chunk_log_probs(adapted_model.base_model.model, embeds, mask, 56, SamplingConfig())[0]
    assert (adapted - base).abs().amax() > 1e-3  # the saved adapter (non-zero B) was applied


def test_a_head_file_that_does_not_fit_is_refused(tmp_path):
    directory = save_tiny_oft(tmp_path / "bad", seed=1)
    path = next(directory.glob("action_head--*.pt"))
    state = torch.load(path, weights_only=True)
    state["module.model.fc2.weight"] = torch.zeros(5, 3)
    del state["module.model.layer_norm2.bias"]
    torch.save(state, path)
    with pytest.raises(ValueError, match="fc2.weight") as err:
        load_oft_checkpoint(directory)
    assert "layer_norm2.bias" in str(err.value)
