"""LoRA on a pi0's VLM (policies/vla/lora.py's add_vlm_lora, `vla.lora`): what trains and how much, gradients
reaching the adapters, and save -> load -> merge giving the same actions and log-probs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.calvin.play_table import observation_space
from learner.vla_checkpoint import load_vla, save_vla
from policies.vla.build import build_vla_policy
from policies.vla.config import VLAConfig
from policies.vla.lora import parameter_counts

pytest.importorskip("peft")

TINY = dict(model="tiny_pi0", action_chunk=5, pi0_horizon=5, logprob_type="action", instruction="open the drawer",
            state_key="robot_obs")
SPACE = observation_space(16, 16)  # the play table's cameras and state


def observation(b: int = 2, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"rgb_static": rng.integers(0, 256, (b, 16, 16, 3), dtype=np.uint8),
            "rgb_gripper": rng.integers(0, 256, (b, 16, 16, 3), dtype=np.uint8),
            "robot_obs": rng.normal(size=(b, 15)).astype(np.float32),
            "instruction": ["open the drawer", "turn on the green light"][:b]}


def test_lora_trains_adapters_on_the_vlm_beside_the_expert_and_counts_them():
    frozen = build_vla_policy(VLAConfig(**TINY, lora=False), "cpu", 0, obs_space=SPACE)
    lora = build_vla_policy(VLAConfig(**TINY, lora=True, lora_rank=4, lora_alpha=8), "cpu", 0, obs_space=SPACE)
    before, after = parameter_counts(frozen.model), parameter_counts(lora.model)
    # the same base, the expert and heads trained in full in both; the adapters are the only addition
    assert after["trained"] == before["trained"] > 0 and before["lora"] == 0
    assert after["total"] == before["total"] + after["lora"]
    names = [n for n, p in lora.model.named_parameters() if p.requires_grad]
    adapted = {n.split(".lora_")[0] for n in names if ".lora_" in n}
    assert adapted and all(".paligemma.model." in n for n in adapted)  # on the VLM only, never the expert
    assert any("language_model" in n for n in adapted) and any("vision_tower" in n for n in adapted)
    assert any("multi_modal_projector" in n for n in adapted)
    # a LoRA pair per adapted linear: rank x (in + out) weights
    mods = dict(lora.model.named_modules())
    expected = sum(4 * (mods[n].base_layer.in_features + mods[n].base_layer.out_features) for n in adapted)
    assert after["lora"] == expected
    print(f"tiny pi0: trained {before['trained']:,}; LoRA r=4 adds {after['lora']:,} on the VLM; total {after['total']:,}")
    # the adapters start at B = 0: the LoRA policy is the base policy
    obs = observation()
    for policy in (frozen, lora):
        policy.generator.manual_seed(3)
    np.testing.assert_array_equal(frozen.act(obs, deterministic=True), lora.act(obs, deterministic=True))
    # a flow-matching loss reaches the adapters (B first: A gets gradient once B is non-zero) and the expert
    target = torch.randn(2, 5, 32)
    lora.flow_matching_loss(obs, target, generator=torch.Generator().manual_seed(0)).backward()
    grads = {n: p.grad for n, p in lora.model.named_parameters() if p.requires_grad}
    assert any(".lora_B." in n and g is not None and g.abs().max() > 0 for n, g in grads.items())
    assert any("gemma_expert" in n and ".lora_" not in n and g is not None and g.abs().max() > 0
               for n, g in grads.items())
    assert all(p.grad is None for n, p in lora.model.named_parameters() if not p.requires_grad)


def test_lora_and_a_fully_trained_vlm_exclude_each_other():
    from core.config import ConfigError
    from launch.run_config import load_config
    with pytest.raises(ConfigError, match="choose one"):
        load_config("calvin_ppo_pi0_sde", ["logging.wandb=disabled", "vla.lora=true", "vla.train_vlm=true"])


def test_saved_adapters_load_and_merge_into_the_same_policy(tmp_path):
    cfg = VLAConfig(**TINY, lora=True, lora_rank=4, lora_alpha=8)
    policy = build_vla_policy(cfg, "cpu", 0, obs_space=SPACE)
    # trained-looking adapters and expert: random B (so the merge changes the VLM's weights), a nudged expert
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in policy.model.named_parameters():
            if p.requires_grad and (".lora_B." in n or "gemma_expert" in n):
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    obs = observation()
    policy.generator.manual_seed(5)
    recorded, log_probs = policy.sample(obs)
    path = save_vla(policy, cfg, tmp_path / "ckpt", label="s1")
    saved = load_vla(path)
    assert any(".lora_A." in n for n in saved.weights) and any("gemma_expert" in n for n in saved.weights)
    loaded = build_vla_policy(cfg, "cpu", 9, saved=saved)
    merged = build_vla_policy(cfg, "cpu", 9, saved=saved, merge_lora=True)
    assert not any(".lora_" in n for n, _ in merged.model.named_parameters())
    with torch.no_grad():
        exact = loaded.evaluate(obs, recorded)
        m = merged.evaluate(obs, recorded)
    # the loaded adapter policy recomputes the saved policy's log-probs exactly (ratio 1)
    np.testing.assert_array_equal(exact.log_probs.numpy(), log_probs)
    # merging folds B A into the weights: the same function up to float32 rounding (measured: log-probs of size 5.7
    # within 9.5e-7, ODE actions within 4.5e-7)
    assert np.abs(m.log_probs.numpy() - log_probs).max() < 1e-4
    assert torch.allclose(m.values, exact.values, atol=1e-5)
    for p in (policy, loaded, merged):
        p.generator.manual_seed(7)
    a = policy.act(obs, deterministic=True)
    np.testing.assert_array_equal(loaded.act(obs, deterministic=True), a)
    assert np.abs(merged.act(obs, deterministic=True) - a).max() < 1e-5
    # the merged model's VLM differs from the base (the adapters were not zero)
    base = build_vla_policy(VLAConfig(**TINY, lora=False), "cpu", 0, obs_space=SPACE)
    name = "paligemma_with_expert.paligemma.model.language_model.layers.0.self_attn.q_proj.weight"
    assert (dict(merged.model.named_parameters())[name] - dict(base.model.named_parameters())[name]).abs().max() > 0


def test_an_sft_base_without_adapters_takes_fresh_ones(tmp_path):
    base_cfg = VLAConfig(**TINY, lora=False)
    sft = build_vla_policy(base_cfg, "cpu", 0, obs_space=SPACE)
    with torch.no_grad():
        for n, p in sft.model.named_parameters():
            if p.requires_grad:
                p.add_(0.01)
    saved = load_vla(save_vla(sft, base_cfg, tmp_path / "sft", label="s1"))
    rl = build_vla_policy(VLAConfig(**TINY, lora=True, lora_rank=4, lora_alpha=8), "cpu", 0, saved=saved)
    obs = observation()
    for p in (sft, rl):
        p.generator.manual_seed(2)
    np.testing.assert_array_equal(rl.act(obs, deterministic=True), sft.act(obs, deterministic=True))
    assert any(".lora_" in n for n in rl.trainable_weights())
