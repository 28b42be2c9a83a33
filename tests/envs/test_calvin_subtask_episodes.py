"""The play table with a subtask drawn per episode (envs/calvin/subtask_episodes.py): the draw's distribution
under a seed, feasibility from the start, the prefix done before the episode, the instruction in the
observation and in the policy's prompt, the vector env's per-episode subtask."""
from __future__ import annotations

import collections

import gymnasium as gym
import numpy as np
import pytest

from envs.calvin.chains import Symbolic, effect
from envs.calvin.language import phrasings
from envs.calvin.subtask_episodes import draw_episode, resolve_tasks
from envs.calvin.tasks import TASKS
from core.instruction import decode_instruction

pytest.importorskip("pybullet")


def test_the_draw_is_uniform_over_the_subtasks_and_their_phrasings_and_fixed_by_the_seed():
    tasks = resolve_tasks("all")
    assert len(tasks) == 34 and set(tasks) == set(TASKS)
    rng = np.random.default_rng(7)
    plans = [draw_episode(tasks, rng) for _ in range(3400)]
    counts = collections.Counter(p.task for p in plans)
    assert set(counts) == set(TASKS)
    # 100 expected per subtask: a multinomial's counts lie within 100 +- 4.3 sd (sd 9.8) for all 34 w.p. > 0.999
    assert 58 <= min(counts.values()) and max(counts.values()) <= 142
    chi2 = sum((n - 100) ** 2 / 100 for n in counts.values())
    assert chi2 < 66  # chi-square with 33 degrees of freedom: P(> 66) < 0.001
    for task in TASKS:
        used = collections.Counter(p.instruction for p in plans if p.task == task)
        assert set(used) == set(phrasings(task, "train"))
    again = [draw_episode(tasks, np.random.default_rng(7)) for _ in range(1)]
    assert again[0] == plans[0]
    other = [draw_episode(tasks, np.random.default_rng(8)) for _ in range(20)]
    assert [p.task for p in other] != [p.task for p in plans[:20]]


def test_every_drawn_subtask_is_feasible_after_its_prefix():
    rng = np.random.default_rng(3)
    prefixes = collections.Counter()
    for _ in range(2000):
        plan = draw_episode(resolve_tasks("all"), rng)
        s = Symbolic.of(plan.start)
        for t in plan.prefix:
            s = effect(s, t)
            assert s is not None
        assert effect(s, plan.task) is not None
        prefixes[(plan.task, len(plan.prefix))] += 1
    # only the subtasks that need a held block (a lift first) or a stack (a lift and a stack) have a prefix
    assert {t for (t, n) in prefixes if n} == {"place_in_slider", "place_in_drawer", "stack_block", "unstack_block"}
    assert all(n == (2 if t == "unstack_block" else 1) for (t, n) in prefixes if n)


def test_a_list_of_subtasks_and_bad_values():
    rng = np.random.default_rng(0)
    assert {draw_episode(resolve_tasks(["open_drawer", "turn_on_led"]), rng).task for _ in range(50)} == {
        "open_drawer", "turn_on_led"}
    with pytest.raises(ValueError, match="unknown subtask"):
        resolve_tasks(["open_drawer", "fly"])
    with pytest.raises(ValueError, match="'all' or a list"):
        resolve_tasks("open_drawer")
    with pytest.raises(ValueError, match="not both"):
        gym.make("CalvinPlayTable-v0", task="open_drawer", tasks="all", cameras=False)


def test_the_env_runs_the_prefix_judges_from_after_it_and_shows_the_instruction():
    env = gym.make("CalvinPlayTable-v0", tasks=["place_in_drawer"], static_size=16, gripper_size=16,
                   max_episode_steps=10)
    try:
        obs, info = env.reset(seed=11)
        base = env.unwrapped
        assert info["task"] == "place_in_drawer" and len(info["prefix"]) == 1
        assert info["prefix"][0] in {f"lift_{c}_block_table" for c in ("red", "blue", "pink")}
        assert env.observation_space["instruction"].shape == obs["instruction"].shape == (64,)
        assert decode_instruction(obs["instruction"]) == info["instruction"] in phrasings("place_in_drawer", "train")
        # the lift is done: the oracle's start state holds the block, and the prefix's steps are not the episode's
        assert any(b.held for b in base.start_state.blocks.values())
        assert base.scene_state().drawer == pytest.approx(base.start_state.drawer)
        obs2, _, _, _, step_info = env.step(np.zeros(7, np.float32))
        assert step_info["task"] == "place_in_drawer"
        assert decode_instruction(obs2["instruction"]) == info["instruction"]
        assert env._elapsed_steps == 1  # TimeLimit counted only the episode's step
    finally:
        env.close()


def test_the_vector_env_names_each_ended_episodes_subtask_and_the_instruction_reaches_the_policy():
    from envs import make_vector_env
    from launch.run_config import load_config, typed
    from policies.vla.build import build_vla_policy
    from policies.vla.config import VLAConfig

    cfg = typed(load_config("calvin_ppo_pi0_sde", ["logging.wandb=disabled", "env.max_episode_steps=1",
                                                   "env.kwargs.task=null", "env.kwargs.tasks=[open_drawer,turn_on_led]"]))
    env = make_vector_env(cfg.env, num_envs=2)
    try:
        obs = env.reset(seed=[5, 6])
        tasks = [e.unwrapped.task for e in env.envs]
        texts = decode_instruction(obs["instruction"])
        assert all(t in phrasings(task, "train") for t, task in zip(texts, tasks))
        policy = build_vla_policy(VLAConfig(model="tiny_pi0", action_chunk=5, pi0_horizon=5, logprob_type="action",
                                            lora=False, state_key="robot_obs"),
                                  "cpu", 0, obs_space=env.single_observation_space)

        def act(o):
            policy.generator.manual_seed(0)
            return policy.act(o, deterministic=True)
        # the policy's prompt is the env's instruction: the same actions as with the strings given, others
        # with another instruction
        np.testing.assert_array_equal(act(obs), act({**obs, "instruction": texts}))
        assert np.abs(act(obs) - act({**obs, "instruction": ["stack the blocks"] * 2})).max() > 1e-6
        _, _, _, _, info = env.step(np.zeros((2, 7), np.float32))  # the 1-step limit ends both episodes
        assert info["done"].all() and info["episode_task"] == tasks
    finally:
        env.close()
