"""WorldModel-v0 (envs/world_model/vector.py): the vector-env contract with a tiny randomly initialised world
model, saved to and loaded from a directory, and start states from real CALVIN trajectories."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import envs
from core.instruction import decode_instruction
from envs.world_model.model import WorldModel
from envs.world_model.trajectories import load_episodes
from envs.world_model.vector import WorldModelVectorEnv

B, C, A = 6, 8, 7
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model_dir(tmp_path, tiny_world_model_config):
    torch.manual_seed(0)
    WorldModel(tiny_world_model_config()).save_pretrained(tmp_path / "wm")
    return tmp_path / "wm"


@pytest.fixture(scope="module")
def episodes(calvin_trajectories):
    return load_episodes(calvin_trajectories, 16, 7)


def make(model_dir, trajectories, threshold=None, **kwargs):
    model = WorldModel.from_pretrained(model_dir)
    if threshold is not None:
        model.config.success_threshold = threshold
    return WorldModelVectorEnv(B, model, trajectories, held_out_fraction=0.0, device="cpu", **kwargs)


def actions(seed, n=B):
    return np.random.default_rng(seed).uniform(-1, 1, (n, C, A)).astype(np.float32)


def test_saved_model_loads_identically_and_bad_directories_are_named(model_dir, tmp_path):
    loaded = WorldModel.from_pretrained(model_dir)
    torch.manual_seed(0)
    again = WorldModel(loaded.config)
    for name, value in again.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    with pytest.raises(FileNotFoundError, match="config.json"):
        WorldModel.from_pretrained(tmp_path / "nothing")


def test_shapes_dtypes_and_the_instruction(model_dir, calvin_trajectories):
    env = make(model_dir, calvin_trajectories, threshold=1.0)
    obs = env.reset(seed=3)
    assert obs["image"].shape == (B, 16, 16, 3) and obs["image"].dtype == np.uint8
    assert obs["state"].shape == (B, 7) and obs["state"].dtype == np.float32
    assert obs["instruction"].shape == (B, 64) and obs["instruction"].dtype == np.uint8
    texts = {ep.instruction for ep in load_episodes(calvin_trajectories, 16, 7)}  # read from the directory
    assert set(decode_instruction(obs["instruction"])) <= texts
    assert env.single_observation_space.contains({k: v[0] for k, v in obs.items()})
    obs, rewards, terminated, truncated, infos = env.chunk_step(actions(0))
    assert rewards.shape == (B, C) and rewards.dtype == np.float32
    assert terminated.shape == truncated.shape == (B, C) and terminated.dtype == truncated.dtype == bool
    assert len(infos) == C and all(info["final_obs"]["image"].shape == (B, 16, 16, 3) for info in infos)
    assert all(info["success_prob"].shape == (B,) for info in infos)
    assert obs["image"].shape == (B, 16, 16, 3)
    with pytest.raises(ValueError, match="chunk_step"):
        env.step(actions(0)[:, 0])
    with pytest.raises(ValueError, match="actions\\[B=6, 8, 7\\]"):
        env.chunk_step(actions(0)[:, :4])
    with pytest.raises(ValueError, match="non-finite"):
        env.chunk_step(np.full((B, C, A), np.nan, np.float32))


def test_truncation_at_the_horizon_resets_every_env_to_a_start_state(model_dir, episodes):
    env = make(model_dir, episodes, threshold=1.0, max_episode_steps=16)  # never a success
    env.reset(seed=1)
    _, rewards, terminated, truncated, infos = env.chunk_step(actions(1))
    assert not truncated.any() and not terminated.any() and not any(info["done"].any() for info in infos)
    obs, rewards, terminated, truncated, infos = env.chunk_step(actions(2))
    assert truncated[:, -1].all() and not truncated[:, :-1].any() and not terminated.any() and rewards.sum() == 0
    assert (infos[-1]["episode_length"] == 16).all() and (infos[-1]["episode_return"] == 0).all()
    assert not infos[-1]["episode_success"].any()
    # the new episodes start from the buffer: a start frame and its pose
    np.testing.assert_array_equal(obs["image"], env.starts.frames[env.start_index])
    np.testing.assert_array_equal(obs["state"], env.starts.poses[env.start_index])


def test_predicted_success_terminates_and_only_the_finished_envs_reset(model_dir, episodes):
    probe = make(model_dir, episodes, threshold=1.0)
    probe.reset(seed=5)
    _, _, _, _, infos = probe.chunk_step(actions(5))
    prob = np.stack([info["success_prob"] for info in infos], 1)  # [B, C], the random classifier's
    # a threshold between the rows' best frames: some rows reach it inside the chunk, the others never
    best = np.sort(prob.max(1))
    threshold = float((best[B // 2 - 1] + best[B // 2]) / 2)
    env = make(model_dir, episodes, threshold=threshold, success_reward=5.0, max_episode_steps=64)
    env.reset(seed=5)
    obs, rewards, terminated, truncated, infos = env.chunk_step(actions(5))
    np.testing.assert_allclose(np.stack([info["success_prob"] for info in infos], 1), prob)  # same seed, same frames
    hit = prob > threshold
    ended = hit.any(1)
    assert 0 < ended.sum() < B
    first = np.where(ended, hit.argmax(1), -1)
    for b in range(B):
        # terminated exactly at the first success frame, with reward 5 there and nowhere else
        np.testing.assert_array_equal(terminated[b], np.arange(C) == first[b])
        np.testing.assert_array_equal(rewards[b], np.where(np.arange(C) == first[b], 5.0, 0.0))
        if ended[b]:
            info = infos[first[b]]
            assert info["done"][b] and info["episode_success"][b] and info["episode_length"][b] == first[b] + 1
            assert info["episode_return"][b] == 5.0
            assert not any(infos[k]["done"][b] for k in range(first[b] + 1, C))  # one episode end per chunk
    assert not truncated.any()
    # the finished envs start again (length 0, a start frame), the others go on from their 8th frame
    np.testing.assert_array_equal(env._lengths.numpy(), np.where(ended, 0, C))
    np.testing.assert_array_equal(obs["image"][ended], env.starts.frames[env.start_index[ended]])
    assert not np.array_equal(obs["image"][~ended], env.starts.frames[env.start_index[~ended]])


def test_seeds_decide_the_start_states_and_the_frames(model_dir, episodes):
    a, b = make(model_dir, episodes), make(model_dir, episodes)
    for env in (a, b):
        env.reset(seed=11)
    np.testing.assert_array_equal(a.start_index, b.start_index)
    out_a, out_b = a.chunk_step(actions(7)), b.chunk_step(actions(7))
    np.testing.assert_array_equal(out_a[0]["image"], out_b[0]["image"])
    # one seed per env: equal seeds (a GRPO group) start from one state
    a.reset(seed=[21, 21, 21, 22, 22, 22])
    assert len(set(a.start_index[:3])) == 1 and len(set(a.start_index[3:])) == 1
    starts = {tuple(a.reset(seed=s) and a.start_index) for s in range(4)}
    assert len(starts) > 1  # different seeds, different draws


def test_a_config_names_the_env(model_dir, calvin_trajectories):
    cfg = OmegaConf.create({"id": "WorldModel-v0", "num_envs": 4, "max_episode_steps": 24,
                            "kwargs": {"model": str(model_dir), "trajectories": str(calvin_trajectories),
                                       "device": "cpu"}})
    env = envs.make_vector_env(cfg, seed=0)
    assert isinstance(env, WorldModelVectorEnv) and env.num_envs == 4 and env.max_episode_steps == 24
    cfg.kwargs.model = None
    with pytest.raises(ValueError, match="env.kwargs.model"):
        envs.make_vector_env(cfg)
