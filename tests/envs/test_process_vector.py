"""env.workers > 1: the copies step in worker processes (envs/process_vector.py), with the in-process episodes."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from omegaconf import OmegaConf

from core import tree
from core.config import ConfigError, EnvConfig
from envs import make_vector_env
from envs.process_vector import ProcessVectorEnv
from launch.run_config import load_config

# Short episodes, so that 25 steps cross several automatic resets in every copy.
STATE = dict(id="PandaPickCube-v0", num_envs=5, max_episode_steps=8)


def _env_cfg(**over) -> EnvConfig:
    return OmegaConf.structured(EnvConfig(**{**STATE, **over}))


def _assert_same(a, b) -> None:
    for key, x in tree.flatten(a).items():
        np.testing.assert_array_equal(np.asarray(x), np.asarray(tree.flatten(b)[key]), err_msg=key)


def test_workers_give_the_in_process_vectors_episodes():
    local = make_vector_env(_env_cfg())
    spread = make_vector_env(_env_cfg(workers=2))  # shares of 3 and 2 copies
    try:
        assert isinstance(spread, ProcessVectorEnv) and spread.num_envs == 5
        assert spread.single_observation_space == local.single_observation_space
        assert spread.single_action_space == local.single_action_space
        _assert_same(local.reset(seed=123), spread.reset(seed=123))
        rng = np.random.default_rng(0)
        ends = 0
        for _ in range(25):
            actions = rng.uniform(-1, 1, (5, *local.single_action_space.shape)).astype(np.float32)
            want, got = local.step(actions), spread.step(actions)
            for w, g in zip(want[:4], got[:4]):
                _assert_same(w, g)
            info_w, info_g = want[4], got[4]
            assert info_g["episode_task"] == info_w["episode_task"]
            _assert_same({k: v for k, v in info_w.items() if k != "episode_task"},
                         {k: v for k, v in info_g.items() if k != "episode_task"})
            ends += int(info_g["done"].sum())
        assert ends == 15  # 25 steps of 8-step episodes: 3 ends in each of the 5 copies
        assert spread.reports_success == local.reports_success
        # one seed per copy, as the evaluator gives them
        _assert_same(local.reset(seed=[7, 8, 9, 10, 11]), spread.reset(seed=[7, 8, 9, 10, 11]))
    finally:
        local.close()
        spread.close()
    assert not any(p.is_alive() for p in spread._procs)


def test_a_dead_worker_is_an_error_that_names_it_not_a_hang():
    env = ProcessVectorEnv(_env_cfg(), 4, workers=2)
    try:
        env.reset(seed=0)
        victim = env._procs[1]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(timeout=10)
        with pytest.raises(RuntimeError, match="worker 1") as err:
            env.step(np.zeros((4, *env.single_action_space.shape), np.float32))
        assert str(victim.pid) in str(err.value) and "PandaPickCube-v0" in str(err.value)
    finally:
        env.close()


def test_an_env_that_cannot_be_made_fails_in_the_caller_with_the_workers_error():
    with pytest.raises(RuntimeError, match="no_such_setting"):
        ProcessVectorEnv(_env_cfg(kwargs={"no_such_setting": 1}), 2, workers=2)


def test_bad_worker_counts_are_refused():
    with pytest.raises(ValueError, match="env.workers=3"):
        ProcessVectorEnv(_env_cfg(), 2, workers=3)
    with pytest.raises(ValueError, match="env.workers"):
        make_vector_env(_env_cfg(id="ManiSkill/PickCube-v1", workers=2))
    one = make_vector_env(_env_cfg(workers=4), num_envs=1)  # at most one process per copy: here, none
    assert not isinstance(one, ProcessVectorEnv) and one.num_envs == 1
    one.close()
    with pytest.raises(ConfigError, match="env.workers"):
        load_config("frankasim_sac_mlp", ["env.workers=0"])
