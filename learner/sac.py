"""Soft Actor-Critic with a Q ensemble (REDQ-style targets), one learner step per call.

Read `SAC.update` top to bottom: critic updates on each batch, then one actor
and one temperature update, then Polyak averaging of the targets.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
import torch.nn.functional as F

from core import tree
from learner.configs import SACConfig
from policies.sac_agent import SACAgent


def concat_batches(observations: list):
    """Observations of several batches (tensors or dicts of tensors) -> one batch."""
    return tree.map(lambda *parts: torch.cat(parts), *observations)


def split_batches(precomputed, parts: int) -> list:
    """Inverse of concat_batches for what an encoder's precompute returned (None stays None)."""
    if precomputed is None:
        return [None] * parts
    return [tree.map(lambda v: v.chunk(parts)[i], precomputed) for i in range(parts)]


def _leaves(tree) -> list[torch.Tensor]:
    """The tensors of a (nested) list/dict of tensors, in a fixed order."""
    if isinstance(tree, dict):
        return [t for k in sorted(tree) for t in _leaves(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [t for x in tree for t in _leaves(x)]
    return [tree]


def _clone(tree):
    if isinstance(tree, dict):
        return {k: _clone(v) for k, v in tree.items()}
    return tree.clone()


def _inverse_softplus(x: float) -> float:
    return float(torch.log(torch.expm1(torch.tensor(x))))


class SAC:
    """The SAC update. `batches` are dicts of tensors already on the learner's device."""

    def __init__(self, agent: SACAgent, action_dim: int, cfg: SACConfig, device: torch.device, amp: str = "none"):
        self.agent, self.cfg, self.device, self.amp = agent, cfg, device, amp
        self.target_entropy = -float(action_dim) if cfg.target_entropy is None else float(cfg.target_entropy)
        self.graphed = bool(cfg.cuda_graph) and device.type == "cuda"
        if cfg.tf32_matmul and device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # process-wide: the learner process owns its GPU work
        # alpha = softplus(raw): always positive, and gradients do not vanish near zero as with exp.
        self.raw_alpha = torch.tensor(_inverse_softplus(cfg.init_temperature), device=device, requires_grad=True)
        trainable_encoder = [p for p in agent.encoder.parameters() if p.requires_grad]
        # Fused Adam: one kernel per step, and it can skip a step on the device itself (see _step). In a CUDA
        # graph it must be capturable (its step count lives on the device).
        adam = {"fused": True, "capturable": self.graphed}
        self.critic_opt = torch.optim.Adam(list(agent.critic.parameters()) + trainable_encoder, lr=cfg.critic_lr,
                                           **adam)
        self.actor_opt = torch.optim.Adam(agent.actor.parameters(), lr=cfg.actor_lr, **adam)
        self.alpha_opt = torch.optim.Adam([self.raw_alpha], lr=cfg.temperature_lr, **adam)
        # Updates dropped because a loss or gradient was not finite, counted on the device (no host sync).
        self._skipped = torch.zeros((), device=device)
        # CUDA graph state (cuda_graph): eager warm-up steps left, then the graph, its input buffers and outputs.
        self._warmup_left = 3
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._static_batches: list[dict] = []
        self._static_out: tuple[list[str], torch.Tensor] = ([], torch.zeros(0))

    @property
    def skipped_updates(self) -> int:
        return int(self._skipped.item())

    @property
    def alpha(self) -> torch.Tensor:
        return F.softplus(self.raw_alpha)

    def update(self, batches: list[dict]) -> dict[str, float]:
        """One learner step: len(batches) critic updates, then one actor and one temperature update."""
        names, values = self._graphed_update(batches) if self.graphed else self._update(batches)
        # One device-to-host transfer for all metrics, instead of a GPU sync per number.
        return dict(zip(names, values.tolist()))

    def _update(self, batches: list[dict]) -> tuple[list[str], torch.Tensor]:
        """The learner step on the device, without a host sync: (metric names, their values as one tensor)."""
        cfg, agent = self.cfg, self.agent
        metrics: dict[str, float] = {}
        if "obs_maps" in batches[0]:
            # The frozen backbone's maps came with the batch (sac.stored_features: computed once per stored frame).
            observations = [b["obs"] for b in batches] + [b["next_obs"] for b in batches]
            features = [b["obs_maps"] for b in batches] + [b["next_obs_maps"] for b in batches]
        else:
            # Augment every image once, then run the frozen backbone ONCE over all observations and next
            # observations of all batches: one large pass keeps the GPU busy where many small ones would not.
            observations = [self._augment(b["obs"]) for b in batches] + [self._augment(b["next_obs"]) for b in batches]
            with self._autocast():
                features = split_batches(agent.encoder.precompute(concat_batches(observations)), len(observations))
        for i, batch in enumerate(batches):
            obs, next_obs = observations[i], observations[len(batches) + i]
            pre, next_pre = features[i], features[len(batches) + i]

            # Critic: regress every head on r + gamma * (min over a random subset of target heads).
            with torch.no_grad(), self._autocast():
                next_action, next_logp = agent.actor(agent.encoder(next_obs, next_pre))
                # A uniformly random subset of heads (randperm's equal, written with ops a CUDA graph can hold).
                subset = torch.rand(cfg.num_q, device=self.device).argsort()[: cfg.num_min_q]
                next_q = agent.target_critic(agent.target_encoder(next_obs, next_pre), next_action)
                next_q = next_q[subset].min(0).values.float()
                if cfg.backup_entropy:
                    next_q = next_q - self.alpha * next_logp.float()
                not_done = 1.0 - batch["terminated"].float()  # truncation still bootstraps
                target = batch["reward"].float() + cfg.gamma * not_done * next_q
            with self._autocast():
                q = agent.critic(agent.encoder(obs, pre), batch["action"].float()).float()
            critic_loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(1).sum()
            metrics["train/critic/grad_norm"] = self._step(self.critic_opt, critic_loss)
            metrics["train/critic/q_loss"] = critic_loss.detach()
            metrics["train/critic/q_mean"] = q.detach().mean()

        # Actor: maximise Q - alpha * log pi on the last batch, with features detached from the encoder.
        with self._autocast():
            features = agent.encoder(obs, pre).detach()
            action, logp = agent.actor(features)
            q_pi = agent.critic(features, action).float()
        logp = logp.float()
        q_pi = q_pi.mean(0) if cfg.actor_q == "mean" else q_pi.min(0).values
        actor_loss = (self.alpha.detach() * logp - q_pi).mean()
        metrics["train/actor/grad_norm"] = self._step(self.actor_opt, actor_loss)
        metrics["train/actor/policy_loss"] = actor_loss.detach()
        metrics["train/actor/entropy"] = -logp.detach().mean()

        # Temperature: move the policy's entropy toward the target entropy.
        alpha_loss = (self.alpha * (-logp.detach() - self.target_entropy)).mean()
        self._step(self.alpha_opt, alpha_loss)
        metrics["train/alpha"] = self.alpha.detach()

        self._polyak(agent.critic, agent.target_critic)
        self._polyak(agent.encoder, agent.target_encoder)
        metrics["train/skipped_updates"] = self._skipped
        return list(metrics), torch.stack([v.float().reshape(()) for v in metrics.values()])

    def _graphed_update(self, batches: list[dict]) -> tuple[list[str], torch.Tensor]:
        """The learner step as one CUDA graph: copy the batches into the graph's input buffers and replay it.

        Warm-up steps first run eagerly on a side stream (as PyTorch asks before a capture: lazy
        initialisation, optimiser state, compilation), then one step is captured, which runs nothing, and
        replayed. Random numbers stay fresh on every replay: CUDA's generator advances its offset per replay.
        """
        if self._graph is None:
            if self._warmup_left > 0:
                self._warmup_left -= 1
                side, current = torch.cuda.Stream(self.device), torch.cuda.current_stream(self.device)
                side.wait_stream(current)
                with torch.cuda.stream(side):
                    out = self._update(batches)
                current.wait_stream(side)
                return out
            self._capture(batches)
        flat_static, flat_new = _leaves(self._static_batches), _leaves(batches)
        if len(flat_static) != len(flat_new) or any(a.shape != b.shape for a, b in zip(flat_static, flat_new)):
            raise ValueError("a CUDA-graphed SAC update needs batches of the shapes it was captured with")
        for static, new in zip(flat_static, flat_new):
            static.copy_(new)
        self._graph.replay()
        return self._static_out

    def _capture(self, batches: list[dict]) -> None:
        self._static_batches = [_clone(b) for b in batches]
        for opt in (self.critic_opt, self.actor_opt, self.alpha_opt):
            opt.zero_grad(set_to_none=True)  # gradients are then allocated inside the graph's memory pool
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the batch fetcher's thread keeps copying the next batches (pinned memory, its own
        # allocations) while this thread captures; in the default "global" mode those calls would be refused.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self._static_out = self._update(self._static_batches)
        self._graph = graph

    def _autocast(self):
        """bf16 autocast on the GPU when configured; losses and optimiser state stay fp32."""
        if not (self.amp == "bf16" and self.device.type == "cuda"):
            return contextlib.nullcontext()
        # A CUDA graph must not rely on autocast's cache of cast weights (it is emptied after the capture).
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, cache_enabled=not self.graphed)

    def _step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
        """Backward and step, unless the gradient is NaN/Inf: then skip, count and keep the weights.

        A NaN/Inf loss always yields a non-finite gradient norm, so one check covers both. The check stays on
        the device: fused Adam skips its whole step (moments and step count included) when the optimiser's
        ``found_inf`` tensor is non-zero, the mechanism torch's GradScaler uses. Asking the host instead
        (``if not torch.isfinite(norm)``) would stall the CPU on the GPU six times per learner step.
        """
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        found_inf = (~torch.isfinite(norm)).float()
        optimizer.found_inf = found_inf
        optimizer.step()
        self._skipped += found_inf
        return norm.detach()

    @torch.no_grad()
    def _polyak(self, online: torch.nn.Module, target: torch.nn.Module) -> None:
        online_params = [p for p in online.parameters() if p.requires_grad]
        target_params = [t for p, t in zip(online.parameters(), target.parameters()) if p.requires_grad]
        if online_params:
            torch._foreach_lerp_(target_params, online_params, self.cfg.tau)

    def _augment(self, obs):
        """DrQ random shift of every uint8 image in a dict observation; vectors pass through."""
        if not isinstance(obs, dict) or self.cfg.augment_pad <= 0:
            return obs
        from learner.augment import random_shift

        return {k: random_shift(v, pad=self.cfg.augment_pad) if v.dtype == torch.uint8 and v.dim() == 4 else v
                for k, v in obs.items()}

    def state_dict(self) -> dict:
        return {"agent": self.agent.state_dict(), "raw_alpha": self.raw_alpha.detach().clone(),
                "critic_opt": self.critic_opt.state_dict(), "actor_opt": self.actor_opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict(), "skipped_updates": self.skipped_updates}

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        with torch.no_grad():
            self.raw_alpha.copy_(state["raw_alpha"])
        for name in ("critic_opt", "actor_opt", "alpha_opt"):
            # A saved group's settings replace the optimiser's own, and checkpoints written before the
            # optimisers were fused say fused=False: keep them fused, or the step would refuse found_inf.
            saved = state[name]
            groups = [{**g, "fused": True, "foreach": None, "capturable": self.graphed} for g in saved["param_groups"]]
            getattr(self, name).load_state_dict({**saved, "param_groups": groups})
        self._skipped.fill_(int(state["skipped_updates"]))
        # The optimisers' state tensors were replaced: a graph captured before points at the old ones.
        self._graph = None
