"""pi0 / pi0.5 models (policies/vla/modeling_pi0.py): flow-matching training, the policy interface, save -> load
round trips, openpi's checkpoint layout (tiny random directories) and input errors."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from policies.vla.configuration_pi0 import Pi0Config
from policies.vla.modeling_pi0 import Pi0Model, discretize_state, load_openpi_checkpoint
from policies.vla.pi0_build import load_pi0
from policies.vla.openpi_checkpoint import EXPERT_LM_HEAD
from policies.vla.pi0_policy import Pi0Policy, Pi0PolicyConfig
from policies.vla.tiny_checkpoints import tiny_tokenizer
from policies.vla.tiny_pi0 import TINY_VOCAB, save_tiny_openpi, tiny_norm_stats, tiny_pi0_config

PLAY_TABLE = dict(image_keys=("rgb_static", "rgb_gripper"), state_key="robot_obs")  # the observations below


def observation(b: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {"rgb_static": rng.integers(0, 256, (b, 20, 20, 3), dtype=np.uint8),
            "rgb_gripper": rng.integers(0, 256, (b, 12, 12, 3), dtype=np.uint8),
            "robot_obs": rng.normal(size=(b, 15)).astype(np.float32),
            "instruction": ["open the drawer", "push the blue block left", "turn on the lamp"][:b]}


def tiny_policy(pi05: bool, sampler: str = "sde", seed: int = 0, model=None, **cfg):
    if model is None:
        torch.manual_seed(seed)
        model = Pi0Model(tiny_pi0_config(pi05, norm_stats=tiny_norm_stats()))
    return Pi0Policy(model, Pi0PolicyConfig(sampler=sampler, action_chunk=3, **{**PLAY_TABLE, **cfg}),
                     tokenizer=tiny_tokenizer(TINY_VOCAB),
                     seed=seed)


@pytest.mark.parametrize("pi05", [False, True])
def test_flow_matching_loss_decreases_on_a_tiny_batch(pi05):
    torch.manual_seed(0)
    model = Pi0Model(tiny_pi0_config(pi05))
    policy = tiny_policy(pi05, model=model)
    cache, state = policy._prefix(observation())
    cache = type(cache)([k.detach() for k in cache.keys], [v.detach() for v in cache.values], cache.mask,
                        cache.hidden.detach())
    g = torch.Generator().manual_seed(1)
    actions = torch.zeros(3, 4, 32)
    actions[..., :7] = torch.randn(3, 4, 7, generator=g)
    noise, t = torch.randn(3, 4, 32, generator=g), torch.tensor([0.2, 0.5, 0.9])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model.flow_matching_loss(cache, state, actions, noise=noise, t=t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("pi05,sampler", [(False, "sde"), (True, "sde"), (False, "noise"), (True, "noise")])
def test_learner_recomputes_the_actors_log_prob(pi05, sampler):
    policy = tiny_policy(pi05, sampler)
    obs = observation()
    recorded, old = policy.sample(obs)
    assert recorded.shape == (3, policy.recorded_action[0][0]) and old.shape == (3, 3)
    scored = policy.evaluate(obs, recorded)
    ratio = torch.exp(scored.log_probs.detach() - torch.as_tensor(old))
    assert torch.equal(ratio, torch.ones_like(ratio)), (ratio - 1).abs().max()
    assert scored.values.shape == (3,) and scored.entropy.shape == (3, 3)
    scored.log_probs.sum().backward()  # the density has gradients into the expert
    assert policy.model.action_out_proj.weight.grad.abs().sum() > 0
    actions = policy.env_actions(recorded)
    assert actions.shape == (3, 3, 7) and np.isfinite(actions).all()
    step, chain = policy.split_recorded(recorded)
    if sampler == "sde":
        assert ((step >= 0) & (step < 5)).all()
    else:
        assert (step == -1).all()
    assert chain.shape == (3, 6, 4, 32)


def test_flow_noise_stds_stay_inside_their_bounds():
    torch.manual_seed(0)
    model = Pi0Model(tiny_pi0_config(False))
    with torch.no_grad():
        model.noise_head.weight.normal_(0, 5.0)
        model.noise_head.bias.normal_(0, 5.0)
    out = torch.randn(4, 4, model.expert.config.hidden_size) * 10
    std = model.noise_std(out)
    assert std.min() >= 0.08 - 1e-6 and std.max() <= 0.16 + 1e-6
    assert std.min() < 0.085 and std.max() > 0.155  # the head reaches both ends
    with torch.no_grad():
        model.noise_head.weight.zero_()
        model.noise_head.bias.zero_()
    assert torch.allclose(model.noise_std(out), torch.tensor((0.08 * 0.16) ** 0.5))  # mid log-variance


def test_deterministic_act_is_the_ode_and_independent_of_the_noise_level():
    obs = observation()
    a = tiny_policy(False, noise_level=0.5, seed=3).act(obs, deterministic=True)
    b = tiny_policy(False, noise_level=0.9, seed=3).act(obs, deterministic=True)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("pi05", [False, True])
def test_save_load_round_trip_gives_the_same_actions_and_log_probs(pi05, tmp_path):
    policy = tiny_policy(pi05, seed=4)
    with torch.no_grad():  # move the zero-initialised heads so the round trip covers them
        for p in list(policy.model.value_head.parameters()) + list(policy.model.noise_head.parameters()):
            p.add_(0.1 * torch.randn_like(p))
    obs = observation()
    recorded, log_prob = policy.sample(obs)
    values = policy.values(obs)
    policy.model.save_pretrained(tmp_path / "ckpt")
    loaded = Pi0Model.from_pretrained(tmp_path / "ckpt")
    again = tiny_policy(pi05, seed=4, model=loaded)
    recorded2, log_prob2 = again.sample(obs)
    assert np.array_equal(recorded, recorded2) and np.array_equal(log_prob, log_prob2)
    assert torch.equal(values, again.values(obs))
    assert loaded.config.norm_stats == tiny_norm_stats()
    for k, v in policy.model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


@pytest.mark.parametrize("pi05", [False, True])
def test_openpi_layout_loads_every_tensor(pi05, tmp_path):
    directory = save_tiny_openpi(tmp_path / "openpi", pi05=pi05, seed=5)
    model, report = load_openpi_checkpoint(directory)
    assert model.config.pi05 is pi05
    assert type(load_pi0(directory)) is Pi0Model
    same = Pi0Model.from_pretrained(directory, asset_id="calvin")
    assert all(torch.equal(v, same.state_dict()[k]) for k, v in model.state_dict().items() if k in report.loaded)
    file = load_file(directory / "model.safetensors")
    own = model.state_dict()
    assert report.dropped == (EXPERT_LM_HEAD,)
    assert set(report.fresh) == {k for k in own if k.startswith(("value_head.", "noise_head."))}
    assert set(report.loaded) | set(report.fresh) == set(own)
    assert len(report.loaded) + len(report.dropped) == len(file)  # every file tensor consumed
    emb = "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight"
    assert torch.equal(own[emb], file["paligemma_with_expert.paligemma.lm_head.weight"])
    for k in report.loaded:
        if k != emb:
            assert torch.equal(own[k], file[k]), k
    names = set(file)
    assert ("time_mlp_in.weight" in names) is pi05 and ("state_proj.weight" in names) is not pi05
    if pi05:
        assert "paligemma_with_expert.gemma_expert.model.layers.0.input_layernorm.dense.weight" in names
        assert "paligemma_with_expert.gemma_expert.model.norm.dense.bias" in names
    else:
        assert "action_time_mlp_in.weight" in names
        assert "paligemma_with_expert.gemma_expert.model.layers.0.input_layernorm.weight" in names
    assert model.config.norm_stats == tiny_norm_stats()
    policy = tiny_policy(pi05, model=model)
    recorded, _ = policy.sample(observation(2))
    assert policy.env_actions(recorded).shape == (2, 3, 7)


def test_openpi_layout_errors_name_the_problem(tmp_path):
    directory = save_tiny_openpi(tmp_path / "openpi", seed=6)
    state = load_file(directory / "model.safetensors")
    state.pop("action_out_proj.bias")
    state["stray.weight"] = torch.zeros(2)
    save_file(state, directory / "model.safetensors")
    with pytest.raises(ValueError, match=r"unexpected tensors \['stray.weight'\].*missing tensors "
                                         r"\['action_out_proj.bias'\]"):
        load_openpi_checkpoint(directory)
    state.pop("stray.weight")
    state.pop("state_proj.weight")
    save_file(state, directory / "model.safetensors")
    with pytest.raises(ValueError, match="cannot tell pi0 from pi0.5"):
        load_openpi_checkpoint(directory)
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_openpi_checkpoint(tmp_path)


def test_bad_inputs_give_clear_errors():
    policy = tiny_policy(False)
    model = policy.model
    cache, state = policy._prefix(observation())
    with pytest.raises(ValueError, match=r"noisy actions must be \[B, H, 32\]"):
        model.velocity(cache, state, torch.zeros(3, 4, 7), torch.ones(3))
    with pytest.raises(ValueError, match=r"actions must be \[B, 4, 32\]"):
        model.flow_matching_loss(cache, state, torch.zeros(3, 4, 7))
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        Pi0PolicyConfig(sampler="euler", **PLAY_TABLE)
    with pytest.raises(ValueError, match="ODE is for evaluation"):
        Pi0PolicyConfig(sampler="ode", **PLAY_TABLE)
    with pytest.raises(ValueError, match="exceeds the model's horizon 4"):
        Pi0Policy(model, Pi0PolicyConfig(action_chunk=5, **PLAY_TABLE))
    with pytest.raises(ValueError, match=r"state must be \[B, 15\]"):
        policy.sample({**observation(), "robot_obs": np.zeros((3, 7), np.float32)})
    with pytest.raises(KeyError, match="lacks \\['rgb_gripper'\\]"):
        policy.sample({k: v for k, v in observation().items() if k != "rgb_gripper"})
    with pytest.raises(ValueError, match=r"recorded actions must be \[B, "):
        policy.evaluate(observation(), np.zeros((3, 10), np.float32))
    with pytest.raises(ValueError, match="must match the VLM's num_hidden_layers"):
        tiny_pi0_config(action_expert_variant=dict(width=32, depth=2, mlp_dim=64, num_heads=4, num_kv_heads=1,
                                                   head_dim=16))


def test_pi05_state_tokens():
    bins = discretize_state(torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.999, 1.0, 2.0]))
    assert bins.tolist() == [0, 0, 0, 128, 255, 255, 255]


@pytest.mark.parametrize("pi05", [False, True])
def test_prefix_padding_and_other_samples_do_not_change_the_velocity(pi05):
    """The masks: padded prompt slots and the batch's other samples leave a sample's velocity unchanged, and the
    prefix is read through its KV cache only (one prefix pass serves every denoising step)."""
    torch.manual_seed(0)
    short = Pi0Model(tiny_pi0_config(pi05, max_token_len=160 if pi05 else 32))
    long = Pi0Model(tiny_pi0_config(pi05, max_token_len=200 if pi05 else 48))
    long.load_state_dict(short.state_dict())
    obs = observation(3)
    x, t = torch.randn(3, 4, 32, generator=torch.Generator().manual_seed(2)), torch.tensor([1.0, 0.6, 0.2])
    outs = []
    for model in (short, long):
        policy = tiny_policy(pi05, model=model)
        cache, state = policy._prefix(obs)
        assert cache.mask.shape[1] == 2 * 4 + model.config.max_token_len
        outs.append(model.velocity(cache, state, x, t)[0])
        one, state1 = policy._prefix({k: v[1:2] for k, v in obs.items()})
        assert torch.allclose(model.velocity(one, state1, x[1:2], t[1:2])[0], outs[-1][1:2], atol=1e-5)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


@pytest.mark.parametrize("pi05,billions", [(False, 3.238), (True, 3.353)])
def test_full_size_model_has_openpis_shapes(pi05, billions):
    """openpi's pi0 / pi0.5 (PaliGemma 2B + SigLIP So400m/14 + Gemma-300M expert) built on the meta device: the
    shapes its conversion script writes (q_proj: heads x head_dim by width, one KV head of 256, ...)."""
    with torch.device("meta"):
        model = Pi0Model(Pi0Config(pi05=pi05))
    sd = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    pali, expert = "paligemma_with_expert.paligemma.model.", "paligemma_with_expert.gemma_expert.model."
    assert sd[pali + "language_model.embed_tokens.weight"] == (257152, 2048)
    assert sd[pali + "vision_tower.vision_model.embeddings.patch_embedding.weight"] == (1152, 3, 14, 14)
    assert sd[pali + "vision_tower.vision_model.embeddings.position_embedding.weight"] == (256, 1152)
    assert sd[pali + "vision_tower.vision_model.encoder.layers.26.mlp.fc1.weight"] == (4304, 1152)
    assert sd[pali + "multi_modal_projector.linear.weight"] == (2048, 1152)
    assert sd[pali + "language_model.layers.17.mlp.gate_proj.weight"] == (16384, 2048)
    assert sd[expert + "layers.17.self_attn.q_proj.weight"] == (2048, 1024)
    assert sd[expert + "layers.0.self_attn.k_proj.weight"] == (256, 1024)
    assert sd[expert + "layers.0.mlp.down_proj.weight"] == (1024, 4096)
    assert sd["action_in_proj.weight"] == (1024, 32) and sd["action_out_proj.weight"] == (32, 1024)
    if pi05:
        assert sd[expert + "layers.0.input_layernorm.dense.weight"] == (3072, 1024)
        assert sd["time_mlp_in.weight"] == (1024, 1024) and "state_proj.weight" not in sd
    else:
        assert sd[expert + "layers.0.input_layernorm.weight"] == (1024,)
        assert sd["state_proj.weight"] == (1024, 32) and sd["action_time_mlp_in.weight"] == (1024, 2048)
    n = sum(model.state_dict()[k].numel() for k in sd if not k.startswith(("value_head.", "noise_head.")))
    assert abs(n / 1e9 - billions) < 1e-3
