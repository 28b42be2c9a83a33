"""Proximal Policy Optimisation: the update on one on-policy rollout.

`PPO.prepare` turns a rollout (layout in replay/rollout_store.py) into flat training tensors:
values of the rollout's states from the critic as it was when the actors acted, GAE advantages
with time-outs bootstrapped (learner/gae.py). `PPO.update` is the clipped-surrogate update itself,
CleanRL style: one function, top to bottom.

Why the learner, not the actors, computes the values: the actors then carry only the policy (for
pixel observations the critic is a whole second network), the values come from one large batched
pass instead of one small pass per env step, and they are exactly the values of the weights the
update starts from. The behaviour log-probabilities do come from the actors: they describe what
actually chose the actions.
"""
from __future__ import annotations

import collections

import torch
import torch.nn.functional as F
from torch import nn

from core import tree
from learner.configs import PPOConfig
from learner.distributed import SINGLE, Ranks
from learner.gae import compute_gae
from policies.actor_critic import ActorCritic


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; the Gaussian's log-std is not decayed (decay would pull the policy's std towards 1)."""
    decayed = [p for n, p in model.named_parameters() if n != "log_std"]
    rest = [p for n, p in model.named_parameters() if n == "log_std"]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, eps=1e-5)


def learning_rate(base_lr: float, schedule: str, progress: float) -> float:
    if schedule == "constant":
        return base_lr
    if schedule == "linear":
        return base_lr * max(0.0, 1.0 - progress)
    raise ValueError(f"lr_schedule must be 'constant' or 'linear', not '{schedule}'")


@torch.no_grad()
def values_of(model: ActorCritic, obs, batch: int) -> torch.Tensor:
    n = len(tree.leaves(obs)[0])
    if n == 0:
        return torch.zeros(0, device=next(model.parameters()).device)
    return torch.cat([model.value(model.features(tree.map(lambda a: a[i:i + batch], obs)))
                      for i in range(0, n, batch)])


def ratio_loss(log_prob: torch.Tensor, behaviour_log_prob: torch.Tensor, advantage: torch.Tensor, clip: float,
               clip_high: float | None = None, dual_clip: float = 0.0) -> tuple[torch.Tensor, dict]:
    """PPO's clipped policy objective on log-probabilities (a loss: minimise it), with its diagnostics.

    The ratio is to the policy that acted (the log-probabilities the actors recorded), taken in fp32: a
    bf16 log-prob difference rounds small policy changes to a ratio of exactly 1. Asymmetric clipping
    (RLinf's clip_ratio_low/high): ratio in [1 - clip, 1 + clip_high]. Dual clip (Ye et al. 2020; RLinf's
    clip_ratio_c, 3.0 there): with a negative advantage the loss is capped at -dual_clip * advantage, so a
    huge ratio on a bad action cannot dominate; 0 = off. `advantage` broadcasts against the log-probs (a
    VLA's per-token ratios share their step's advantage).
    """
    clip_high = clip if clip_high is None else clip_high
    log_ratio = log_prob.float() - behaviour_log_prob.float()
    ratio = log_ratio.exp()
    advantage = advantage.float()
    clipped_ratio = ratio.clamp(1 - clip, 1 + clip_high)
    per_element = -torch.min(ratio * advantage, clipped_ratio * advantage)
    if dual_clip > 0:
        per_element = torch.where(advantage < 0, torch.min(per_element, -dual_clip * advantage), per_element)
    loss = per_element.mean()
    return loss, {"train/actor/policy_loss": loss, "train/actor/approx_kl": ((ratio - 1) - log_ratio).mean(),
                  "train/actor/clip_fraction": ((ratio < 1 - clip) | (ratio > 1 + clip_high)).float().mean(),
                  "train/actor/clipped_ratio": clipped_ratio.mean(),
                  # the dead-signal alarm's input (learner/alarms.py): exactly 0 when nothing moved the policy
                  "train/actor/ratio_max_dev": (ratio - 1).abs().max()}


def clipped_surrogate(dist, action: torch.Tensor, behaviour_log_prob: torch.Tensor, advantage: torch.Tensor,
                      clip: float, clip_high: float | None = None) -> tuple[torch.Tensor, dict]:
    """ratio_loss of a torch distribution's log-probabilities of the recorded actions."""
    return ratio_loss(dist.log_prob(action), behaviour_log_prob, advantage, clip, clip_high)


def clipped_value_loss(value: torch.Tensor, old_value: torch.Tensor, target: torch.Tensor, huber_delta: float,
                       value_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Huber loss; with value clipping, the worse of the free and the clipped prediction. Returns (loss, the
    fraction of rows where the clipped one was worse)."""
    value, old_value, target = value.float(), old_value.float(), target.float()
    free = F.huber_loss(value, target, delta=huber_delta, reduction="none")
    if value_clip <= 0:
        return free.mean(), torch.zeros((), device=value.device)
    clipped = old_value + (value - old_value).clamp(-value_clip, value_clip)
    clipped_loss = F.huber_loss(clipped, target, delta=huber_delta, reduction="none")
    return torch.max(free, clipped_loss).mean(), (clipped_loss > free).float().mean()


MAXIMA = ("train/actor/ratio_max_dev",)  # the per-minibatch statistics that are maxima, not means over rows


def mean_metrics(history: dict) -> dict[str, float]:
    """Per-minibatch diagnostics -> their means; ratio_max_dev is the maximum, over minibatches after the first
    (the first of an update has ratio 1 by construction). Absent when the update had one gradient step."""
    metrics = {k: torch.stack(v).float().mean().item() for k, v in history.items() if k != "train/actor/ratio_max_dev"}
    later = history.get("train/actor/ratio_max_dev", [])[1:]
    if later:
        metrics["train/actor/ratio_max_dev"] = torch.stack(later).float().max().item()
    return metrics


class OnPolicyAlgorithm:
    """What PPO and GRPO share around their updates: one call to train on a rollout, the minibatch loop's
    plumbing, and saving/restoring.

    Subclasses define prepare() and update(); their configs have lr and weight_decay. `ranks`: where this process
    stands among the learner's data-parallel ranks (learner/distributed.py); one rank unless the learner sets it.
    """

    ranks: Ranks = SINGLE

    def __init__(self, model: ActorCritic, cfg, seed: int = 0):
        self.model, self.cfg = model, cfg
        self.optimizer = self.make_optimizer()
        self.generator = torch.Generator().manual_seed(seed)
        self.gradient_steps = 0

    def make_optimizer(self) -> torch.optim.Optimizer:
        return make_optimizer(self.model, self.cfg.lr, self.cfg.weight_decay)

    def set_learning_rate(self, lr: float) -> None:
        """Every parameter group at `lr`, times its "lr_scale" (e.g. a VLA's value head: its own learning rate)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def minibatches(self, n: int, device: torch.device, epochs: int, size: int):
        """`epochs` shuffled passes over n rows, as index tensors of `size` rows (the last may be smaller)."""
        for _ in range(epochs):
            yield from torch.randperm(n, generator=self.generator).to(device).split(size)

    def gradient_step(self, loss: torch.Tensor, max_grad_norm: float, share: float = 1.0) -> torch.Tensor:
        """Backward of this rank's share of the minibatch's loss, gradients summed over the ranks, clip the gradient
        norm, step; returns the norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        (loss * share).backward()
        self.ranks.all_reduce_grads(self.model.parameters())
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_grad_norm)
        self.optimizer.step()
        self.gradient_steps += 1
        return grad_norm

    def acting_weights(self) -> dict[str, torch.Tensor]:
        """What the learner publishes to the actors."""
        return self.model.acting_weights()

    def train(self, rollout: dict, progress: float = 0.0) -> dict[str, float]:
        normalizer = getattr(self.model, "obs_normalizer", None)
        if normalizer is not None:
            # Statistics first, so that this rollout's values and the update see the same normalisation (the
            # actors' log-probs used the previous statistics: the ratio starts a little off 1, as in Brax's PPO).
            steps = rollout["steps"]
            valid = steps.get("valid")
            normalizer.update(steps["obs"][valid] if valid is not None else steps["obs"])
        data, metrics = self.prepare(rollout)
        return {**metrics, **self.update(data, progress)}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "gradient_steps": self.gradient_steps, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gradient_steps = int(state["gradient_steps"])
        self.generator.set_state(state["generator"])


class PPO(OnPolicyAlgorithm):
    def __init__(self, model: ActorCritic, cfg: PPOConfig, seed: int = 0):
        if model.critic is None:
            raise ValueError("PPO needs an actor-critic built with a critic")
        super().__init__(model, cfg, seed)

    def values(self, obs) -> torch.Tensor:
        """The critic's values of a batch of observations (no gradient), value_batch states a pass."""
        return values_of(self.model, obs, self.cfg.value_batch)

    def rollout_values(self, obs) -> torch.Tensor:
        """values(obs), each rank computing those of a shard of the rows."""
        return self.ranks.map_rows(self.values, obs)

    @torch.no_grad()
    def prepare(self, rollout: dict) -> tuple[dict, dict]:
        """Rollout tensors [N, T] -> flat training tensors [N*T] and the rollout's metrics."""
        steps, finals = rollout["steps"], rollout["finals"]
        n, t = steps["reward"].shape
        obs = tree.map(lambda a: a.reshape(n * t, *a.shape[2:]), steps["obs"])  # [N, T, ...] -> [N*T, ...]
        values = self.rollout_values(obs).view(n, t)
        # V(s'_t): the next step's state, the last observation at the end, the final observation where an episode ended.
        last_values = self.rollout_values(rollout["envs"]["last_obs"])
        next_values = torch.cat([values[:, 1:], last_values[:, None]], dim=1)
        index = finals["index"].long()
        next_values[index[:, 0], index[:, 1]] = self.rollout_values(finals["obs"])
        advantages, returns = compute_gae(steps["reward"], values, next_values, steps["terminated"],
                                          steps["truncated"], self.cfg.gamma, self.cfg.gae_lambda)
        data = {"obs": obs,
                "action": steps["action"].reshape(n * t, *steps["action"].shape[2:]),
                "log_prob": steps["log_prob"].reshape(n * t, *steps["log_prob"].shape[2:]), "value": values.reshape(-1),
                "advantage": advantages.reshape(-1), "return": returns.reshape(-1)}
        explained = 1 - (returns - values).var() / returns.var().clamp_min(1e-8)
        metrics = {"rollout/advantages_mean": advantages.mean().item(),
                   "rollout/advantages_abs_max": advantages.abs().max().item(),
                   "rollout/advantages_max": advantages.max().item(),
                   "rollout/advantages_min": advantages.min().item(), "rollout/rewards": steps["reward"].mean().item(),
                   "train/critic/explained_variance": explained.item()}
        return data, metrics

    def policy_loss(self, data: dict, idx: torch.Tensor, advantage: torch.Tensor):
        """(ratio loss, its stats, values [b], mean entropy) of the minibatch rows idx, with gradients."""
        cfg, model = self.cfg, self.model
        features = model.features(tree.map(lambda a: a[idx], data["obs"]))
        dist, value = model.distribution(features), model.value(features)
        loss, stats = ratio_loss(dist.log_prob(data["action"][idx]), data["log_prob"][idx], advantage,
                                 cfg.clip, cfg.clip_high, cfg.dual_clip)
        return loss, stats, value, dist.entropy().mean()

    def update(self, data: dict, progress: float = 0.0) -> dict[str, float]:
        """`epochs` passes of shuffled minibatches of the clipped PPO objective; returns mean metrics."""
        cfg = self.cfg
        lr = learning_rate(cfg.lr, cfg.lr_schedule, progress)
        self.set_learning_rate(lr)
        history, shares = collections.defaultdict(list), []
        n, device = len(data["advantage"]), data["advantage"].device
        for idx in self.minibatches(n, device, cfg.epochs, cfg.minibatch_size):
            advantage = data["advantage"][idx]
            if cfg.normalize_advantages and len(idx) > 1:
                advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
            # This rank's rows of the minibatch (all of them on one rank), normalised over the whole minibatch.
            idx, advantage, share = self.ranks.shard(idx, advantage)

            policy_loss, stats, value, entropy = self.policy_loss(data, idx, advantage)

            value_loss, value_clip_ratio = clipped_value_loss(value, data["value"][idx], data["return"][idx],
                                                              cfg.huber_delta, cfg.value_clip)

            # Entropy bonus. The "entropy_loss" metric is the policy's entropy itself, not the loss term: RLinf's
            # PPO examples log train/entropy_loss as the policy entropy, and the name is kept for comparison.
            loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
            grad_norm = self.gradient_step(loss, cfg.max_grad_norm, share)

            stats.update({"train/actor/grad_norm": grad_norm, "train/actor/entropy_loss": entropy,
                          "train/critic/value_loss": value_loss,
                          "train/critic/value_clip_ratio": value_clip_ratio,
                          "train/loss": loss})
            for k, v in stats.items():
                history[k].append(v.detach())  # detached: keeping the graphs would hold every minibatch's memory
            shares.append(share)
        metrics = mean_metrics(self.ranks.combine(history, shares, MAXIMA))
        metrics["train/actor/lr"] = lr
        return metrics
