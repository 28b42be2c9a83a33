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


def clipped_surrogate(dist, action: torch.Tensor, behaviour_log_prob: torch.Tensor, advantage: torch.Tensor,
                      clip: float) -> tuple[torch.Tensor, dict]:
    """PPO's clipped policy objective (a loss: minimise it), with its diagnostics.

    The ratio is to the policy that acted: the log-probabilities the actors recorded.
    """
    log_ratio = dist.log_prob(action) - behaviour_log_prob
    ratio = log_ratio.exp()
    clipped_ratio = ratio.clamp(1 - clip, 1 + clip)
    loss = -torch.min(ratio * advantage, clipped_ratio * advantage).mean()
    return loss, {"train/actor/policy_loss": loss, "train/actor/approx_kl": ((ratio - 1) - log_ratio).mean(),
                  "train/actor/clip_fraction": ((ratio - 1).abs() > clip).float().mean(),
                  "train/actor/clipped_ratio": clipped_ratio.mean()}


class OnPolicyAlgorithm:
    """What PPO and GRPO share around their updates: one call to train on a rollout, the minibatch loop's
    plumbing, and saving/restoring.

    Subclasses define prepare() and update(); their configs have lr and weight_decay.
    """

    def __init__(self, model: ActorCritic, cfg, seed: int = 0):
        self.model, self.cfg = model, cfg
        self.optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.gradient_steps = 0

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def minibatches(self, n: int, device: torch.device, epochs: int, size: int):
        """`epochs` shuffled passes over n rows, as index tensors of `size` rows (the last may be smaller)."""
        for _ in range(epochs):
            yield from torch.randperm(n, generator=self.generator).to(device).split(size)

    def gradient_step(self, loss: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
        """Backward, clip the gradient norm, step; returns the norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_grad_norm)
        self.optimizer.step()
        self.gradient_steps += 1
        return grad_norm

    def train(self, rollout: dict, progress: float = 0.0) -> dict[str, float]:
        normalizer = self.model.obs_normalizer
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

    @torch.no_grad()
    def prepare(self, rollout: dict) -> tuple[dict, dict]:
        """Rollout tensors [N, T] -> flat training tensors [N*T] and the rollout's metrics."""
        steps, finals = rollout["steps"], rollout["finals"]
        n, t = steps["reward"].shape
        obs = tree.map(lambda a: a.reshape(n * t, *a.shape[2:]), steps["obs"])  # [N, T, ...] -> [N*T, ...]
        values = values_of(self.model, obs, self.cfg.value_batch).view(n, t)
        # V(s'_t): the next step's state, the last observation at the end, the final observation where an episode ended.
        last_values = values_of(self.model, rollout["envs"]["last_obs"], self.cfg.value_batch)
        next_values = torch.cat([values[:, 1:], last_values[:, None]], dim=1)
        index = finals["index"].long()
        next_values[index[:, 0], index[:, 1]] = values_of(self.model, finals["obs"], self.cfg.value_batch)
        advantages, returns = compute_gae(steps["reward"], values, next_values, steps["terminated"],
                                          steps["truncated"], self.cfg.gamma, self.cfg.gae_lambda)
        data = {"obs": obs,
                "action": steps["action"].reshape(n * t, *steps["action"].shape[2:]),
                "log_prob": steps["log_prob"].reshape(-1), "value": values.reshape(-1),
                "advantage": advantages.reshape(-1), "return": returns.reshape(-1)}
        explained = 1 - (returns - values).var() / returns.var().clamp_min(1e-8)
        metrics = {"rollout/advantages_mean": advantages.mean().item(),
                   "rollout/advantages_max": advantages.max().item(),
                   "rollout/advantages_min": advantages.min().item(), "rollout/rewards": steps["reward"].mean().item(),
                   "train/critic/explained_variance": explained.item()}
        return data, metrics

    def update(self, data: dict, progress: float = 0.0) -> dict[str, float]:
        """`epochs` passes of shuffled minibatches of the clipped PPO objective; returns mean metrics."""
        cfg, model = self.cfg, self.model
        lr = learning_rate(cfg.lr, cfg.lr_schedule, progress)
        self.set_learning_rate(lr)
        history = collections.defaultdict(list)
        n, device = len(data["advantage"]), data["advantage"].device
        for idx in self.minibatches(n, device, cfg.epochs, cfg.minibatch_size):
            features = model.features(tree.map(lambda a: a[idx], data["obs"]))
            dist, value = model.distribution(features), model.value(features)
            advantage = data["advantage"][idx]
            if cfg.normalize_advantages and len(idx) > 1:
                advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)

            policy_loss, stats = clipped_surrogate(dist, data["action"][idx], data["log_prob"][idx], advantage, cfg.clip)

            # Value: Huber loss; with value clipping, the worse of the free and the clipped prediction.
            old_value, target = data["value"][idx], data["return"][idx]
            value_loss_free = F.huber_loss(value, target, delta=cfg.huber_delta, reduction="none")
            if cfg.value_clip > 0:
                value_clipped = old_value + (value - old_value).clamp(-cfg.value_clip, cfg.value_clip)
                value_loss_clipped = F.huber_loss(value_clipped, target, delta=cfg.huber_delta, reduction="none")
                value_loss = torch.max(value_loss_free, value_loss_clipped).mean()
            else:
                value_loss_clipped, value_loss = value_loss_free, value_loss_free.mean()

            # Entropy bonus. The "entropy_loss" metric is the policy's entropy itself, not the loss term: RLinf's
            # PPO examples log train/entropy_loss as the policy entropy, and the name is kept for comparison.
            entropy = dist.entropy().mean()
            loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
            grad_norm = self.gradient_step(loss, cfg.max_grad_norm)

            stats.update({"train/actor/grad_norm": grad_norm, "train/actor/entropy_loss": entropy,
                          "train/critic/value_loss": value_loss,
                          "train/critic/value_clip_ratio": (value_loss_clipped > value_loss_free).float().mean(),
                          "train/loss": loss})
            for k, v in stats.items():
                history[k].append(v.detach())  # detached: keeping the graphs would hold every minibatch's memory
        metrics = {k: torch.stack(v).float().mean().item() for k, v in history.items()}
        metrics["train/actor/lr"] = lr
        return metrics
