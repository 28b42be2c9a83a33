"""The networks of a SAC agent, and the acting policy that actors run."""
from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from core.roles import Policy
from policies.build import build_encoder
from policies.config import PolicyConfig
from policies.networks import QEnsemble, TanhGaussianActor, as_tensors


class SACAgent(nn.Module):
    """Encoder + actor + Q ensemble, plus target copies of the encoder and the critic.

    One encoder serves actor and critic. It is trained through the critic loss
    only: the actor reads detached features (as in SERL and DrQ), so the actor's
    objective cannot drag the representation toward over-estimated Q values.
    """

    def __init__(self, obs_space: gym.Space, action_dim: int, policy_cfg: PolicyConfig, num_q: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = build_encoder(policy_cfg.encoder, obs_space, seed=seed)
        hidden = list(policy_cfg.hidden)
        style = {"layer_norm": policy_cfg.layer_norm, "activation": policy_cfg.activation}
        self.actor = TanhGaussianActor(self.encoder.out_dim, action_dim, hidden,
                                       policy_cfg.log_std_min, policy_cfg.log_std_max, **style)
        self.critic = QEnsemble(self.encoder.out_dim, action_dim, hidden, num_q, **style)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)

    def compile_networks(self, mode: str | None = None) -> list[str]:
        """torch.compile every network an update runs, in place and for fixed shapes; returns their names.

        In place (``Module.compile``), so parameter names, checkpoints and published weights stay as they
        are. The encoders' parts are compiled one by one (the frozen backbone runs in ``precompute``, not in
        ``forward``); parts without parameters (the state encoder) are left alone. ``mode``: torch.compile's
        (None = its default; benchmarks/sac_update_speed.py also measures "reduce-overhead").
        """
        targets = {"actor": self.actor, "critic": self.critic, "target_critic": self.target_critic}
        for prefix, encoder in (("encoder", self.encoder), ("target_encoder", self.target_encoder)):
            for name, child in encoder.named_children():
                parts = child.items() if isinstance(child, nn.ModuleDict) else [("", child)]
                for key, module in parts:
                    if any(True for _ in module.parameters()):
                        targets[".".join(x for x in (prefix, name, key) if x)] = module
        for module in targets.values():
            module.compile(dynamic=False, mode=mode)  # dynamic shapes recompiled badly on torch 2.11 + H100
        return list(targets)

    def acting_weights(self) -> dict[str, torch.Tensor]:
        """What an actor needs to act: encoder and actor parameters and buffers."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(("encoder.", "actor."))}


class SACPolicy(Policy):
    """The acting half of a SAC agent, on the actor's own device."""

    def __init__(self, obs_space: gym.Space, action_space: gym.spaces.Box, policy_cfg: PolicyConfig, device: str,
                 seed: int = 0):
        action_dim = int(np.prod(action_space.shape))
        agent = SACAgent(obs_space, action_dim, policy_cfg, num_q=1, seed=seed)
        # Only the acting parts live in the actor process.
        self.encoder = agent.encoder.to(device).eval()
        self.actor = agent.actor.to(device).eval()
        self.device = torch.device(device)

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = False) -> np.ndarray:
        obs_t = as_tensors(obs, self.device)
        features = self.encoder(obs_t, self.encoder.precompute(obs_t))
        action, _ = self.actor(features, deterministic=deterministic)
        return action.float().cpu().numpy()

    @torch.no_grad()
    def start_act(self, obs: Any):
        """On a GPU: queue the forward pass and an asynchronous copy of the actions into pinned host memory, and
        return at once; the returned function waits for that copy. Elsewhere: act now."""
        if self.device.type != "cuda":
            return super().start_act(obs)
        obs_t = as_tensors(obs, self.device)
        action, _ = self.actor(self.encoder(obs_t, self.encoder.precompute(obs_t)))
        host = torch.empty(action.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(action.float(), non_blocking=True)
        done = torch.cuda.Event()
        done.record()

        def result() -> np.ndarray:
            done.synchronize()
            return host.numpy()
        return result

    def load_weights(self, weights: dict) -> None:
        for prefix, module in (("encoder.", self.encoder), ("actor.", self.actor)):
            state = {k[len(prefix):]: torch.as_tensor(np.array(v)) for k, v in weights.items() if k.startswith(prefix)}
            missing, unexpected = module.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(f"weights do not fit the {prefix[:-1]}: missing {missing}, unexpected {unexpected}")
