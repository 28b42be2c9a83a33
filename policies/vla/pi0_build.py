"""Which pi0 class a config or a directory asks for: openpi's layout (openpi_checkpoint.py), or a Pi0Model /
SmallPi0 that this project saved with save_pretrained (config.json with ``model_type`` "zarl_pi0"); and the
Pi0Policy a `vla` config section (policies/vla/config.py, model tiny_pi0 / tiny_pi05 / small_pi0 / small_pi05 /
pi0) asks for, in the rollout actors, the learner, SFT and the evaluator alike.

What the policy reads from an observation (``Pi0Layout``: its cameras, the proprio state entry and its size) comes
from the env's observation space, in one place (pi0_policy.pi0_layout, called here): the cameras are every uint8 [H, W, 3]
entry, in name order; the state is the entry ``vla.state_key`` names (a float vector of at most 32 dims). The
layout is saved with the trained weights, so a checkpoint is rebuilt the same way without an env at hand."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from policies.vla.config import VLAConfig
from policies.vla.configuration_pi0 import Pi0Config
from policies.vla.modeling_pi0 import Pi0Model
from policies.vla.pi0_policy import Pi0Layout, pi0_layout


def policy_layout(cfg: VLAConfig, obs_space: Any = None, saved=None) -> Pi0Layout:
    """The layout from the env's observation space, else the one saved with the weights; both given: they agree."""
    from_space = pi0_layout(obs_space, cfg.state_key) if obs_space is not None else None
    from_saved = Pi0Layout.from_dict(saved.layout) if saved is not None and saved.layout is not None else None
    if from_space is None and from_saved is None:
        raise ValueError("a pi0 policy reads its cameras and state size from the env's observation space: build it "
                         "with the env's observation space (obs_space=), or from weights saved with a layout "
                         "(vla.init_from)")
    if from_space is not None and from_saved is not None and from_space != from_saved:
        raise ValueError(f"the VLA weights in {saved.path} were trained on observations {from_saved.to_dict()}, this "
                         f"env gives {from_space.to_dict()}")
    return from_space or from_saved


def build_pi0(config: Pi0Config) -> Pi0Model:
    if config.prefix == "small":
        from policies.vla.small_pi0 import SmallPi0

        return SmallPi0(config)
    return Pi0Model(config)


def load_pi0(directory: str | Path, asset_id: str | None = None, **openpi_overrides) -> Pi0Model:
    """A pi0 / pi0.5 from a local directory in either layout; `openpi_overrides`: zarl's own config fields
    (state_dim, num_images, ...) for a checkpoint in openpi's layout, which does not hold them."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no config.json: not a pi0 checkpoint")
    if json.loads(path.read_text()).get("model_type") != Pi0Config.model_type:
        return Pi0Model.from_pretrained(directory, asset_id=asset_id, **openpi_overrides)  # openpi's layout
    config = Pi0Config.from_pretrained(directory)
    if config.prefix == "small":
        from policies.vla.small_pi0 import SmallPi0

        return SmallPi0.from_pretrained(directory)
    return Pi0Model.from_pretrained(directory)


def build_pi0_model(cfg: VLAConfig, layout: Pi0Layout):
    """(model, tokenizer or None) for a `vla` section with a pi0 model (policies/vla/config.py's PI0_MODELS),
    reading `layout`'s cameras and state."""
    import torch

    sizes = dict(state_dim=layout.state_dim, num_images=len(layout.image_keys))
    if cfg.model in ("tiny_pi0", "tiny_pi05"):
        from policies.vla.tiny_checkpoints import tiny_tokenizer
        from policies.vla.tiny_pi0 import TINY_VOCAB, tiny_pi0_config

        torch.manual_seed(cfg.model_seed)  # the same random weights in every process
        model = Pi0Model(tiny_pi0_config(cfg.model == "tiny_pi05", cfg.pi0_horizon, **sizes))
        # A tiny random model is random in every layer, its value head's last one too (a fresh head's is zero):
        # a random policy never earns the play table's sparse reward, and a non-constant V(s) is then what makes
        # the GAE advantages non-zero, so a CPU-size run takes real policy-gradient steps through the pipeline.
        torch.nn.init.normal_(model.value_head.mlp[-1].weight, std=0.5)
        return model, tiny_tokenizer(TINY_VOCAB)
    if cfg.model in ("small_pi0", "small_pi05"):
        from policies.vla.small_pi0 import small_pi0_config

        torch.manual_seed(cfg.model_seed)
        config = small_pi0_config(cfg.model == "small_pi05", horizon=cfg.pi0_horizon,
                                  small={"image_size": cfg.small_image_size,
                                         "pretrained_image_encoder": cfg.small_pretrained}, **sizes)
        return build_pi0(config), None  # SmallPi0 tokenises with MiniLM's own WordPiece
    if cfg.model == "pi0":
        if not cfg.checkpoint:
            raise ValueError("vla.model=pi0 needs vla.checkpoint: a directory in openpi's PyTorch layout or saved by "
                             "this project")
        model = load_pi0(cfg.checkpoint, **sizes)
        found = {k: getattr(model.config, k) for k in sizes}
        if found != sizes:
            raise ValueError(f"vla.checkpoint={cfg.checkpoint} reads {found['num_images']} cameras and a "
                             f"{found['state_dim']}-dim state; the env gives {sizes['num_images']} cameras "
                             f"{list(layout.image_keys)} and a {sizes['state_dim']}-dim {layout.state_key!r}")
        if model.config.prefix == "small":
            return model, None
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(cfg.checkpoint)
        except (OSError, ValueError) as e:
            raise ValueError(f"vla.checkpoint={cfg.checkpoint}: the PaliGemma prefix needs its tokenizer in that "
                             f"directory ({e})") from e
        return model, tokenizer
    raise ValueError(f"vla.model={cfg.model!r} is not a pi0 model")


def build_pi0_policy(cfg: VLAConfig, device: str, seed: int, saved=None, merge_lora: bool = False,
                     obs_space=None):
    """The Pi0Policy a `vla` section asks for, reading the cameras and state of `obs_space` (the env's; else the
    layout saved with `saved`); `saved` (policies/vla/saved.py): trained weights and statistics
    that replace the fresh ones (`vla.init_from`). `seed` drives the sampling noise (and LoRA's random A, which
    the learner's first published weights overwrite in every actor).

    ``vla.lora``: LoRA adapters on the VLM prefix (lora.add_vlm_lora, rank ``lora_rank``, ``lora_alpha``), the
    alternative to the frozen VLM; the expert and heads train in full either way. Saved weights without
    adapters (an SFT run with the VLM frozen or trained in full) load into the base model before the fresh
    adapters go on; saved adapters load after. `merge_lora`: the adapters merged into the VLM's weights (peft's
    merge_and_unload), as a deployed model runs."""
    import torch

    from policies.vla.lora import LoRASettings, add_vlm_lora
    from policies.vla.pi0_policy import Pi0Policy, Pi0PolicyConfig

    layout = policy_layout(cfg, obs_space, saved)
    model, tokenizer = build_pi0_model(cfg, layout)
    pcfg = Pi0PolicyConfig(sampler=cfg.sampler, num_steps=cfg.num_steps, noise_level=cfg.noise_level,
                           action_chunk=cfg.action_chunk, instruction=cfg.instruction, train_vlm=cfg.train_vlm,
                           image_keys=layout.image_keys, state_key=layout.state_key)

    def policy_of(m):
        return Pi0Policy(m, pcfg, tokenizer=tokenizer, device=device, seed=seed)

    def load(policy):
        if saved.norm_stats is not None:
            policy.set_norm_stats(saved.norm_stats)
        policy.load_weights(saved.weights)

    policy = policy_of(model)
    saved_adapters = saved is not None and saved_has_lora(saved.weights)
    if saved is not None and not saved_adapters:
        load(policy)
    if cfg.lora:
        torch.manual_seed(seed)
        policy = policy_of(add_vlm_lora(policy.model, LoRASettings(rank=cfg.lora_rank, alpha=cfg.lora_alpha)))
    if saved_adapters:
        load(policy)
    if merge_lora and cfg.lora:
        policy = policy_of(policy.model.merge_and_unload())
    return policy


def saved_has_lora(weights: dict) -> bool:
    return any(".lora_" in name for name in weights)
