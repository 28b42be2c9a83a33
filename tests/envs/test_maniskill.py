"""ManiSkill 3 backend on the CPU (PhysX CPU + lavapipe): gymnasium's check_env, observation layout,
instructions, seeding, the vector-env contract, the scripted experts per split, demonstrations on disk.

These tests need the `maniskill` extra and a Vulkan driver, which scripts/setup.sh installs; without
them they fail (CI must not pass by skipping them).
"""
from __future__ import annotations

import multiprocessing
import re
import time

import numpy as np
import pytest

try:
    import mani_skill  # noqa: F401
    import sapien  # noqa: F401
except ModuleNotFoundError as e:  # pragma: no cover
    pytest.fail(f"ManiSkill is not installed ({e}): run scripts/setup.sh (it installs the `maniskill` extra "
                f"and the Vulkan driver from bookworm-backports)", pytrace=False)

from gymnasium.utils.env_checker import check_env  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import envs  # noqa: E402
from envs.maniskill import (ManiSkillGymEnv, ManiSkillVectorEnv, decode_instruction, put_on_plate,  # noqa: E402
                            split_seeds)
from envs.maniskill.demos import DemoDataset, DemoWriter, expert_success_rate, record_demos  # noqa: E402
from envs.maniskill.expert import ScriptedExpert  # noqa: E402

PUT = "ZarlPutOnPlate-v1"
EXPERT_EPISODES = 50
COLOURS = "|".join(put_on_plate.COLOURS)
SHAPES = "|".join(put_on_plate.SHAPE_NAMES)


def _instruction_re(split):
    phrasings = put_on_plate.SEMANTIC_PHRASINGS if split == "semantic" else put_on_plate.TRAIN_PHRASINGS
    return re.compile("|".join(re.escape(p).replace(r"\{colour\}", f"({COLOURS})").replace(r"\{shape\}", f"({SHAPES})")
                               for p in phrasings) + "$")


@pytest.mark.parametrize("env_id,kwargs", [
    (PUT, dict(obs_mode="rgb", camera_size=64, wrist_camera_size=64)),
    (PUT, dict(obs_mode="state")),
    ("ManiSkill/PickCube-v1", dict(obs_mode="state")),
    ("ManiSkill/PushCube-v1", dict(obs_mode="rgb", camera_size=64)),
])
def test_check_env(env_id, kwargs):
    env = ManiSkillGymEnv(env_id, **kwargs)
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_put_on_plate_observations_and_instruction():
    env = envs.make_vector_env(OmegaConf.create({"id": PUT, "num_envs": 2, "kwargs": {"obs_mode": "rgb"}}))
    try:
        assert isinstance(env, ManiSkillVectorEnv)
        space = env.single_observation_space
        assert set(space.spaces) == {"state", "base_camera", "hand_camera", "instruction"}
        assert space["base_camera"].shape == (224, 224, 3) and space["base_camera"].dtype == np.uint8
        assert space["hand_camera"].shape == (128, 128, 3) and space["hand_camera"].dtype == np.uint8
        assert space["instruction"].shape == (put_on_plate.INSTRUCTION_BYTES,)
        assert space["state"].dtype == np.float32 and space["state"].shape == (26,)
        assert env.single_action_space.shape == (7,)
        assert np.all(env.single_action_space.low == -1) and np.all(env.single_action_space.high == 1)
        assert env.max_episode_steps == 80 and env.discrete is False  # what the rollout actor reads
        obs = env.reset(seed=3)
        for key, sub in space.spaces.items():
            assert obs[key].shape == (2, *sub.shape) and obs[key].dtype == sub.dtype, key
        assert obs["base_camera"].std() > 10  # a rendered scene, not a blank image
        texts = env.instructions()
        assert decode_instruction(obs["instruction"]) == texts
        for text in texts:
            assert _instruction_re("train").match(text), text
        obs, reward, term, trunc, info = env.step(np.zeros((2, 7), np.float32))
        assert info["instruction"] == texts and reward.dtype == np.float32 and term.dtype == bool
    finally:
        env.close()


@pytest.mark.parametrize("split", ["semantic", "vision"])
def test_split_instructions(split):
    env = ManiSkillVectorEnv(PUT, 1, obs_mode="state", split=split)
    try:
        seen = set()
        for seed in split_seeds(split, 8):
            env.reset(seed=[seed])
            text = env.instructions()[0]
            assert _instruction_re(split).match(text), text
            colour, shape = env.blocks[0].target_colour[0], put_on_plate.SHAPE_NAMES[int(env.blocks[0].target_index[0]) // 2]
            assert f"{colour} {shape}" in text
            if split == "semantic":
                assert shape in put_on_plate.SEMANTIC_SHAPES
            else:
                assert colour in put_on_plate.VISION_COLOURS
            seen.add(text)
        assert len(seen) > 1
    finally:
        env.close()


def test_split_seeds_fixed_and_disjoint():
    assert split_seeds("train", 5) == split_seeds("train", 5)
    sets = [set(split_seeds(s, 50)) for s in put_on_plate.SPLITS]
    assert all(len(s) == 50 for s in sets)
    assert not set.intersection(*sets[:2]) and not (sets[0] & sets[3])
    with pytest.raises(ValueError):
        split_seeds("nope", 1)


@pytest.mark.parametrize("env_id", [PUT, "ManiSkill/PickCube-v1"])
def test_same_seed_same_episode(env_id):
    """Same seed, same initial state and same trajectory, in any row of the vector."""
    actions = np.random.default_rng(0).uniform(-1, 1, (6, 2, 7)).astype(np.float32)
    a = ManiSkillVectorEnv(env_id, 2, obs_mode="state")
    b = ManiSkillVectorEnv(env_id, 2, obs_mode="state")
    try:
        oa = a.reset(seed=[11, 22])
        ob = b.reset(seed=[22, 11])
        np.testing.assert_array_equal(oa[0], ob[1])
        np.testing.assert_array_equal(oa[1], ob[0])
        assert not np.array_equal(oa[0], oa[1])
        for t in range(len(actions)):
            oa, ra, *_ = a.step(actions[t])
            ob, rb, *_ = b.step(actions[t][::-1].copy())
            np.testing.assert_allclose(oa[0], ob[1], atol=1e-5)
            np.testing.assert_allclose(oa[1], ob[0], atol=1e-5)
        # an int seed derives per-env seeds; resetting again with it repeats the episodes
        first = a.reset(seed=5)
        np.testing.assert_array_equal(a.reset(seed=5), first)
        if env_id == PUT:
            assert a.instructions() == a.instructions()
    finally:
        a.close()
        b.close()


def test_vector_contract_auto_reset_final_obs_stats_chunk_step():
    cfg = OmegaConf.create({"id": "ManiSkill/PickCube-v1", "num_envs": 2, "max_episode_steps": 4,
                            "kwargs": {"obs_mode": "rgb", "camera_size": 32}})
    env = envs.make_vector_env(cfg, seed=0)
    try:
        assert env.max_episode_steps == 4
        obs = env.reset(seed=[1, 2])
        zeros = np.zeros((2, 3, 7), np.float32)
        obs, rewards, term, trunc, infos = env.chunk_step(zeros)
        assert rewards.shape == term.shape == trunc.shape == (2, 3) and len(infos) == 3
        assert not any(i["done"].any() for i in infos)
        obs, rewards, term, trunc, infos = env.chunk_step(zeros)
        done = infos[0]["done"]  # 4th step: the time limit
        assert done.all() and trunc[:, 0].all() and not trunc[:, 1].any()
        assert (infos[0]["episode_length"] == 4).all() and (infos[1]["episode_length"] == 0).all()
        np.testing.assert_allclose(infos[0]["episode_return"], rewards[:, 0] * 0 + infos[0]["episode_return"])
        final = infos[0]["final_obs"]
        assert final["base_camera"].shape == (2, 32, 32, 3) and final["state"].any()
        assert set(infos[0]) >= {"done", "success", "episode_return", "episode_length", "episode_success",
                                 "final_obs"}
        # the envs went on with new, seeded episodes: not those of seeds 1 and 2 again
        assert not np.array_equal(final["state"], obs["state"])
        assert env.episode_seeds[0] not in (1, 2)
        with pytest.raises(ValueError):
            env.chunk_step(np.zeros((3, 2, 7), np.float32))
    finally:
        env.close()
    env.close()  # twice is fine
    assert env.blocks == []


def test_expert_success_per_split():
    """50 seeded episodes per split (goal >= 0.9 on train, >= 0.8 on the OOD splits), two splits at a time in two
    processes: each episode is single-core simulation."""
    goals = {"train": 0.9, "vision": 0.8, "semantic": 0.8, "execution": 0.8}
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        rates = pool.starmap(expert_success_rate, [(PUT, split_seeds(split, EXPERT_EPISODES), {"split": split})
                                                   for split in goals])
    print(f"\nexpert success {PUT} over {EXPERT_EPISODES} episodes per split: "
          f"{dict(zip(goals, rates))} ({time.perf_counter() - start:.1f} s)")
    for (split, goal), rate in zip(goals.items(), rates):
        assert rate >= goal, (split, rate)


@pytest.mark.parametrize("env_id", ["ManiSkill/PickCube-v1", "ManiSkill/PushCube-v1"])
def test_expert_small_tasks(env_id):
    rate = expert_success_rate(env_id, list(range(1000, 1010)))
    print(f"\nexpert success {env_id}: {rate:.2f} over 10 episodes")
    assert rate >= 0.9


def test_demo_writer_loader_exact_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    eps = []
    with DemoWriter(tmp_path / "ds", fps=10, state_dim=5, action_dim=7, cameras={"front": (16, 24, 3)}) as w:
        for e, T in enumerate((3, 5)):
            ep = {"state": rng.normal(size=(T, 5)).astype(np.float32),
                  "action": rng.uniform(-1, 1, (T, 7)).astype(np.float32),
                  "reward": rng.normal(size=T).astype(np.float32), "done": np.arange(T) == T - 1,
                  "success": np.arange(T) == T - 1, "front": rng.integers(0, 256, (T, 16, 24, 3), dtype=np.uint8),
                  "task": f"put the red cube on the plate {e}"}
            w.add_episode(ep["state"], ep["action"], ep["reward"], ep["done"], ep["success"],
                          {"front": ep["front"]}, task=ep["task"], seed=e)
            eps.append(ep)
    ds = DemoDataset(tmp_path / "ds")
    assert ds.num_episodes == 2 and len(ds) == 8 and ds.info["codebase_version"] == "v2.1"
    assert ds.info["features"]["observation.images.front"]["dtype"] == "image"
    for e, ep in enumerate(eps):
        got = ds.episode(e)
        np.testing.assert_array_equal(got["observation.state"], ep["state"])
        np.testing.assert_array_equal(got["action"], ep["action"])
        np.testing.assert_array_equal(got["next.reward"], ep["reward"])
        np.testing.assert_array_equal(got["next.done"], ep["done"])
        np.testing.assert_array_equal(got["observation.images.front"], ep["front"])
        assert got["task"] == ep["task"]
        assert list(got["frame_index"]) == list(range(len(ep["action"])))
    assert list(next(iter(ds.frames()))) and sum(1 for _ in ds.frames()) == 8
    with pytest.raises(FileExistsError):
        DemoWriter(tmp_path / "ds", fps=10, state_dim=5, action_dim=7, cameras={})


def test_record_expert_demos_round_trip(tmp_path):
    # Both frame encodings (raw arrays, H.264 video) from one recording env and one replay env: each RGB env
    # compiles its shaders on the CPU's Vulkan driver, which is most of this test's time.
    env = ManiSkillVectorEnv(PUT, 2, obs_mode="rgb", camera_size=64, wrist_camera_size=64)
    replay = ManiSkillVectorEnv(PUT, 1, obs_mode="rgb", camera_size=64, wrist_camera_size=64)
    try:
        seeds = split_seeds("train", 2)
        for video in (False, True):
            counts = record_demos(env, ScriptedExpert(PUT, 2), tmp_path / f"demos_{video}", seeds, video=video)
            assert counts == {"attempted": 2, "successes": 2, "written": 2}
            # replaying the recorded actions from the recorded seed gives the recorded observations
            ds = DemoDataset(tmp_path / f"demos_{video}")
            ep = ds.episode(0)
            assert ep["task"] == ds.episodes[0]["tasks"][0] and ds.episodes[0]["seed"] == seeds[0]
            assert _instruction_re("train").match(ep["task"])
            obs = replay.reset(seed=[seeds[0]])
            assert replay.instructions()[0] == ep["task"]
            for t in range(len(ep["action"])):
                np.testing.assert_allclose(obs["state"][0], ep["observation.state"][t], atol=1e-5)
                images = ep["observation.images.base_camera"][t]
                if video:
                    # H.264 with 4:2:0 chroma: a few levels off on average at 64x64
                    assert np.abs(images.astype(int) - obs["base_camera"][0]).mean() < 8
                else:
                    np.testing.assert_array_equal(images, obs["base_camera"][0])
                obs, _, _, _, info = replay.step(ep["action"][t][None])
            assert info["done"][0] and info["episode_success"][0]
    finally:
        replay.close()
        env.close()


@pytest.mark.parametrize("env_id", [PUT, "ManiSkill/PickCube-v1"])
def test_auto_reset_episodes_are_seeded(env_id):
    """An episode begun by an auto-reset (a partial reset, as on the GPU) starts as a fresh env reset
    with that episode's seed does."""
    env = ManiSkillVectorEnv(env_id, 2, obs_mode="state", max_episode_steps=3, ignore_terminations=True)
    fresh = ManiSkillVectorEnv(env_id, 1, obs_mode="state")
    try:
        env.reset(seed=[7, 8])
        zeros = np.zeros((2, 7), np.float32)
        for _ in range(3):
            obs, _, _, _, info = env.step(zeros)
        assert info["done"].all()
        for b in range(2):
            start = fresh.reset(seed=[int(env.episode_seeds[b])])
            np.testing.assert_allclose(obs[b], start[0], atol=1e-6)
            if env_id == PUT:
                assert env.instructions()[b] == fresh.instructions()[0]
        again = ManiSkillVectorEnv(env_id, 2, obs_mode="state", max_episode_steps=3, ignore_terminations=True)
        try:
            again.reset(seed=[7, 8])
            for _ in range(3):
                obs2, *_ = again.step(zeros)
            np.testing.assert_array_equal(obs2, obs)
        finally:
            again.close()
    finally:
        env.close()
        fresh.close()


def test_import_envs_does_not_import_maniskill_and_gym_make_works():
    """`import envs` stays fast (no ManiSkill import, 3-9 s, in every role process); gymnasium.make of
    ZarlPutOnPlate-v1 after it imports ManiSkill then."""
    import subprocess
    import sys
    code = ("import sys, envs, gymnasium as gym; assert 'mani_skill' not in sys.modules; "
            "e = gym.make('ZarlPutOnPlate-v1', obs_mode='state', num_envs=1, sim_backend='cpu'); "
            "o, _ = e.reset(seed=1); assert tuple(o.shape) == (1, 42), o.shape; e.close(); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_gpu_simulation_without_sapiens_physx_gpu_library_is_a_clear_error():
    """SAPIEN fetches its PhysX GPU library from GitHub on first use; without it (no network) the backend says
    where the file must go instead of attempting the download, and `auto` falls back to the CPU."""
    from envs.maniskill.vector import physx_gpu_library

    if physx_gpu_library().exists():
        pytest.skip("this machine has the PhysX GPU library")
    with pytest.raises(RuntimeError, match="libPhysXGpu_64.so"):
        ManiSkillVectorEnv("ManiSkill/PickCube-v1", 2, obs_mode="state", sim_backend="gpu")
    env = ManiSkillVectorEnv("ManiSkill/PickCube-v1", 1, obs_mode="state", sim_backend="auto")
    try:
        assert env.sim_backend == "cpu"
    finally:
        env.close()
