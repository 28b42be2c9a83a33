"""The world model's sizes and settings (Hugging Face style: one config object, saved as config.json next to the
weights and read back by ``WorldModel.from_pretrained``)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_NAME = "config.json"


@dataclass
class WorldModelConfig:
    # frames: square RGB images of image_size pixels, the trajectory files' camera `camera` (None: the first one)
    image_size: int = 64
    camera: str | None = None
    # the autoencoder: one stride-2 convolution per width, so the latent grid is image_size / 2**len(ae_widths)
    ae_widths: list = field(default_factory=lambda: [32, 64, 128])
    latent_channels: int = 4
    # the generator: `memory_frames` frames seen, `chunk` frames made, one per action of a chunk [chunk, action_dim]
    memory_frames: int = 4
    chunk: int = 8
    action_dim: int = 7
    pose_dim: int = 7  # the end-effector pose: position (3), euler angles (3), gripper opening (1)
    angle_dims: list = field(default_factory=lambda: [3, 4, 5])  # pose entries that wrap at +-pi
    patch: int = 2  # latent-grid patches of patch x patch cells are the transformer's tokens
    hidden: int = 256
    layers: int = 6
    heads: int = 8
    flow_steps: int = 10  # Euler steps of the sampler, from noise (t = 1) to a latent (t = 0)
    # the action-to-pose predictor and the success classifier
    pose_hidden: int = 256
    classifier_widths: list = field(default_factory=lambda: [16, 32, 64])
    success_threshold: float = 0.5  # a frame counts as success when the classifier's probability exceeds this

    def __post_init__(self) -> None:
        down = 2 ** len(self.ae_widths)
        if self.image_size % down:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 2**len(ae_widths) = {down}")
        if (self.image_size // down) % self.patch:
            raise ValueError(f"the latent grid ({self.image_size // down}) must be a multiple of patch {self.patch}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} must be a multiple of heads {self.heads}")
        if any(not 0 <= d < self.pose_dim for d in self.angle_dims):
            raise ValueError(f"angle_dims {self.angle_dims} must index the pose's {self.pose_dim} entries")

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** len(self.ae_widths)

    def save_pretrained(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> WorldModelConfig:
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no world-model config (a directory saved by WorldModel.save_pretrained)")
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown world-model setting(s) {unknown}")
        return cls(**data)
