"""The world model's parts learn from real CALVIN trajectories (tests/conftest.py: the play table's scripted expert
on turn_on_lightbulb, two clean episodes that succeed and two noisy ones that fail), with whole episodes held out:
the action-to-pose predictor beats "the arm does not move", the success classifier tells held-out success frames
from the others; and the whole training writes a directory the env loads."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from envs.world_model.model import WorldModel
from envs.world_model.train import TrainConfig, evaluate, train_classifier, train_pose, train_world_model
from envs.world_model.trajectories import FrameTable, load_episodes, split_episodes
from envs.world_model.vector import WorldModelVectorEnv

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def mixed_split_seed() -> int:
    """A split seed that holds out one successful (0, 1) and one failed (2, 3) episode of the four."""
    return next(s for s in range(100) if sorted(int(i) // 2 for i in split_episodes(4, 0.5, s)[1]) == [0, 1])


@pytest.fixture(scope="module")
def tables(calvin_trajectories):
    episodes = load_episodes(calvin_trajectories, 16, 7)
    train, held = split_episodes(len(episodes), 0.5, mixed_split_seed())
    return (FrameTable.of([episodes[i] for i in train], 4, 8), FrameTable.of([episodes[i] for i in held], 4, 8))


def test_pose_predictor_and_success_classifier_learn_and_generalise(tables, tiny_world_model_config):
    train, held = tables
    assert held.success.any() and not held.success.all()
    torch.manual_seed(0)
    model = WorldModel(tiny_world_model_config())
    cfg = TrainConfig(pose_steps=300, classifier_steps=150, batch_size=32, lr=3e-3, log_every=0, eval_windows=32,
                      autoencoder_steps=0, generator_steps=0)
    generator = torch.Generator().manual_seed(0)
    train_pose(model, train, cfg, generator)
    train_classifier(model, train, cfg, generator)
    metrics = evaluate(model, held, cfg)
    assert metrics["pose_error"] < 0.6 * metrics["pose_error_hold"], metrics
    assert metrics["classifier_balanced_accuracy"] >= 0.7 and metrics["classifier_accuracy"] >= 0.8, metrics


def test_training_writes_a_model_directory_the_env_loads(tmp_path, calvin_trajectories, tiny_world_model_config):
    cfg = TrainConfig(autoencoder_steps=5, generator_steps=5, pose_steps=5, classifier_steps=5, batch_size=8,
                      held_out_fraction=0.5, split_seed=mixed_split_seed(), device="cpu", log_every=0, eval_windows=8)
    _, metrics = train_world_model(calvin_trajectories, tmp_path / "wm", tiny_world_model_config(), cfg, log=lambda _: None)
    assert json.loads((tmp_path / "wm" / "metrics.json").read_text()) == metrics
    for key in ("psnr", "ssim", "psnr_reconstruction", "psnr_copy_last", "pose_error", "classifier_accuracy"):
        assert np.isfinite(metrics[key]), key
    assert metrics["held_out_windows"] == 8 and 0 < metrics["held_out_success_frames"] < metrics["held_out_frames"]
    env = WorldModelVectorEnv(2, tmp_path / "wm", calvin_trajectories, device="cpu")
    obs, rewards, *_ = env.chunk_step(np.zeros((2, 8, 7), np.float32))
    assert obs["image"].shape == (2, 16, 16, 3) and rewards.shape == (2, 8)
