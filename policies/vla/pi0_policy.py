"""Pi0Policy: a pi0 / pi0.5 model behind the on-policy actor / learner interface of VLAPolicy.

The names and roles are VLAPolicy's (policy.py); what a rollout records differs, since a flow policy's
sample is a denoising chain, not tokens:
* ``sample(obs) -> (recorded [B, 1 + (N+1) H D] float32, log_probs [B, chunk] float32)``. ``recorded`` is
  Flow-SDE's stochastic step k (or -1) followed by the whole chain x_{t_0} .. x_{t_N} (each [H, 32]),
  which is what the learner recomputes the density from (flow_sampling.chain_log_prob, the same
  function the actor called). ``log_probs`` is per executed action (summed over the env's action
  dims); summed over the chunk it is the decision's log-density (Flow-SDE: the one stochastic
  transition; Flow-Noise: the mean of N + 1 terms, flow_sampling.py).
* ``env_actions(recorded) -> [B, chunk, env_action_dim]``: x_{t_N}'s first ``chunk`` actions and env dims,
  un-normalised with the checkpoint's action statistics (pi0: mean/std, pi0.5: quantiles).
* ``evaluate(obs, recorded) -> FlowScores(log_probs [B, chunk], values [B], entropy [B, chunk])`` with
  gradients; ``values(obs)``; ``act(obs, deterministic)`` (deterministic: the ODE sampler, evaluation);
  ``trainable_weights()`` / ``load_weights()``: parameters that require grad (the expert and heads when
  the VLM is frozen; with LoRA on the VLM (lora.add_vlm_lora, `model` a peft model) its adapters too).
* ``recorded_action``, ``recorded_log_prob_shape`` ((chunk,)) and ``action_chunk`` for the rollout actor.

Observations: camera images at ``image_keys`` (uint8 [B, H, W, 3]), the proprio state at ``state_key``
(normalised with the state statistics, zero-padded to 32) and ``instruction`` (strings or zero-padded
UTF-8 bytes; else the config's instruction).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.instruction import decode_instruction
from core.roles import Policy
from policies.vla import flow_sampling as fs
from policies.vla.lora import has_lora
from policies.vla.modeling_pi0 import Pi0Model
from policies.vla.openpi_checkpoint import normalize, unnormalize
from policies.vla.trained_weights import TrainedWeights


@dataclass(frozen=True)
class Pi0Layout:
    """What a pi0 policy reads from an observation: the cameras (in name order, so that every process and a data
    set on disk agree on it), the proprio state entry and its size."""

    image_keys: tuple[str, ...]
    state_key: str
    state_dim: int

    def to_dict(self) -> dict:
        return {**asdict(self), "image_keys": list(self.image_keys)}

    @classmethod
    def from_dict(cls, d: dict) -> "Pi0Layout":
        return cls(tuple(d["image_keys"]), str(d["state_key"]), int(d["state_dim"]))


def pi0_layout(obs_space: Any, state_key: str) -> Pi0Layout:
    """The cameras and the state a pi0 reads from observations of `obs_space` (a gymnasium Dict space)."""
    spaces = getattr(obs_space, "spaces", None)
    if not isinstance(spaces, dict):
        raise ValueError(f"a pi0 policy needs a dict observation (cameras and a state), got the space {obs_space}")
    cameras = sorted(k for k, s in spaces.items()
                     if getattr(s, "dtype", None) == "uint8" and len(getattr(s, "shape", ()) or ()) == 3
                     and s.shape[-1] == 3)
    if not cameras:
        raise ValueError(f"the observation has no camera (uint8 [H, W, 3] entry) for a pi0 policy: {sorted(spaces)}")
    if state_key not in spaces:
        raise ValueError(f"vla.state_key={state_key!r} is not an observation entry; the observation has "
                         f"{sorted(spaces)}")
    shape = tuple(getattr(spaces[state_key], "shape", ()) or ())
    if len(shape) != 1:
        raise ValueError(f"vla.state_key={state_key!r}: the state must be a vector, its space has shape {shape}")
    return Pi0Layout(tuple(cameras), state_key, int(shape[0]))


@dataclass(frozen=True)
class Pi0PolicyConfig:
    # the observation entries read: no default, they are the env's (pi0_layout of its observation space)
    image_keys: tuple[str, ...]
    state_key: str
    sampler: str = "sde"  # rollouts: "sde" (Flow-SDE) or "noise" (Flow-Noise); evaluation always uses the ODE
    num_steps: int = 5
    noise_level: float = 0.5  # Flow-SDE's a
    action_chunk: int = 5  # actions executed per decision, <= the model's horizon
    instruction: str = ""  # when the observation carries none
    train_vlm: bool = False  # False: the prefix is frozen, the expert and heads train

    def __post_init__(self):
        fs.check_sampler(self.sampler)
        if self.sampler == "ode":
            raise ValueError("rollouts need a stochastic sampler (sde or noise); the ODE is for evaluation")
        if self.num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {self.num_steps}")
        if self.sampler == "sde" and self.noise_level <= 0:
            raise ValueError(f"Flow-SDE rollouts need noise_level > 0, got {self.noise_level}")
        if self.action_chunk < 1:
            raise ValueError(f"action_chunk must be >= 1, got {self.action_chunk}")


@dataclass
class FlowScores:
    log_probs: Tensor  # [B, chunk]
    values: Tensor  # [B]
    entropy: Tensor  # [B, chunk]


class Pi0Policy(TrainedWeights, Policy):
    WEIGHTS_OF = "the pi0 policy"

    def __init__(self, model: Pi0Model, cfg: Pi0PolicyConfig, tokenizer=None, device: str = "cpu", seed: int = 0):
        mc = model.config
        if cfg.action_chunk > mc.action_horizon:
            raise ValueError(f"action_chunk {cfg.action_chunk} exceeds the model's horizon {mc.action_horizon}")
        if len(cfg.image_keys) != mc.num_images:
            raise ValueError(f"the model reads {mc.num_images} cameras, image_keys names {len(cfg.image_keys)}")
        self.model, self.cfg, self.tokenizer = model.to(device), cfg, tokenizer
        if not cfg.train_vlm and not has_lora(model):  # with LoRA on the VLM its adapters say what trains there
            model.freeze_vlm()
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        h, d, n = mc.action_horizon, mc.action_dim, cfg.num_steps
        self.chain_shape = (n + 1, h, d)
        self.recorded_action = ((1 + (n + 1) * h * d,), "float32")
        self.recorded_log_prob_shape = (cfg.action_chunk,)
        self.action_chunk = cfg.action_chunk
        valid = torch.zeros(h, d)
        valid[:cfg.action_chunk, :mc.env_action_dim] = 1
        self.valid = valid.to(self.device)
        self.stats = mc.norm_stats

    @property
    def layout(self) -> Pi0Layout:
        """What the policy reads from an observation (saved with its weights)."""
        return Pi0Layout(tuple(self.cfg.image_keys), self.cfg.state_key, self.model.config.state_dim)

    # --- observations ----------------------------------------------------------------------------------------
    def _instructions(self, obs: Any, b: int) -> list[str]:
        instr = obs.get("instruction") if hasattr(obs, "get") else None
        if instr is None:
            return [self.cfg.instruction] * b
        if isinstance(instr, (np.ndarray, Tensor)):  # zero-padded UTF-8 bytes
            return decode_instruction(instr)
        return list(instr)

    def _state(self, obs: Any) -> Tensor:
        mc = self.model.config
        if self.cfg.state_key not in obs:
            raise KeyError(f"the pi0 policy reads the state from observation entry {self.cfg.state_key!r}; the "
                           f"observation has {sorted(obs)}")
        raw = np.asarray(obs[self.cfg.state_key].cpu() if isinstance(obs[self.cfg.state_key], Tensor)
                         else obs[self.cfg.state_key], dtype=np.float32)
        if raw.ndim != 2 or raw.shape[1] != mc.state_dim:
            raise ValueError(f"state must be [B, {mc.state_dim}], got {raw.shape}")
        if self.stats is not None:
            raw = normalize(raw, self.stats["state"], quantile=mc.pi05)
        state = np.zeros((raw.shape[0], mc.action_dim), np.float32)
        state[:, :mc.state_dim] = raw
        return torch.as_tensor(state, device=self.device)

    def _prefix(self, obs: Any):
        missing = [k for k in self.cfg.image_keys if k not in obs]
        if missing:
            raise KeyError(f"the pi0 policy reads cameras {list(self.cfg.image_keys)}; the observation lacks "
                           f"{missing} (has {sorted(obs)})")
        images = [torch.as_tensor(np.asarray(obs[k]), device=self.device) if not isinstance(obs[k], Tensor)
                  else obs[k].to(self.device) for k in self.cfg.image_keys]
        state = self._state(obs)
        embeds, mask = self.model.encode_observation(images, self._instructions(obs, state.shape[0]), state,
                                                     self.tokenizer)
        return self.model.run_prefix(embeds, mask), state

    # --- recorded data ---------------------------------------------------------------------------------------
    def split_recorded(self, recorded) -> tuple[Tensor, Tensor]:
        """recorded [B, 1 + (N+1) H D] -> (step k [B] int64, chain [B, N+1, H, D])."""
        rec = torch.as_tensor(np.asarray(recorded) if not isinstance(recorded, Tensor) else recorded,
                              dtype=torch.float32, device=self.device)
        width = self.recorded_action[0][0]
        if rec.ndim != 2 or rec.shape[1] != width:
            raise ValueError(f"recorded actions must be [B, {width}] (k and a {self.chain_shape} chain), got "
                             f"{tuple(rec.shape)}")
        return rec[:, 0].round().long(), rec[:, 1:].reshape(-1, *self.chain_shape)

    def _sample(self, obs: Any, sampler: str) -> tuple[fs.FlowChain, Any, Tensor]:
        cache, state = self._prefix(obs)
        b = state.shape[0]
        noise = torch.randn(b, *self.chain_shape[1:], generator=self.generator, device=self.device)
        fn = self.model.velocity_fn(cache, state, with_noise=sampler == "noise")
        return fs.sample_chain(fn, noise, self.cfg.num_steps, sampler, self.cfg.noise_level, self.generator), cache, \
            state

    def _score(self, cache, state, step: Tensor, chain: Tensor) -> tuple[Tensor, Tensor]:
        fn = self.model.velocity_fn(cache, state, with_noise=self.cfg.sampler == "noise")
        log_prob, entropy = fs.chain_log_prob(fn, chain, step, self.cfg.sampler, self.cfg.num_steps, self.valid,
                                              self.cfg.noise_level)
        c = self.cfg.action_chunk
        return log_prob[:, :c], entropy[:, :c]

    # --- the interface ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, obs: Any) -> tuple[np.ndarray, np.ndarray]:
        out, cache, state = self._sample(obs, self.cfg.sampler)
        log_prob, _ = self._score(cache, state, out.step, out.chain)
        recorded = torch.cat([out.step[:, None].float(), out.chain.flatten(1)], 1)
        return recorded.cpu().numpy(), log_prob.float().cpu().numpy()

    def env_actions(self, recorded) -> np.ndarray:
        _, chain = self.split_recorded(recorded)
        mc = self.model.config
        actions = chain[:, -1, :self.cfg.action_chunk, :mc.env_action_dim].cpu().numpy()
        if self.stats is not None:
            actions = unnormalize(actions, self.stats["actions"], quantile=mc.pi05)
        return actions.astype(np.float32)

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = False) -> np.ndarray:
        out, _, _ = self._sample(obs, "ode" if deterministic else self.cfg.sampler)
        return self.env_actions(torch.cat([out.step[:, None].float(), out.chain.flatten(1)], 1))

    def evaluate(self, obs: Any, recorded) -> FlowScores:
        step, chain = self.split_recorded(recorded)
        cache, state = self._prefix(obs)
        log_prob, entropy = self._score(cache, state, step, chain)
        return FlowScores(log_prob, self.model.value(cache, state), entropy)

    def group_log_probs(self, log_probs: Tensor, level: str) -> Tensor:
        """Per-action log-densities [B, chunk] at a PPO ratio's level: "action" as they are, "chunk" [B] their sum
        (the decision's log-density). A flow policy has no tokens."""
        if level == "action":
            return log_probs
        if level == "chunk":
            return log_probs.sum(-1)
        raise ValueError(f"a pi0 policy's log-probs are per action: the ratio level must be 'action' or 'chunk', "
                         f"got {level!r}")

    def flow_matching_loss(self, obs: Any, actions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The flow-matching loss (Pi0Model.flow_matching_loss) of normalised, padded target actions [B, H, 32] at
        these observations, with gradients (SFT, learner/sft.py)."""
        cache, state = self._prefix(obs)
        return self.model.flow_matching_loss(cache, state, actions.to(self.device), generator=generator)

    def set_norm_stats(self, stats: dict | None) -> None:
        """The state / action statistics the policy normalises and un-normalises with (kept in the model's config
        too, so that save_pretrained writes them)."""
        self.stats = stats
        self.model.config.norm_stats = stats

    @torch.no_grad()
    def values(self, obs: Any) -> Tensor:
        cache, state = self._prefix(obs)
        return self.model.value(cache, state).float()
