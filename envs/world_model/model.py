"""The world model: the four learned parts together, saved to and loaded from one local directory
(``config.json`` + ``model.safetensors``, the Hugging Face layout).

``predict`` is one chunk of the environment: relative actions -> absolute poses (ActionToPose) -> the next
frames' latents (LatentFlowGenerator, conditioned on the actions and the poses) -> frames (the decoder) ->
success probabilities (SuccessClassifier). That is EVAC's pipeline (seed 004): an MLP for the poses, an
action-conditioned latent generative model for the frames, a classifier for the reward.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from envs.world_model.autoencoder import FrameAutoencoder, frames_to_tensor, tensor_to_frames
from envs.world_model.config import WorldModelConfig
from envs.world_model.generator import LatentFlowGenerator
from envs.world_model.pose import ActionToPose
from envs.world_model.reward import SuccessClassifier

WEIGHTS_NAME = "model.safetensors"


@dataclass
class Prediction:
    latents: torch.Tensor  # [B, chunk, C, s, s]
    frames: torch.Tensor  # uint8 [B, chunk, H, W, 3]
    poses: torch.Tensor  # [B, chunk, pose_dim]
    success_prob: torch.Tensor  # [B, chunk]


class WorldModel(nn.Module):
    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        self.config = cfg
        self.autoencoder = FrameAutoencoder(cfg)
        self.generator = LatentFlowGenerator(cfg)
        self.pose = ActionToPose(cfg)
        self.classifier = SuccessClassifier(cfg)

    # -- the environment's step --------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames [..., H, W, 3] -> latents [..., C, s, s]."""
        lead = frames.shape[:-3]
        latents = self.autoencoder.encode(frames_to_tensor(frames.reshape(-1, *frames.shape[-3:])))
        return latents.reshape(*lead, *latents.shape[1:])

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [..., C, s, s] -> uint8 frames [..., H, W, 3]."""
        lead = latents.shape[:-3]
        frames = tensor_to_frames(self.autoencoder.decode(latents.reshape(-1, *latents.shape[-3:])))
        return frames.reshape(*lead, *frames.shape[1:])

    @torch.no_grad()
    def success_prob(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames [..., H, W, 3] -> probabilities [...]."""
        lead = frames.shape[:-3]
        logits = self.classifier(frames_to_tensor(frames.reshape(-1, *frames.shape[-3:])))
        return torch.sigmoid(logits).reshape(lead)

    def condition(self, actions: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """The generator's per-frame conditioning [B, chunk, action_dim + pose_dim]."""
        return torch.cat([actions, self.pose.normalise(poses)], dim=-1)

    @torch.no_grad()
    def predict(self, memory: torch.Tensor, pose: torch.Tensor, actions: torch.Tensor, steps: int | None = None,
                generator: torch.Generator | None = None) -> Prediction:
        """One chunk: memory latents [B, memory_frames, C, s, s], current poses [B, pose_dim], actions
        [B, chunk, action_dim] in [-1, 1]."""
        poses = self.pose(pose, actions)
        latents = self.generator.sample(memory, self.condition(actions, poses), steps, generator)
        frames = self.decode_latents(latents)
        return Prediction(latents, frames, poses, self.success_prob(frames))

    # -- saving and loading ------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.config.save_pretrained(directory)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  str(directory / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> WorldModel:
        directory = Path(directory)
        model = cls(WorldModelConfig.from_pretrained(directory))
        path = directory / WEIGHTS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the world model's weights are missing")
        missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
        if missing or unexpected:
            raise ValueError(f"{path} does not fit its config.json: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
        return model.to(device).eval()
