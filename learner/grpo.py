"""Group Relative Policy Optimisation: critic-free advantages from groups of rollouts.

The actors run one episode per env; the envs of a group (``group_size`` consecutive envs of an
actor) start from the same state. Each episode gets one score, its return (or, with
``score: success``, whether it succeeded at any step); the advantage of every step of an episode
is its score z-scored inside its group: (score - group mean) / group std. A group whose members
all scored the same (all failed, all succeeded, or all reached the same return) says nothing about
which actions were better, its advantages are all zero, so it is dropped from the update. The
update is PPO's clipped surrogate with these advantages, and no value function.
"""
from __future__ import annotations

import collections

import torch

from core import tree
from learner.configs import GRPOConfig
from learner.ppo import MAXIMA, OnPolicyAlgorithm, clipped_surrogate, learning_rate, mean_metrics
from policies.actor_critic import ActorCritic

UNIFORM_STD = 1e-6  # a group's scores with a smaller spread count as all equal


def group_advantages(scores: torch.Tensor, group_size: int, filter_uniform: bool = True,
                     mean_low: float | None = None, mean_high: float | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores [num_envs] (consecutive envs form a group) -> (advantages [num_envs], keep [num_envs]).

    advantage = (score - group mean) / group std (population std); 0 in groups whose scores are all
    equal, which are not kept when `filter_uniform`; nor are groups whose mean score is not strictly
    between `mean_low` and `mean_high` (each None: no bound).
    """
    if scores.ndim != 1 or len(scores) % group_size:
        raise ValueError(f"{tuple(scores.shape)} scores do not split into groups of {group_size}")
    grouped = scores.float().view(-1, group_size)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, unbiased=False, keepdim=True)
    uniform = (std < UNIFORM_STD).expand_as(grouped)
    advantages = torch.where(uniform, torch.zeros_like(grouped), (grouped - mean) / std.clamp_min(UNIFORM_STD))
    keep = ~uniform if filter_uniform else torch.ones_like(uniform)
    if mean_low is not None:
        keep = keep & (mean > mean_low)
    if mean_high is not None:
        keep = keep & (mean < mean_high)
    return advantages.reshape(-1), keep.reshape(-1)


class GRPO(OnPolicyAlgorithm):
    def __init__(self, model: ActorCritic, cfg: GRPOConfig, seed: int = 0):
        if cfg.score not in ("return", "success"):
            raise ValueError(f"grpo.score must be 'return' or 'success', not '{cfg.score}'")
        super().__init__(model, cfg, seed)

    @torch.no_grad()
    def prepare(self, rollout: dict) -> tuple[dict, dict]:
        """Episode rollout tensors -> flat tensors of the valid steps of kept groups, and the rollout's metrics."""
        steps, envs = rollout["steps"], rollout["envs"]
        scores = envs["episode_return"] if self.cfg.score == "return" else envs["episode_success"]
        advantages, keep = group_advantages(scores, self.cfg.group_size, self.cfg.filter_uniform_groups,
                                            self.cfg.filter_mean_low, self.cfg.filter_mean_high)
        n, t = steps["valid"].shape
        mask = (steps["valid"] & keep[:, None]).reshape(-1)
        data = {"obs": tree.map(lambda a: a.reshape(n * t, *a.shape[2:])[mask], steps["obs"]),
                "action": steps["action"].reshape(n * t, *steps["action"].shape[2:])[mask],
                "log_prob": steps["log_prob"].reshape(n * t, *steps["log_prob"].shape[2:])[mask],
                "advantage": advantages[:, None].expand(n, t).reshape(-1)[mask]}
        kept = advantages[keep]
        success = envs["episode_success"].bool().view(-1, self.cfg.group_size)
        metrics = {"grpo/groups_dropped": (n - int(keep.sum())) // self.cfg.group_size,
                   # RLinf drops the groups where every member failed or every member succeeded: counted apart
                   "grpo/groups_all_fail": int((~success).all(dim=1).sum()),
                   "grpo/groups_all_success": int(success.all(dim=1).sum()),"grpo/groups": n // self.cfg.group_size, "grpo/groups_kept": int(keep.sum()) // self.cfg.group_size,
                   "grpo/score_mean": scores.float().mean().item(), "grpo/steps_trained": int(mask.sum()),
                   "rollout/rewards": steps["reward"][steps["valid"]].mean().item(),
                   "rollout/advantages_mean": kept.mean().item() if len(kept) else 0.0,
                   "rollout/advantages_abs_max": kept.abs().max().item() if len(kept) else 0.0,
                   "rollout/advantages_max": kept.max().item() if len(kept) else 0.0,
                   "rollout/advantages_min": kept.min().item() if len(kept) else 0.0}
        return data, metrics

    def policy_loss(self, data: dict, idx, advantage):
        """(clipped surrogate, its stats, no values: GRPO has no critic, mean entropy) of the minibatch rows idx."""
        dist = self.model.distribution(self.model.features(tree.map(lambda a: a[idx], data["obs"])))
        loss, stats = clipped_surrogate(dist, data["action"][idx], data["log_prob"][idx], advantage, self.cfg.clip,
                                        self.cfg.clip_high)
        return loss, stats, None, dist.entropy().mean()

    def update(self, data: dict, progress: float = 0.0) -> dict[str, float]:
        """`epochs` passes of shuffled minibatches of the clipped surrogate with group advantages."""
        cfg = self.cfg
        lr = learning_rate(cfg.lr, cfg.lr_schedule, progress)
        self.set_learning_rate(lr)
        history, shares = collections.defaultdict(list), []
        n, device = len(data["advantage"]), data["advantage"].device
        # No rows when every group was uniform: nothing to learn from this rollout.
        for idx in self.minibatches(n, device, cfg.epochs if n else 0, cfg.minibatch_size):
            idx, share = self.ranks.shard(idx)  # this rank's rows of the minibatch (all of them on one rank)
            policy_loss, stats, _, entropy = self.policy_loss(data, idx, data["advantage"][idx])
            loss = policy_loss - cfg.entropy_coef * entropy
            stats.update({"train/actor/grad_norm": self.gradient_step(loss, cfg.max_grad_norm, share),
                          "train/actor/entropy_loss": entropy})
            for k, v in stats.items():
                history[k].append(v.detach())  # detached: keeping the graphs would hold every minibatch's memory
            shares.append(share)
        metrics = mean_metrics(self.ranks.combine(history, shares, MAXIMA))
        metrics["train/actor/lr"] = lr
        return metrics
