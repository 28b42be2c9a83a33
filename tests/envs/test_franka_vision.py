"""PandaPickCubeVision-v0 and rendering: a few real offscreen renders (osmesa on CPU, egl on GPU)."""
from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest

import envs.franka  # noqa: F401  (registers the ids, picks the GL backend)
from envs import rendering
from envs.franka.pick_cube import PandaPickCubeEnv


@pytest.fixture(scope="module")
def vision_env():
    env = gym.make("PandaPickCubeVision-v0")
    yield env
    env.close()


def test_vision_observation_space_and_shapes(vision_env):
    space = vision_env.observation_space
    assert isinstance(space, gym.spaces.Dict) and set(space.spaces) == {"state", "front", "wrist"}
    assert space["state"] == gym.spaces.Box(-np.inf, np.inf, (7,), np.float32)
    assert space["front"] == gym.spaces.Box(0, 255, (128, 128, 3), np.uint8)
    assert space["wrist"] == gym.spaces.Box(0, 255, (128, 128, 3), np.uint8)

    obs, _ = vision_env.reset(seed=0)
    obs, *_ = vision_env.step(np.array([0.0, 0.0, -1.0, -1.0], dtype=np.float32))
    assert space.contains(obs)
    for camera in ("front", "wrist"):
        image = obs[camera]
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert image.std() > 10, f"{camera} image is nearly uniform: nothing rendered?"
    assert not np.array_equal(obs["front"], obs["wrist"])


def test_vision_state_is_the_first_seven_state_features(vision_env):
    obs, _ = vision_env.reset(seed=2)
    state_env = PandaPickCubeEnv()
    state_obs, _ = state_env.reset(seed=2)
    np.testing.assert_array_equal(obs["state"], state_obs[:7])
    state_env.close()


def test_same_seed_renders_the_same_images(vision_env):
    first, _ = vision_env.reset(seed=11)
    again, _ = vision_env.reset(seed=11)
    other, _ = vision_env.reset(seed=12)  # the cube is elsewhere
    np.testing.assert_array_equal(first["front"], again["front"])
    assert not np.array_equal(first["front"], other["front"])


def test_state_env_renders_frames_for_videos():
    env = gym.make("PandaPickCube-v0", render_mode="rgb_array", render_width=160, render_height=96)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (96, 160, 3) and frame.dtype == np.uint8 and frame.std() > 10
    env.close()
    assert env.unwrapped._video_renderer is None


def test_expensive_effects_are_switchable():
    env = PandaPickCubeEnv(render_mode="rgb_array", render_width=64, render_height=64,
                           shadows=True, reflections=True, multisamples=4)
    env.reset(seed=0)
    assert env.render().shape == (64, 64, 3)
    assert env.model.vis.quality.offsamples == 4
    env.close()


def test_backend_choice(monkeypatch):
    assert os.environ["MUJOCO_GL"] in ("egl", "osmesa", "glfw", "glx")
    monkeypatch.setenv("MUJOCO_GL", "osmesa")  # the user's choice always wins
    assert rendering.choose_gl_backend() == "osmesa"
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    if rendering.nvidia_gpu_present() and rendering.gl_library_loadable("egl"):
        expected = "egl"
    else:
        expected = "osmesa" if rendering.gl_library_loadable("osmesa") else "disable"
    assert rendering.choose_gl_backend() == expected
    assert os.environ["MUJOCO_GL"] == expected
    if expected != "disable":
        assert os.environ["PYOPENGL_PLATFORM"] == expected


def test_rendering_without_a_gl_library_names_the_packages_to_install():
    with pytest.raises(RuntimeError, match="libosmesa6"):
        rendering._gl_context_class("disable")


def test_bad_render_options_give_clear_errors():
    with pytest.raises(ValueError, match="multisamples"):
        rendering.RenderOptions(multisamples=-1)
    with pytest.raises(ValueError, match="render size"):
        rendering.RenderOptions(width=0)
