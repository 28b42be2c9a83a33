"""Trajectories for the world model, read from the project's one on-disk format (envs/demos.py, LeRobot v2.1):
what it trains on, and the env's buffer of start states.

Per episode: frames uint8 [T, H, W, 3] (one camera, resized to the model's image size), actions [T, A] (row t
taken in frame t, leading to frame t + 1), end-effector poses [T, pose_dim] (the first pose_dim entries of
``observation.state``: in the CALVIN layout tcp position, euler angles, gripper opening), success [T] (the
frame shows the task done: ``next.success`` of the step before it) and the instruction.

Episodes are split into train and held-out by a seeded permutation (whole episodes, so no held-out frame has
a neighbour in training).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from envs.demos import DemoDataset


@dataclass
class Episode:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    actions: np.ndarray  # float32 [T, A]
    poses: np.ndarray  # float32 [T, P]
    success: np.ndarray  # bool [T]: frame t shows the task done
    instruction: str


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 [T, H, W, 3] -> [T, size, size, 3] (area averaging when shrinking)."""
    if frames.shape[1:3] == (size, size):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="area" if frames.shape[1] >= size else "bilinear")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def load_episodes(root: str | Path | list, image_size: int, pose_dim: int, camera: str | None = None) -> list[Episode]:
    """The episodes of a data set, or of several in turn (a list of directories, e.g. one per recording process)."""
    if isinstance(root, (list, tuple)):
        return [ep for r in root for ep in load_episodes(r, image_size, pose_dim, camera)]
    root = Path(root)
    if not (root / "meta" / "info.json").is_file():
        raise FileNotFoundError(f"{root}: no trajectory data set (meta/info.json; envs/demos.py's layout)")
    data = DemoDataset(root)
    if not data.cameras:
        raise ValueError(f"{root}: the data set has no camera images")
    key = data.cameras[0] if camera is None else f"observation.images.{camera}"
    if key not in data.cameras:
        raise ValueError(f"{root}: no camera {camera!r}; it has {[c.split('.')[-1] for c in data.cameras]}")
    episodes = []
    for e in range(data.num_episodes):
        ep = data.episode(e)
        state = np.asarray(ep["observation.state"], np.float32)
        if state.shape[1] < pose_dim:
            raise ValueError(f"{root}: observation.state has {state.shape[1]} entries, the pose needs {pose_dim}")
        done = np.asarray(ep["next.success"], bool)
        # frame t is after action t - 1: its success is the previous step's; frame 0 shows the start
        success = np.concatenate([[False], done[:-1]])
        episodes.append(Episode(resize_frames(ep[key], image_size), np.asarray(ep["action"], np.float32),
                                state[:, :pose_dim].copy(), success, ep["task"]))
    return episodes


def split_episodes(n: int, held_out_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) episode indices; at least one of each when n >= 2 and the fraction is above 0."""
    if not 0.0 <= held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in [0, 1), got {held_out_fraction}")
    order = np.random.default_rng(np.random.SeedSequence(seed)).permutation(n)
    k = int(round(n * held_out_fraction))
    if held_out_fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    return np.sort(order[k:]), np.sort(order[:k])


@dataclass
class FrameTable:
    """Every episode's frames and steps concatenated (rows of all episodes in order) and, for each training
    window, the rows it reads: ``memory`` [N, M] (frame 0 repeated before an episode's start, as the env's
    reset does), ``future`` [N, C] (the frames after each of the window's actions), ``actions`` [N, C] (= the
    window's rows s .. s + C - 1) and ``current`` [N] (row s: the current pose). Indices, not copies, so that
    frames or their latents are gathered per batch."""

    frames: np.ndarray  # uint8 [F, H, W, 3]
    actions: np.ndarray  # [F, A]
    poses: np.ndarray  # [F, P]
    success: np.ndarray  # bool [F]
    memory: np.ndarray  # int64 [N, M]
    future: np.ndarray  # int64 [N, C]
    current: np.ndarray  # int64 [N]

    @property
    def window_actions(self) -> np.ndarray:
        return self.current[:, None] + np.arange(self.future.shape[1])[None]

    @classmethod
    def of(cls, episodes: list[Episode], memory_frames: int, chunk: int) -> FrameTable:
        if not episodes:
            raise ValueError("no episodes")
        memory, future, current, first = [], [], [], 0
        for ep in episodes:
            T = len(ep.frames)
            for s in range(T - chunk):  # frames s + 1 .. s + chunk exist
                memory.append(first + np.clip(np.arange(s - memory_frames + 1, s + 1), 0, None))
                future.append(first + np.arange(s + 1, s + chunk + 1))
                current.append(first + s)
            first += T
        if not current:
            raise ValueError(f"no episode is longer than {chunk} frames: nothing to train the world model on")
        cat = np.concatenate
        return cls(cat([ep.frames for ep in episodes]), cat([ep.actions for ep in episodes]),
                   cat([ep.poses for ep in episodes]), cat([ep.success for ep in episodes]),
                   np.stack(memory), np.stack(future), np.asarray(current, np.int64))

    def __len__(self) -> int:
        return len(self.current)


@dataclass
class StartStates:
    """The env's reset buffer: each episode's first frame, instruction and end-effector pose."""

    frames: np.ndarray  # uint8 [N, H, W, 3]
    poses: np.ndarray  # float32 [N, P]
    instructions: list

    @classmethod
    def of(cls, episodes: list[Episode]) -> StartStates:
        if not episodes:
            raise ValueError("no episodes to draw start states from")
        return cls(np.stack([ep.frames[0] for ep in episodes]), np.stack([ep.poses[0] for ep in episodes]),
                   [ep.instruction for ep in episodes])

    def __len__(self) -> int:
        return len(self.frames)
