"""PPO and GRPO on a VLA policy (policies/vla/policy.py, or the flow-matching pi0 / pi0.5 of
policies/vla/pi0_policy.py): the updates of learner/ppo.py and learner/grpo.py with the VLA's one-pass
evaluation in place of an actor-critic's distribution.

What changes against the MLP's update, and why:
* The rollout's action is a row of token ids [n] (7, or OFT's 8 x 7) with per-token behaviour log-probs;
  the ratio is taken at ``vla.logprob_type`` (RLinf's ``logprob_type``): per token, per action (7 summed)
  or per chunk, in fp32, every token of a step sharing the step's advantage. Clipping, dual clip and the
  clipped Huber value loss are learner/ppo.py's functions.
* A pi0 (Pi0Policy) records its denoising chain and per-action log-densities [B, chunk] (Flow-SDE: of the
  one stochastic transition; Flow-Noise: the mean over the N + 1 terms), recomputed by ``evaluate`` from
  the stored chain: the ratio is per executed action (``logprob_type: action``) or per decision
  (``chunk``: summed over the chunk). Each policy groups its own log-probs (``policy.group_log_probs``).
* Values come from the value head at the last prompt token (VLAPolicy.values / evaluate). GAE and its
  bootstrapping are PPO.prepare's: V(final obs) on a time-out (truncated), nothing on a termination,
  which on ZarlPutOnPlate-v1 is a success (RLinf's ManiSkill configs bootstrap the same way).
* Only what requires grad is optimised and published (LoRA + value head, or SmallVLA's trainable parts):
  two parameter groups, the value head at ``vla.value_lr`` (RLinf: 3e-3 against LoRA's 1e-4).
* Checkpoints hold the trained weights only (the base model is the checkpoint directory, or random
  from vla.model_seed), with the action statistics, so `vla.init_from` and launch/eval_vla.py read them.
"""
from __future__ import annotations


import torch

from core import tree
from learner.configs import GRPOConfig, PPOConfig
from learner.grpo import GRPO
from learner.ppo import PPO, OnPolicyAlgorithm, ratio_loss
from policies.vla.config import VLAConfig
from policies.vla.policy import VLAPolicy
from policies.vla.saved import policy_stats

VALUE_HEAD = "value_head"


def vla_optimizer(model: torch.nn.Module, lr: float, value_lr: float, weight_decay: float,
                  beta2: float = 0.999) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: the value head's group at value_lr (as an lr_scale, so that the
    learning-rate schedule scales both), the rest at lr; second-moment decay beta2 (seed 003's pi0: 0.95)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the VLA has no trainable parameters (LoRA off and everything frozen?)")
    value = [p for n, p in named if VALUE_HEAD in n]
    rest = [p for n, p in named if VALUE_HEAD not in n]
    groups = [{"params": rest, "weight_decay": weight_decay, "lr_scale": 1.0},
              {"params": value, "weight_decay": weight_decay, "lr_scale": value_lr / lr}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, eps=1e-5, betas=(0.9, beta2))


class VLAUpdate:
    """What the VLA's PPO and GRPO share: the policy, the optimiser's groups, the published weights, the loss."""

    policy: VLAPolicy
    vla_cfg: VLAConfig

    def make_optimizer(self) -> torch.optim.Optimizer:
        return vla_optimizer(self.model, self.cfg.lr, self.vla_cfg.value_lr, self.cfg.weight_decay,
                             self.vla_cfg.adam_beta2)

    def acting_weights(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def policy_loss(self, data: dict, idx: torch.Tensor, advantage: torch.Tensor):
        """(ratio loss, its stats, values [b], mean entropy) of the minibatch rows idx, with gradients."""
        out = self.policy.evaluate(tree.map(lambda a: a[idx], data["obs"]), data["action"][idx])
        level = self.vla_cfg.logprob_type
        new = self.policy.group_log_probs(out.log_probs, level)
        old = self.policy.group_log_probs(data["log_prob"][idx], level)
        if new.ndim == 2:
            advantage = advantage[:, None]
        cfg = self.cfg
        loss, stats = ratio_loss(new, old, advantage, cfg.clip, cfg.clip_high,
                                 getattr(cfg, "dual_clip", 0.0))
        return loss, stats, out.values, out.entropy.mean()

    def state_dict(self) -> dict:
        # action_stats / norm_stats: so that a learner checkpoint evaluates (launch/eval_vla.py) and starts another run
        # (vla.init_from) with the un-normalisation it was trained under (learner/vla_checkpoint.py)
        return {"trained": {n: p.detach().clone() for n, p in self.acting_weights().items()},
                **policy_stats(self.policy),
                "optimizer": self.optimizer.state_dict(), "gradient_steps": self.gradient_steps,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_weights({n: v.cpu().numpy() for n, v in state["trained"].items()})
        self.optimizer.load_state_dict(state["optimizer"])
        self.gradient_steps = int(state["gradient_steps"])
        self.generator.set_state(state["generator"])


class VLAPPO(VLAUpdate, PPO):
    def __init__(self, policy: VLAPolicy, cfg: PPOConfig, vla_cfg: VLAConfig, seed: int = 0):
        self.policy, self.vla_cfg = policy, vla_cfg
        OnPolicyAlgorithm.__init__(self, policy.model, cfg, seed)  # PPO's own check wants an MLP critic

    def values(self, obs) -> torch.Tensor:
        n = len(tree.leaves(obs)[0])
        batch = self.cfg.value_batch
        if n == 0:
            return torch.zeros(0, device=self.policy.device)
        return torch.cat([self.policy.values(tree.map(lambda a: a[i:i + batch], obs)) for i in range(0, n, batch)])


class VLAGRPO(VLAUpdate, GRPO):
    def __init__(self, policy: VLAPolicy, cfg: GRPOConfig, vla_cfg: VLAConfig, seed: int = 0):
        self.policy, self.vla_cfg = policy, vla_cfg
        GRPO.__init__(self, policy.model, cfg, seed)
