"""What a pi0 reads from observations comes from the env's observation space (policies/vla/pi0_policy.py's
pi0_layout, used by pi0_build.py): the play table's two cameras and 15-dim robot_obs, the Gaussian-rendered scene's
one camera and 26-dim state; saved with the weights, checked against the env when both are given."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs.calvin.play_table import observation_space
from learner.vla_checkpoint import load_vla, save_vla
from policies.vla.build import build_vla_policy
from policies.vla.config import VLAConfig
from policies.vla.pi0_policy import Pi0Layout, pi0_layout


def one_camera_space(size: int = 24, state: int = 26) -> gym.spaces.Dict:
    """The layout of ZarlGSPutCubeOnPlate-v0's RGB observations (envs/maniskill/vector.py)."""
    return gym.spaces.Dict({"base_camera": gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
                            "instruction": gym.spaces.Box(0, 255, (64,), np.uint8),
                            "state": gym.spaces.Box(-np.inf, np.inf, (state,), np.float32)})


def test_layouts_of_the_play_table_and_the_one_camera_scene():
    assert pi0_layout(observation_space(16, 12), "robot_obs") == Pi0Layout(("rgb_gripper", "rgb_static"), "robot_obs",
                                                                           15)
    assert pi0_layout(one_camera_space(), "state") == Pi0Layout(("base_camera",), "state", 26)


def test_bad_spaces_are_named():
    with pytest.raises(ValueError, match="vla.state_key='state' is not an observation entry.*robot_obs"):
        pi0_layout(observation_space(16, 16), "state")
    with pytest.raises(ValueError, match="no camera"):
        pi0_layout(gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (4,), np.float32)}), "state")
    with pytest.raises(ValueError, match="must be a vector"):
        pi0_layout(one_camera_space(), "base_camera")
    with pytest.raises(ValueError, match="dict observation"):
        pi0_layout(gym.spaces.Box(-1, 1, (4,), np.float32), "state")


def test_a_tiny_pi05_built_for_one_camera_acts_and_its_saved_layout_rebuilds_it(tmp_path):
    cfg = VLAConfig(model="tiny_pi05", action_chunk=5, pi0_horizon=5, logprob_type="action", lora=False)
    with pytest.raises(ValueError, match="observation space"):
        build_vla_policy(cfg, "cpu", 0)  # neither the env's space nor saved weights: nothing says what it reads
    policy = build_vla_policy(cfg, "cpu", 0, obs_space=one_camera_space())
    mc = policy.model.config
    assert (mc.num_images, mc.state_dim) == (1, 26) and policy.cfg.image_keys == ("base_camera",)
    rng = np.random.default_rng(0)
    obs = {"base_camera": rng.integers(0, 256, (2, 24, 24, 3), dtype=np.uint8),
           "state": rng.normal(size=(2, 26)).astype(np.float32), "instruction": ["pick up the cube"] * 2}
    policy.generator.manual_seed(1)
    actions = policy.act(obs, deterministic=True)
    assert actions.shape == (2, 5, 7)
    saved = load_vla(save_vla(policy, cfg, tmp_path / "ckpt", label="s0"))
    assert saved.layout == {"image_keys": ["base_camera"], "state_key": "state", "state_dim": 26}
    again = build_vla_policy(cfg, "cpu", 0, saved=saved)  # no env at hand: the saved layout
    again.generator.manual_seed(1)
    np.testing.assert_array_equal(again.act(obs, deterministic=True), actions)
    with pytest.raises(ValueError, match="trained on observations"):
        build_vla_policy(cfg, "cpu", 0, saved=saved, obs_space=one_camera_space(state=20))
