"""The action-to-pose predictor: a chunk of relative actions -> the absolute end-effector poses they reach.

Relative actions (a position step, a rotation step, the gripper command) do not say where the arm ends up:
that depends on the controller, the inverse kinematics and the workspace limits. An MLP learns it from the
trajectories: input the current pose and the chunk's actions, output the pose after each action, as offsets
from the current pose. Angles are learned as wrapped differences (a roll near +pi and one near -pi are the same
orientation), and the absolute angles come back wrapped into [-pi, pi).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from envs.world_model.config import WorldModelConfig


def wrap_angles(x: torch.Tensor, dims: list) -> torch.Tensor:
    """x with entries `dims` of its last axis wrapped into [-pi, pi)."""
    if not dims:
        return x
    out = x.clone()
    out[..., dims] = torch.remainder(x[..., dims] + math.pi, 2 * math.pi) - math.pi
    return out


class ActionToPose(nn.Module):
    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.pose_hidden
        self.net = nn.Sequential(nn.Linear(cfg.pose_dim + cfg.chunk * cfg.action_dim, h), nn.SiLU(),
                                 nn.Linear(h, h), nn.SiLU(), nn.Linear(h, cfg.chunk * cfg.pose_dim))
        # the scales of pose offsets and of poses, from the training data (set_statistics)
        self.register_buffer("pose_mean", torch.zeros(cfg.pose_dim))
        self.register_buffer("pose_std", torch.ones(cfg.pose_dim))
        self.register_buffer("offset_std", torch.ones(cfg.pose_dim))

    def offsets(self, pose: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Normalised offsets [B, chunk, pose_dim] of the poses after each action from `pose` [B, pose_dim]."""
        x = torch.cat([(pose - self.pose_mean) / self.pose_std, actions.flatten(1)], dim=1)
        return self.net(x).view(-1, self.cfg.chunk, self.cfg.pose_dim)

    def target_offsets(self, pose: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """The normalised offsets of the true future poses [B, chunk, pose_dim] (what `offsets` learns)."""
        return wrap_angles(future - pose[:, None], self.cfg.angle_dims) / self.offset_std

    def forward(self, pose: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Absolute poses [B, chunk, pose_dim] after each of the actions [B, chunk, action_dim] from `pose`."""
        return wrap_angles(pose[:, None] + self.offsets(pose, actions) * self.offset_std, self.cfg.angle_dims)

    def normalise(self, poses: torch.Tensor) -> torch.Tensor:
        """Poses scaled for the generator's conditioning."""
        return (poses - self.pose_mean) / self.pose_std

    @torch.no_grad()
    def set_statistics(self, poses: torch.Tensor, future: torch.Tensor) -> None:
        """From current poses [N, pose_dim] and the futures [N, chunk, pose_dim] they lead to."""
        self.pose_mean.copy_(poses.mean(0))
        self.pose_std.copy_(poses.std(0).clamp_min(1e-4))
        offsets = wrap_angles(future - poses[:, None], self.cfg.angle_dims)
        self.offset_std.copy_(offsets.flatten(0, 1).std(0).clamp_min(1e-4))
