"""Builds the VLAPolicy a `vla` config section (policies/vla/config.py) asks for: in the rollout actors and in
the learner alike, so both hold the same model (random base weights come from `vla.model_seed`, the trained
part is what the learner publishes)."""
from __future__ import annotations

import torch

from policies.vla.config import VLAConfig, is_pi0
from policies.vla.lora import LoRASettings, add_lora
from policies.vla.policy import VLAPolicy, VLAPolicyConfig, openvla_prompt_encoder
from policies.vla.saved import SavedVLA, check_fits


def build_vla_model(cfg: VLAConfig):
    """(model before LoRA, its tokenizer (None for SmallVLA, which tokenises itself), action statistics or None)."""
    if cfg.model == "small":
        from policies.vla.small_vla import SmallVLA, SmallVLAConfig

        model = SmallVLA(SmallVLAConfig(image_size=cfg.small_image_size, hidden=cfg.small_hidden,
                                        layers=cfg.small_layers, heads=cfg.small_heads,
                                        intermediate=2 * cfg.small_hidden,
                                        pretrained_image_encoder=cfg.small_pretrained, seed=cfg.model_seed))
        return model, None, None
    from policies.vla.modeling_openvla import OpenVLAForActionPrediction

    if cfg.model == "tiny_openvla":
        from policies.vla.tiny_checkpoints import tiny_openvla_config, tiny_tokenizer

        torch.manual_seed(cfg.model_seed)
        config = tiny_openvla_config(hidden=cfg.tiny_hidden, layers=cfg.tiny_layers, image_size=cfg.tiny_image_size)
        model, tokenizer = OpenVLAForActionPrediction(config), tiny_tokenizer(config.text_vocab_size)
    elif cfg.model == "openvla":
        if not cfg.checkpoint:
            raise ValueError("vla.model=openvla needs vla.checkpoint: a directory in OpenVLA-7B's layout")
        from transformers import AutoTokenizer

        model = OpenVLAForActionPrediction.from_pretrained(cfg.checkpoint)
        tokenizer = AutoTokenizer.from_pretrained(cfg.checkpoint)
    else:
        raise ValueError(f"vla.model must be one of tiny_openvla, openvla, small; got {cfg.model!r}")
    return model, tokenizer, model.action_stats() if model.config.norm_stats else None


def build_vla_policy(cfg: VLAConfig, device: str, seed: int, merge_lora: bool = False,
                     saved: SavedVLA | None = None, obs_space=None) -> VLAPolicy:
    """The policy on `device`; `seed` drives only its action sampling (and LoRA's random A, which the learner's
    first published weights overwrite in every actor). `saved`: trained weights and action statistics that
    replace the fresh ones (`vla.init_from`, read by learner/vla_checkpoint.py's build_policy). `merge_lora`: the
    adapters merged into the base weights (peft's merge_and_unload), as a deployed model runs; nothing is
    trainable then. `obs_space`: the env's observation space; a pi0 reads its cameras and state size from it
    (policies/vla/pi0_build.py), the token VLAs read `vla.image_key`."""
    if cfg.init_from and saved is None:
        raise ValueError(f"vla.init_from={cfg.init_from}: build the policy with learner/vla_checkpoint.py's "
                         "build_policy, which reads it")
    if is_pi0(cfg.model):
        from policies.vla.pi0_build import build_pi0_policy, saved_has_lora

        if saved is not None:
            # weights saved without adapters take fresh ones when this config asks for LoRA (RL with LoRA on an SFT
            # base); saved adapters need the same LoRA
            fresh_lora = cfg.lora and not saved_has_lora(saved.weights)
            check_fits(saved, cfg, ignore=("lora", "lora_rank", "lora_alpha") if fresh_lora else ())
        return build_pi0_policy(cfg, device, seed, saved=saved, merge_lora=merge_lora, obs_space=obs_space)
    base, tokenizer, stats = build_vla_model(cfg)
    if saved is not None:
        check_fits(saved, cfg)
        stats = saved.action_stats if saved.action_stats is not None else stats
    model = base
    if cfg.lora:
        torch.manual_seed(seed)
        model = add_lora(base, LoRASettings(rank=cfg.lora_rank, alpha=cfg.lora_alpha))
    policy_cfg = VLAPolicyConfig(decoding=cfg.decoding, action_chunk=cfg.action_chunk, temperature=cfg.temperature,
                                 top_k=cfg.top_k, instruction=cfg.instruction, image_key=cfg.image_key)

    def policy_of(model) -> VLAPolicy:
        # SmallVLA embeds its own prompts (peft injects the adapters into `base` in place); OpenVLA's go through
        # its tokenizer
        encoder = base.embed_prompts if tokenizer is None else openvla_prompt_encoder(model, tokenizer)
        return VLAPolicy(model, encoder, policy_cfg, device=device, action_stats=stats, seed=seed)

    policy = policy_of(model)
    if saved is not None:
        policy.load_weights(saved.weights)
    if merge_lora and cfg.lora:
        policy = policy_of(policy.model.merge_and_unload())
    return policy
