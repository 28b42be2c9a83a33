"""PandaPickCube-v0 (state observations): spaces, conventions, seeding, reward, success, errors."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import envs.franka  # noqa: F401  (registers the ids)
from envs import rendering
from envs.franka.pick_cube import PandaPickCubeConfig, PandaPickCubeEnv

TCP, TCP_VEL, GRIP, BLOCK = slice(0, 3), slice(3, 6), 6, slice(7, 10)


@pytest.fixture(scope="module")
def env():
    env = PandaPickCubeEnv()
    yield env
    env.close()


def scripted_grasp_action(obs: np.ndarray, phase: list[str]) -> np.ndarray:
    """Above the cube -> down -> close -> lift, read from the state observation only.

    ``phase`` is a one-element list holding the controller's state between calls.
    """
    tcp, opening, block = obs[TCP], obs[GRIP], obs[BLOCK]
    action = np.zeros(4, dtype=np.float32)
    if phase[0] == "approach":
        error = block + [0.0, 0.0, 0.08] - tcp
        action[3] = -1.0
        if np.linalg.norm(error) < 0.01:
            phase[0] = "descend"
    elif phase[0] == "descend":
        error = block - tcp
        action[3] = -1.0
        if np.linalg.norm(error) < 0.008:
            phase[0] = "close"
    else:
        error = np.zeros(3)
        action[3] = 1.0
        # Lift once the pads have stopped closing on the 4 cm cube.
        if phase[0] == "close" and opening < 0.045:
            phase[0] = "lift"
        if phase[0] == "lift":
            error = np.array([0.0, 0.0, 0.2])
    action[:3] = np.clip(error / 0.03, -1.0, 1.0)
    return action


def run_scripted_episode(env: gym.Env, seed: int) -> tuple[bool, int]:
    obs, _ = env.reset(seed=seed)
    phase = ["approach"]
    for step in range(1, 1000):
        obs, _, terminated, truncated, info = env.step(scripted_grasp_action(obs, phase))
        if info["success"] or terminated or truncated:
            return info["success"], step
    return False, step


def test_spaces_and_registration():
    env = gym.make("PandaPickCube-v0")
    assert env.spec.max_episode_steps == 100
    assert env.observation_space == gym.spaces.Box(-np.inf, np.inf, (10,), np.float32)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (10,)
    assert env.observation_space.contains(obs)
    assert info == {"success": False, "lift": 0.0, "grasped": False}
    env.close()


# The observation bounds are honestly infinite (velocities, positions of a pushed cube).
@pytest.mark.filterwarnings("ignore:.*Box observation space m.*:UserWarning")
def test_passes_gymnasium_env_checker():
    from gymnasium.utils.env_checker import check_env

    env = PandaPickCubeEnv()
    check_env(env, skip_render_check=True)
    env.close()


def test_observation_layout_after_reset(env):
    obs, _ = env.reset(seed=3)
    config = env.config
    np.testing.assert_allclose(obs[TCP], config.home_tcp, atol=2e-3)
    np.testing.assert_allclose(obs[TCP_VEL], 0.0, atol=1e-3)
    assert 0.08 < obs[GRIP] < 0.09  # the 2F-85 opens 85 mm
    block_xy = obs[BLOCK][:2]
    assert np.all(block_xy >= config.block_xy_low) and np.all(block_xy <= config.block_xy_high)
    assert obs[BLOCK][2] == pytest.approx(0.02, abs=1e-3)  # a 4 cm cube resting on the table
    # The same quantities read straight from MuJoCo, in world coordinates.
    np.testing.assert_allclose(obs[TCP], env.data.site_xpos[env.ids.tcp_site], atol=1e-6)
    np.testing.assert_allclose(obs[BLOCK], env.data.xpos[env.ids.block_body], atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_positive_action_moves_tcp_along_positive_world_axis(env, axis):
    obs0, _ = env.reset(seed=0)
    action = np.zeros(4, dtype=np.float32)
    action[axis] = 1.0
    obs, *_ = env.step(action)
    moved = obs[TCP] - obs0[TCP]
    max_step = env.config.max_tcp_speed / env.config.control_hz
    assert moved[axis] > 0.6 * max_step
    assert np.abs(np.delete(moved, axis)).max() < 0.1 * max_step
    assert obs[TCP_VEL][axis] > 0.0
    obs, *_ = env.step(-action)
    assert obs[TCP][axis] < obs0[TCP][axis] + moved[axis]


def test_positive_gripper_command_closes_and_negative_opens(env):
    obs, _ = env.reset(seed=0)
    open_gap = obs[GRIP]
    for _ in range(5):
        obs, *_ = env.step(np.array([0, 0, 0, 1.0], dtype=np.float32))
    assert obs[GRIP] < 0.005  # closed on nothing
    for _ in range(5):
        obs, *_ = env.step(np.array([0, 0, 0, -1.0], dtype=np.float32))
    assert obs[GRIP] == pytest.approx(open_gap, abs=0.002)


def test_actions_are_clipped_and_tcp_stays_in_workspace(env):
    env.reset(seed=0)
    for _ in range(30):
        obs, *_ = env.step(np.array([5.0, -5.0, -5.0, -1.0], dtype=np.float32))
    low, high = np.array(env.config.workspace_low), np.array(env.config.workspace_high)
    assert np.all(obs[TCP] >= low - 0.01) and np.all(obs[TCP] <= high + 0.01)


def test_same_seed_same_trajectory_different_seed_different_block():
    actions = np.random.default_rng(7).uniform(-1, 1, size=(30, 4)).astype(np.float32)

    def rollout(env, seed):
        obs, _ = env.reset(seed=seed)
        trajectory = [obs]
        for action in actions:
            obs, reward, *_ = env.step(action)
            trajectory.extend([obs, np.float32([reward])])
        return np.concatenate(trajectory)

    env_a, env_b = PandaPickCubeEnv(), PandaPickCubeEnv()
    first = rollout(env_a, 123)
    np.testing.assert_array_equal(first, rollout(env_b, 123))  # another instance
    rollout(env_a, 5)
    np.testing.assert_array_equal(first, rollout(env_a, 123))  # the same instance, reused
    blocks = {tuple(env_a.reset(seed=seed)[0][BLOCK]) for seed in range(10)}
    assert len(blocks) == 10
    env_a.close()
    env_b.close()


def test_reset_without_seed_continues_the_seeded_stream():
    env_a, env_b = PandaPickCubeEnv(), PandaPickCubeEnv()
    env_a.reset(seed=9)
    env_b.reset(seed=9)
    np.testing.assert_array_equal(env_a.reset()[0], env_b.reset()[0])
    env_a.close()
    env_b.close()


def test_block_area_is_configurable():
    env = PandaPickCubeEnv(block_xy_low=[0.5, 0.1], block_xy_high=np.array([0.5, 0.1]))  # any sequence
    assert env.config.block_xy_low == (0.5, 0.1)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs[BLOCK][:2], [0.5, 0.1], atol=1e-6)
    env.close()


def test_dense_reward_matches_its_formula(env):
    obs, _ = env.reset(seed=1)
    obs, reward, *_ = env.step(np.zeros(4, dtype=np.float32))
    distance = np.linalg.norm(obs[TCP] - obs[BLOCK])
    assert reward == pytest.approx(0.3 * math.exp(-20 * distance), rel=1e-4, abs=1e-6)


def test_scripted_grasp_succeeds_in_at_least_90_percent_of_episodes(env):
    outcomes = [run_scripted_episode(env, seed) for seed in range(20)]
    successes = sum(success for success, _ in outcomes)
    assert successes >= 18, outcomes
    assert max(steps for _, steps in outcomes) <= 100, outcomes  # within the registered time limit


def test_scripted_grasp_at_50_hz():
    env = gym.make("PandaPickCube-v0", control_hz=50, max_episode_steps=500)
    assert env.unwrapped.substeps == 10
    outcomes = [run_scripted_episode(env, seed) for seed in range(3)]
    assert all(success for success, _ in outcomes), outcomes
    env.close()


def test_success_needs_lift_and_grip_sparse_reward_and_termination():
    env = PandaPickCubeEnv(reward_type="sparse", terminate_on_success=True)
    obs, _ = env.reset(seed=4)
    phase = ["approach"]
    rewards, successes, terminations = [], [], []
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(scripted_grasp_action(obs, phase))
        rewards.append(reward)
        successes.append(info["success"])
        terminations.append(terminated)
        if terminated:
            break
    assert successes[-1] and terminations[-1] and not any(successes[:-1]) and not any(terminations[:-1])
    assert rewards == [float(s) for s in successes]
    assert info["grasped"] and info["lift"] >= 0.1
    assert obs[BLOCK][2] - 0.02 >= 0.1

    # A cube that is high up but not held does not count.
    env.reset(seed=4)
    adr = env.ids.block_qpos
    env.data.qpos[adr + 2] = 0.3
    _, reward, terminated, _, info = env.step(np.zeros(4, dtype=np.float32))
    assert info["lift"] > 0.1 and not info["grasped"]
    assert not info["success"] and reward == 0.0 and not terminated
    env.close()


def test_time_limit_truncates_after_100_steps():
    env = gym.make("PandaPickCube-v0")
    env.reset(seed=0)
    for step in range(1, 101):
        _, _, terminated, truncated, _ = env.step(np.zeros(4, dtype=np.float32))
        assert not terminated
        assert truncated == (step == 100)
    env.close()


def test_state_env_creates_no_gl_context():
    env = gym.make("PandaPickCube-v0")
    env.reset(seed=0)
    env.step(np.zeros(4, dtype=np.float32))
    assert env.unwrapped._video_renderer is None
    assert len(rendering._open_renderers) == 0
    env.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"reward_typ": "dense"}, TypeError, "reward_typ"),
        ({"reward_type": "shaped"}, ValueError, "reward_type"),
        ({"control_hz": 7}, ValueError, "control_hz"),
        ({"control_hz": -10}, ValueError, "control_hz"),
        ({"block_xy_low": (0.6, 0.0), "block_xy_high": (0.4, 0.1)}, ValueError, "block_xy_low"),
        ({"block_xy_low": (0.4,)}, ValueError, "block_xy_low"),
        ({"block_xy_low": 0.4}, ValueError, "block_xy_low"),
        ({"multisamples": -2}, ValueError, "multisamples"),
        ({"home_tcp": (2.0, 0.0, 0.25)}, ValueError, "home_tcp"),
        ({"max_tcp_speed": 0.0}, ValueError, "max_tcp_speed"),
        ({"image_size": 0}, ValueError, "image_size"),
        ({"render_mode": "human"}, ValueError, "render_mode"),
    ],
)
def test_bad_kwargs_give_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        PandaPickCubeEnv(**kwargs)


def test_bad_actions_give_clear_errors(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([0.0, np.nan, 0.0, 0.0], dtype=np.float32))


def test_config_defaults_are_sensible():
    config = PandaPickCubeConfig()
    assert config.control_hz == 10 and config.reward_type == "dense" and not config.terminate_on_success
    assert not config.shadows and not config.reflections and config.multisamples == 0
