"""Pi0Model: pi0 and pi0.5 flow-matching VLAs on transformers' Gemma and SigLIP classes.

Structure, with the tensor names of openpi's PyTorch port (openpi_checkpoint.py loads its files):
* ``paligemma_with_expert.paligemma.model.vision_tower.vision_model`` (SiglipVisionModel), ``.multi_modal_projector.linear``
  (vision width -> LM width) and ``.language_model`` (GemmaModel): the VLM prefix. Image tokens (one
  camera after another) then language tokens, scaled by sqrt(width) as Gemma embeds text; the prefix
  attends bidirectionally within itself and never to the actions.
* ``paligemma_with_expert.gemma_expert.model`` (GemmaModel without its token embedding): the action
  expert, as deep as the VLM and with its head width and KV heads, but narrower. Its suffix tokens
  attend to the prefix's keys/values layer by layer (the prefix is run once per observation and its
  per-layer KV cache reused for every denoising step) and to each other.
* ``action_in_proj`` (32 -> expert width) and ``action_out_proj`` (back to 32 velocity dims).
* pi0: ``state_proj`` embeds the (normalised, zero-padded to 32) state as one suffix token before the
  H action tokens; the state token sees the prefix and itself, the action tokens see everything. The
  flow time enters each action token through ``action_time_mlp_in`` (concat of the action embedding
  and the sinusoidal time embedding, 2w -> w), swish, ``action_time_mlp_out``.
* pi0.5: no state token (the state sits in the prefix as discretised tokens, ``discretize_state``);
  the time embedding goes through ``time_mlp_in``, swish, ``time_mlp_out``, swish, and conditions
  every RMSNorm of the expert (``AdaptiveRMSNorm``: a dense layer gives scale, shift and a gate of
  the residual branch; tensors ``...layernorm.dense.weight/bias``, ``model.norm.dense.*``).
* zarl's additions (not in openpi's files): ``value_head`` (pi0: on the mean of the action-expert
  outputs; pi0.5: on the mean of the prefix outputs; input detached when ``value_detach``) and
  ``noise_head`` (Flow-Noise: per action dim log-variance squashed by tanh into
  [log 0.08^2, log 0.16^2]).

Sinusoidal time embedding as openpi: periods from 4e-3 to 4 (geometric), sin then cos halves.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import GemmaModel, PreTrainedModel, SiglipVisionModel
from transformers.models.gemma.modeling_gemma import apply_rotary_pos_emb

from policies.vla import flow_sampling as fs
from policies.vla.configuration_pi0 import Pi0Config
from policies.vla.openpi_checkpoint import LoadReport, load_state_into, read_openpi_checkpoint
from policies.vla.value_head import ValueHead

STATE_BINS = 256


def sinusoidal_time_embedding(t: Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> Tensor:
    if dim % 2:
        raise ValueError(f"the time embedding width must be even, got {dim}")
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64, device=t.device)
    period = min_period * (max_period / min_period) ** fraction
    angle = (2 * math.pi / period)[None, :] * t.double()[:, None]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1).to(torch.float32)


def discretize_state(state: Tensor) -> Tensor:
    """pi0.5's state tokens: a state normalised to [-1, 1] cut into 256 equal bins, ids 0..255 (clipped)."""
    edges = torch.linspace(-1, 1, STATE_BINS + 1, device=state.device)[:-1]
    return (torch.bucketize(state.contiguous(), edges, right=True) - 1).clamp(0, STATE_BINS - 1)


def pi05_prompt(instruction: str, state_bins: list[int]) -> str:
    """openpi's pi0.5 text prompt: the task, then the discretised state as numbers, then the answer cue."""
    task = instruction.strip().replace("_", " ").replace("\n", " ")
    return f"Task: {task}, State: {' '.join(str(int(b)) for b in state_bins)};\nAction: "


def _to_pixels(images: Tensor, size: int) -> Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, size, size] in [-1, 1]."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"camera images must be uint8 [B, H, W, 3], got {images.dtype} {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class AdaptiveRMSNorm(nn.Module):
    """RMSNorm whose scale, shift and residual gate come from a condition (pi0.5's time): x_n (1 + scale) + shift."""

    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.dense = nn.Linear(cond_dim, 3 * dim)
        nn.init.zeros_(self.dense.weight)  # identity scale and zero gate at initialisation

    def forward(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        scale, shift, gate = self.dense(cond).unsqueeze(1).float().chunk(3, dim=-1)
        return (normed * (1 + scale) + shift).to(x.dtype), gate.to(x.dtype)


def _norm(module: nn.Module, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor | None]:
    if isinstance(module, AdaptiveRMSNorm):
        return module(x, cond)
    return module(x), None


def _gated(residual: Tensor, branch: Tensor, gate: Tensor | None) -> Tensor:
    return residual + branch if gate is None else residual + branch * gate


def _attention(attn: nn.Module, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """SDPA with grouped KV heads repeated; mask bool [B, 1, Tq, Tk]; -> [B, Tq, heads * head_dim]."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def _qkv(attn: nn.Module, h: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    b, t, _ = h.shape
    q = attn.q_proj(h).view(b, t, -1, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(h).view(b, t, -1, attn.head_dim).transpose(1, 2)
    v = attn.v_proj(h).view(b, t, -1, attn.head_dim).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    return q, k, v


@dataclass
class PrefixCache:
    keys: list[Tensor]  # per layer [B, kv_heads, L, head_dim] (after RoPE)
    values: list[Tensor]
    mask: Tensor  # [B, L] bool, true on real tokens
    hidden: Tensor  # [B, L, width]: the VLM's final-norm outputs

    @property
    def length(self) -> Tensor:
        return self.mask.sum(-1)


class _Namespace(nn.Module):
    """A bare container, so submodules sit under openpi's names (``paligemma.model.vision_tower`` ...)."""


class Pi0Model(PreTrainedModel):
    config_class = Pi0Config
    base_model_prefix = "pi0"
    main_input_name = "noisy_actions"
    _no_split_modules: list[str] = []

    def __init__(self, config: Pi0Config):
        super().__init__(config)
        vlm_cfg, expert_cfg = config.vlm_config, config.expert_config
        width, ew, d = vlm_cfg.hidden_size, expert_cfg.hidden_size, config.action_dim
        self.paligemma_with_expert = _Namespace()
        pali = self.paligemma_with_expert.paligemma = _Namespace()
        pali.model = _Namespace()
        if config.prefix == "paligemma":
            vision = config.siglip_config
            # transformers 5 names SiglipVisionModel's tensors without the inner ``vision_model.`` that openpi's
            # files (transformers 4.53) have; the container puts it back.
            pali.model.vision_tower = _Namespace()
            pali.model.vision_tower.vision_model = SiglipVisionModel(vision)
            pali.model.multi_modal_projector = _Namespace()
            pali.model.multi_modal_projector.linear = nn.Linear(vision.hidden_size, width)
        for cfg in (vlm_cfg, expert_cfg):
            cfg._attn_implementation = "sdpa"
        pali.model.language_model = GemmaModel(vlm_cfg)
        if config.prefix != "paligemma":
            pali.model.language_model.embed_tokens = None  # the small prefix embeds its own inputs
        self.paligemma_with_expert.gemma_expert = _Namespace()
        expert = GemmaModel(expert_cfg)
        expert.embed_tokens = None  # the expert reads embedded actions, never token ids
        if config.pi05:
            for layer in expert.layers:
                layer.input_layernorm = AdaptiveRMSNorm(ew, ew, expert_cfg.rms_norm_eps)
                layer.post_attention_layernorm = AdaptiveRMSNorm(ew, ew, expert_cfg.rms_norm_eps)
            expert.norm = AdaptiveRMSNorm(ew, ew, expert_cfg.rms_norm_eps)
        self.paligemma_with_expert.gemma_expert.model = expert
        self.action_in_proj = nn.Linear(d, ew)
        self.action_out_proj = nn.Linear(ew, d)
        if config.pi05:
            self.time_mlp_in, self.time_mlp_out = nn.Linear(ew, ew), nn.Linear(ew, ew)
        else:
            self.state_proj = nn.Linear(d, ew)
            self.action_time_mlp_in, self.action_time_mlp_out = nn.Linear(2 * ew, ew), nn.Linear(ew, ew)
        self.value_head = ValueHead(width if config.pi05 else ew, config.value_head_hidden)
        self.noise_head = nn.Linear(ew, d)
        nn.init.zeros_(self.noise_head.weight)  # starts at the middle of the std bounds
        nn.init.zeros_(self.noise_head.bias)
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """A local directory saved by this class, or one in openpi's PyTorch layout (its config.json has no
        ``model_type``; openpi_checkpoint.py reads it, ``asset_id`` picks its norm statistics)."""
        config = Path(pretrained_model_name_or_path) / "config.json"
        if config.is_file() and json.loads(config.read_text()).get("model_type") != Pi0Config.model_type:
            if cls is not Pi0Model:
                raise ValueError(f"{pretrained_model_name_or_path} is in openpi's layout: load it with "
                                 f"Pi0Model.from_pretrained, not {cls.__name__}")
            return load_openpi_checkpoint(pretrained_model_name_or_path, kwargs.pop("asset_id", None), **kwargs)[0]
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def _init_weights(self, module):
        # Modules initialise themselves (PyTorch defaults, zeroed adaptive-norm / value / noise layers); weights come
        # from a checkpoint when one is loaded.
        pass

    # --- parts -----------------------------------------------------------------------------------------------
    @property
    def language_model(self) -> GemmaModel:
        return self.paligemma_with_expert.paligemma.model.language_model

    @property
    def expert(self) -> GemmaModel:
        return self.paligemma_with_expert.gemma_expert.model

    @property
    def horizon(self) -> int:
        return self.config.action_horizon

    def freeze_vlm(self) -> Pi0Model:
        """Freeze the prefix (vision tower, projector, VLM): the setting where only the expert and heads train."""
        self.paligemma_with_expert.paligemma.requires_grad_(False)
        return self

    # --- prefix ----------------------------------------------------------------------------------------------
    def embed_images(self, pixel_values: Tensor) -> Tensor:
        """SigLIP tokens projected to the LM: float [B, 3, S, S] in [-1, 1] -> [B, patches, width]."""
        model = self.paligemma_with_expert.paligemma.model
        return model.multi_modal_projector.linear(model.vision_tower.vision_model(pixel_values=pixel_values).last_hidden_state)

    def embed_prefix(self, pixel_values: Tensor, image_mask: Tensor, tokens: Tensor,
                     token_mask: Tensor) -> tuple[Tensor, Tensor]:
        """openpi's prefix: images [B, n_images, 3, S, S] (float in [-1, 1]; image_mask [B, n_images] false for a
        missing camera) then prompt token ids [B, T] (token_mask [B, T]) -> embeddings [B, L, width], mask [B, L]."""
        if self.config.prefix != "paligemma":
            raise ValueError("embed_prefix embeds SigLIP images and Gemma tokens; this model's prefix is "
                             f"{self.config.prefix!r}")
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values must be [B, n_images, 3, S, S], got {tuple(pixel_values.shape)}")
        b, n = pixel_values.shape[:2]
        images = self.embed_images(pixel_values.flatten(0, 1)).unflatten(0, (b, n))
        img_mask = image_mask.bool()[:, :, None].expand(b, n, images.shape[2]).reshape(b, -1)
        lm = self.language_model
        text = F.embedding(tokens, lm.embed_tokens.weight) * math.sqrt(lm.config.hidden_size)
        return torch.cat([images.flatten(1, 2), text.to(images.dtype)], 1), torch.cat([img_mask, token_mask.bool()], 1)

    def encode_observation(self, images: list[Tensor], instructions: list[str], state: Tensor,
                           tokenizer=None) -> tuple[Tensor, Tensor]:
        """Env observations -> prefix embeddings and mask: uint8 camera images [B, H, W, 3] (resized to the SigLIP
        size, scaled to [-1, 1]; openpi pads to a square before resizing, which changes nothing for CALVIN's square
        cameras), instructions tokenised as openpi does (pi0: BOS, text, newline; pi0.5: BOS and
        ``pi05_prompt`` with the discretised normalised state), padded / cut to ``max_token_len``."""
        if tokenizer is None:
            raise ValueError("the PaliGemma prefix needs a tokenizer for the instructions")
        if len(images) != self.config.num_images:
            raise ValueError(f"the model reads {self.config.num_images} camera images, got {len(images)}")
        size = self.config.siglip_config.image_size
        pixels = torch.stack([_to_pixels(im, size) for im in images], 1)
        b = pixels.shape[0]
        if self.config.pi05:
            bins = discretize_state(state[:, :self.config.state_dim]).tolist()
            prompts = [pi05_prompt(s, bins[i]) for i, s in enumerate(instructions)]
        else:
            prompts = [s.strip().replace("_", " ").replace("\n", " ") + "\n" for s in instructions]
        n = self.config.max_token_len
        tokens = torch.zeros(b, n, dtype=torch.long)
        mask = torch.zeros(b, n, dtype=torch.bool)
        for i, p in enumerate(prompts):
            ids = tokenizer(p, add_special_tokens=False)["input_ids"]
            ids = ([tokenizer.bos_token_id] + ids)[:n]
            tokens[i, :len(ids)], mask[i, :len(ids)] = torch.tensor(ids), True
        dev = pixels.device
        return self.embed_prefix(pixels, torch.ones(b, len(images), dtype=torch.bool, device=dev), tokens.to(dev),
                                 mask.to(dev))

    def run_prefix(self, embeds: Tensor, mask: Tensor) -> PrefixCache:
        """The VLM over the prefix (bidirectional over its real tokens): per-layer keys/values and final outputs."""
        lm = self.language_model
        mask = mask.bool()
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        cos, sin = lm.rotary_emb(embeds, positions)
        attn_mask = mask[:, None, None, :]
        h, keys, values = embeds, [], []
        for layer in lm.layers:
            x = layer.input_layernorm(h)
            q, k, v = _qkv(layer.self_attn, x, cos, sin)
            keys.append(k)
            values.append(v)
            h = h + layer.self_attn.o_proj(_attention(layer.self_attn, q, k, v, attn_mask))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return PrefixCache(keys, values, mask, lm.norm(h))

    # --- suffix ----------------------------------------------------------------------------------------------
    def _suffix(self, state: Tensor | None, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor | None, int]:
        """Suffix embeddings, the adaptive-norm condition (pi0.5) and how many leading state tokens there are."""
        ew = self.expert.config.hidden_size
        actions = self.action_in_proj(x_t)
        temb = sinusoidal_time_embedding(t, ew).to(actions.dtype)
        if self.config.pi05:
            cond = F.silu(self.time_mlp_out(F.silu(self.time_mlp_in(temb))))
            return actions, cond, 0
        if state is None:
            raise ValueError("pi0 embeds the state as a suffix token: give the (normalised, padded) state [B, 32]")
        mixed = torch.cat([actions, temb[:, None, :].expand_as(actions)], dim=-1)
        tokens = self.action_time_mlp_out(F.silu(self.action_time_mlp_in(mixed)))
        return torch.cat([self.state_proj(state.to(actions.dtype))[:, None], tokens], 1), None, 1

    def run_expert(self, cache: PrefixCache, suffix: Tensor, cond: Tensor | None, n_state: int) -> Tensor:
        """The expert over suffix tokens [B, S, w] reading the prefix cache; -> final outputs [B, S, w]."""
        expert = self.expert
        b, s = suffix.shape[:2]
        positions = cache.length[:, None] + torch.arange(s, device=suffix.device)[None]
        cos, sin = expert.rotary_emb(suffix, positions)
        # state token(s) see the prefix and themselves; action tokens see the prefix, the state and each other
        own = torch.ones(s, s, dtype=torch.bool, device=suffix.device)
        own[:n_state, n_state:] = False
        attn_mask = torch.cat([cache.mask[:, None, :].expand(b, s, -1), own[None].expand(b, s, s)], -1)[:, None]
        h = suffix
        for i, layer in enumerate(expert.layers):
            x, gate = _norm(layer.input_layernorm, h, cond)
            q, k, v = _qkv(layer.self_attn, x, cos, sin)
            k, v = torch.cat([cache.keys[i], k], 2), torch.cat([cache.values[i], v], 2)
            h = _gated(h, layer.self_attn.o_proj(_attention(layer.self_attn, q, k, v, attn_mask)), gate)
            x, gate = _norm(layer.post_attention_layernorm, h, cond)
            h = _gated(h, layer.mlp(x), gate)
        return _norm(expert.norm, h, cond)[0]

    def velocity(self, cache: PrefixCache, state: Tensor | None, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """v(x_t, t) [B, H, 32] and the expert's outputs at the action tokens [B, H, w]."""
        if x_t.ndim != 3 or x_t.shape[-1] != self.config.action_dim:
            raise ValueError(f"noisy actions must be [B, H, {self.config.action_dim}] (padded to action_dim), got "
                             f"{tuple(x_t.shape)}")
        suffix, cond, n_state = self._suffix(state, x_t, t)
        out = self.run_expert(cache, suffix, cond, n_state)[:, n_state:]
        return self.action_out_proj(out).float(), out

    def noise_std(self, expert_out: Tensor) -> Tensor:
        """Flow-Noise's std [B, H, 32]: log-variance = lo + (hi - lo) (tanh(head) + 1) / 2, inside the bounds."""
        lo, hi = self.config.noise_logvar_bounds
        logvar = lo + (hi - lo) * 0.5 * (torch.tanh(self.noise_head(expert_out).float()) + 1)
        return torch.exp(0.5 * logvar)

    def velocity_fn(self, cache: PrefixCache, state: Tensor | None, with_noise: bool = False) -> fs.VelocityFn:
        def fn(x: Tensor, t: Tensor):
            v, out = self.velocity(cache, state, x, t)
            return v, (self.noise_std(out) if with_noise else None)
        return fn

    # --- value and loss --------------------------------------------------------------------------------------
    def value(self, cache: PrefixCache, state: Tensor | None) -> Tensor:
        """V [B]. pi0.5: the mean of the prefix outputs over real tokens. pi0: the mean of the expert's action
        outputs at t = 1 with x = 0 (the noise's mean), so that V depends on the observation only."""
        if self.config.pi05:
            m = cache.mask[..., None].to(cache.hidden.dtype)
            feat = (cache.hidden * m).sum(1) / m.sum(1).clamp(min=1)
        else:
            b = cache.mask.shape[0]
            x = torch.zeros(b, self.horizon, self.config.action_dim, device=cache.hidden.device)
            feat = self.velocity(cache, state, x, torch.ones(b, device=x.device))[1].mean(1)
        return self.value_head(feat.detach() if self.config.value_detach else feat)

    def flow_matching_loss(self, cache: PrefixCache, state: Tensor | None, actions: Tensor,
                           generator: torch.Generator | None = None, noise: Tensor | None = None,
                           t: Tensor | None = None) -> Tensor:
        """MSE between v(x_t, t) and eps - a over the env's action dims (the padding is excluded), for normalised
        actions [B, H, 32]."""
        b = actions.shape[0]
        if actions.ndim != 3 or actions.shape[1:] != (self.horizon, self.config.action_dim):
            raise ValueError(f"actions must be [B, {self.horizon}, {self.config.action_dim}] (padded), got "
                             f"{tuple(actions.shape)}")
        if noise is None:
            noise = torch.randn(actions.shape, generator=generator, device=actions.device)
        if t is None:
            t = fs.sample_flow_time(b, generator, actions.device)
        x_t, u = fs.flow_matching_targets(actions, noise, t)
        v, _ = self.velocity(cache, state, x_t, t)
        e = self.config.env_action_dim
        return F.mse_loss(v[..., :e], u[..., :e])


def load_openpi_checkpoint(directory: str | Path, asset_id: str | None = None,
                           **config_overrides) -> tuple[Pi0Model, LoadReport]:
    """Pi0Model from an openpi PyTorch checkpoint directory (openpi_checkpoint.py reads it), with what was loaded,
    dropped and left fresh."""
    config, state = read_openpi_checkpoint(directory, asset_id, **config_overrides)
    model = Pi0Model(config)
    report = load_state_into(model, state)
    return model.eval(), report
