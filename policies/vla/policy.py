"""VLAPolicy: what the on-policy actors and learner call on a VLA.

It follows ActorCriticPolicy's contract (core.roles.Policy): ``sample`` gives what a rollout
records, here the action token ids [B, chunk * action_dim] and their per-token log-probabilities
(sum them per action or per chunk for a PPO ratio, RLinf's ``logprob_type``); ``env_actions`` turns
recorded tokens into the env's actions [B, chunk, action_dim] (decoded bin centres, un-normalised
with the data set's q01/q99 when the model has statistics); ``act`` does both. On the learner,
``evaluate`` recomputes the log-probabilities, entropies and values of recorded tokens with
gradients, in one pass. ``trainable_weights``/``load_weights`` move only what training changes
(LoRA adapters and the value head when LoRA is on), which is what the learner publishes.

Observations: a dict with ``image`` (uint8 [B, H, W, 3]; another key with ``image_key``, e.g. a
ManiSkill env's ``base_camera``) and optionally ``instruction``: a list of B strings, or the
ManiSkill backend's zero-padded UTF-8 bytes (uint8 [B, L]); without it the config's instruction is
used for every env. So the rollout actors pass the env's observations as they are.

For the rollout actor (actors/rollout_actor.py) the policy declares what a rollout records:
``recorded_action`` (int64 token ids [n_tokens]), ``recorded_log_prob_shape`` (per token) and
``action_chunk`` (env steps per decision).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from core.instruction import decode_instruction
from core.roles import Policy
from policies.vla import autoregressive, parallel
from policies.vla.action_tokenizer import ActionStats
from policies.vla.autoregressive import Decoded
from policies.vla.lora import unwrap
from policies.vla.modeling_openvla import position_ids_of
from policies.vla.prompt import prompt_token_ids
from policies.vla.sampling import SamplingConfig
from policies.vla.trained_weights import TrainedWeights

DECODERS = {"autoregressive": autoregressive, "parallel": parallel}


@dataclass(frozen=True)
class VLAPolicyConfig:
    decoding: str = "autoregressive"  # "autoregressive" (OpenVLA) or "parallel" (OpenVLA-OFT)
    action_dim: int = 7
    action_chunk: int = 1  # actions per decode; OFT: 8
    temperature: float = 1.0
    top_k: int | None = None
    instruction: str = "put the object on the plate"
    image_key: str = "image"  # the observation entry holding the camera image

    def __post_init__(self):
        if self.decoding not in DECODERS:
            raise ValueError(f"decoding must be one of {', '.join(DECODERS)}, got {self.decoding!r}")
        if self.action_dim < 1 or self.action_chunk < 1:
            raise ValueError(f"action_dim and action_chunk must be >= 1, got {self.action_dim}, {self.action_chunk}")
        if self.decoding == "autoregressive" and self.action_chunk != 1:
            raise ValueError("autoregressive decoding gives one action per decode: action_chunk must be 1")
        SamplingConfig(self.temperature, self.top_k)

    @property
    def n_tokens(self) -> int:
        return self.action_dim * self.action_chunk


LOG_PROB_LEVELS = ("token", "action", "chunk")


def group_log_probs(log_probs: Tensor, action_dim: int, level: str) -> Tensor:
    """Per-token log-probabilities [B, chunk * action_dim] summed to the level a PPO ratio is taken at (RLinf's
    ``logprob_type``): "token" [B, n] as they are, "action" [B, chunk], "chunk" [B]."""
    if level not in LOG_PROB_LEVELS:
        raise ValueError(f"log-prob level must be one of {', '.join(LOG_PROB_LEVELS)}, got {level!r}")
    if log_probs.shape[-1] % action_dim:
        raise ValueError(f"{log_probs.shape[-1]} tokens are not a whole number of {action_dim}-D actions")
    if level == "token":
        return log_probs
    per_action = log_probs.reshape(*log_probs.shape[:-1], -1, action_dim).sum(-1)
    return per_action if level == "action" else per_action.sum(-1)


PromptEncoder = Callable[[Tensor, list[str]], tuple[Tensor, Tensor]]


class VLAPolicy(TrainedWeights, Policy):
    """A VLA model (possibly a PeftModel) with its prompt encoder, decoding and action statistics."""

    def __init__(self, model: nn.Module, encode_prompts: PromptEncoder, cfg: VLAPolicyConfig, device: str = "cpu",
                 action_stats: ActionStats | None = None, seed: int = 0):
        self.model, self.encode_prompts, self.cfg = model.to(device), encode_prompts, cfg
        self.device = torch.device(device)
        self.sampling = SamplingConfig(cfg.temperature, cfg.top_k)
        self.decoder = DECODERS[cfg.decoding]
        self.action_stats = action_stats
        if action_stats is not None and len(action_stats.q01) != cfg.action_dim:
            raise ValueError(f"action statistics have {len(action_stats.q01)} dims, the policy {cfg.action_dim}")
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.recorded_action = ((cfg.n_tokens,), "int64")
        self.recorded_log_prob_shape = (cfg.n_tokens,)
        self.action_chunk = cfg.action_chunk

    @property
    def vla(self) -> nn.Module:
        return unwrap(self.model)

    def _prompts(self, obs: Any) -> tuple[Tensor, Tensor]:
        key = self.cfg.image_key
        if key not in obs:
            raise KeyError(f"the VLA policy reads its image from observation entry {key!r} (vla.image_key); the "
                           f"observation has {sorted(obs)}")
        image = obs[key]
        images = image.to(self.device) if isinstance(image, Tensor) else torch.as_tensor(np.asarray(image),
                                                                                           device=self.device)
        instructions = obs.get("instruction")
        if instructions is None:
            instructions = [self.cfg.instruction] * images.shape[0]
        elif isinstance(instructions, (np.ndarray, Tensor)):  # UTF-8 bytes, zero-padded (core/instruction.py)
            instructions = decode_instruction(instructions)
        return self.encode_prompts(images, list(instructions))

    @torch.no_grad()
    def values(self, obs: Any) -> Tensor:
        """V(obs) [B] (float32), without gradients: the value head at the last prompt token. Both decoders read the
        value there, where the prompt attends causally, so no action tokens are needed."""
        embeds, mask = self._prompts(obs)
        vla = self.vla
        hidden = vla.hidden_states(embeds, mask, position_ids_of(mask), use_cache=False).last_hidden_state
        return vla.value(hidden[:, -1]).float()

    def decode(self, obs: Any, greedy: bool = False) -> Decoded:
        embeds, mask = self._prompts(obs)
        return self.decoder.generate(self.vla, embeds, mask, self.cfg.n_tokens, self.sampling, self.generator, greedy)

    @torch.no_grad()
    def sample(self, obs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Action tokens [B, n_tokens] (int64) and their per-token log-probabilities [B, n_tokens] (float32)."""
        out = self.decode(obs)
        return out.tokens.cpu().numpy(), out.log_probs.cpu().numpy()

    def group_log_probs(self, log_probs: Tensor, level: str) -> Tensor:
        """This policy's per-token log-probs summed to a PPO ratio's level (group_log_probs)."""
        return group_log_probs(log_probs, self.cfg.action_dim, level)

    def env_actions(self, tokens: np.ndarray) -> np.ndarray:
        """Recorded tokens [B, n_tokens] -> env actions [B, action_chunk, action_dim] (float32)."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != self.cfg.n_tokens:
            raise ValueError(f"tokens must be [B, {self.cfg.n_tokens}], got shape {tokens.shape}")
        actions = self.vla.action_tokenizer.decode(tokens).reshape(len(tokens), self.cfg.action_chunk,
                                                                   self.cfg.action_dim)
        if self.action_stats is not None:
            actions = self.action_stats.unnormalize(actions)
        return actions.astype(np.float32)

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = False) -> np.ndarray:
        return self.env_actions(self.decode(obs, greedy=deterministic).tokens.cpu().numpy())

    def evaluate(self, obs: Any, tokens: Tensor) -> Decoded:
        """Log-probabilities [B, n], entropies [B, n] and values [B] of recorded tokens, with gradients."""
        embeds, mask = self._prompts(obs)
        return self.decoder.score(self.vla, embeds, mask, torch.as_tensor(tokens, device=self.device), self.sampling)



def openvla_prompt_encoder(model: nn.Module, tokenizer) -> PromptEncoder:
    """OpenVLA's inputs: the image through the backbone's preprocessing, the prompt through the tokenizer."""
    def encode(images: Tensor, instructions: list[str]) -> tuple[Tensor, Tensor]:
        vla = unwrap(model)
        return vla.embed_prompts(vla.pixel_values(images), prompt_token_ids(tokenizer, instructions))

    return encode
