"""Generalised Advantage Estimation, with time-outs told apart from terminations.

For one env and step t, with V the critic and s'_t the state the step led to:

    delta_t = r_t + gamma * V(s'_t) * (1 - terminated_t) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}        (done = terminated or truncated)

Two different flags, two different jobs:

* ``terminated`` (the task ended: the cube fell, the pole fell) means there is no future, so
  nothing is bootstrapped.
* ``truncated`` (a time limit, or the rollout was cut) says nothing about the task: the future
  still has value V(s'_t), bootstrapped from the *final* observation of the episode, not from the
  observation after the auto-reset, which belongs to the next episode.

Either way the episode ends at t, so the advantage trace stops there (``done_t``).
The caller supplies ``next_values[t] = V(s'_t)``: V(obs[t+1]) inside an episode, V(final_obs)
where an episode ended at t, V(last observation) at the end of the rollout.
"""
from __future__ import annotations

import torch


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
                truncated: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and value targets (returns) for rollouts of shape [N envs, T steps]."""
    if not (rewards.shape == values.shape == next_values.shape == terminated.shape == truncated.shape):
        raise ValueError(f"compute_gae needs equal [N, T] shapes, got rewards {tuple(rewards.shape)}, values "
                         f"{tuple(values.shape)}, next_values {tuple(next_values.shape)}, terminated "
                         f"{tuple(terminated.shape)}, truncated {tuple(truncated.shape)}")
    not_terminated = 1.0 - terminated.float()
    not_done = 1.0 - (terminated | truncated).float()
    deltas = rewards + gamma * next_values * not_terminated - values
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = deltas[:, t] + gamma * lam * not_done[:, t] * running
        advantages[:, t] = running
    return advantages, advantages + values
