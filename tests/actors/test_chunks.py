"""Vector env auto-reset and chunking: what the actor sends is exactly what the env produced."""
from __future__ import annotations

import numpy as np
from omegaconf import OmegaConf

from actors.chunk import ChunkBuilder
from core.roles import Env
from envs import make_vector_env
from replay.buffer import ReplayBuffer
from wire.schema import ChunkSchema, Spec


def pendulum(num_envs: int, max_steps: int = 5):
    return make_vector_env(OmegaConf.create({"id": "Pendulum-v1", "kwargs": {}, "max_episode_steps": max_steps}),
                           num_envs=num_envs)


def test_actions_are_rescaled_and_final_observations_kept():
    env = pendulum(2)
    assert env.single_action_space.low.min() == -1 and env.single_action_space.high.max() == 1
    env.reset(seed=0)
    for t in range(5):
        obs, reward, terminated, truncated, info = env.step(np.ones((2, 1), np.float32))
    assert truncated.all() and info["done"].all() and not terminated.any()
    assert info["episode_length"].tolist() == [5, 5]
    assert not np.allclose(info["final_obs"], obs)  # obs already belongs to the next episode


def test_chunk_step_matches_step_by_step():
    """The Env contract's chunk_step(actions[B, C, A]): the same as C calls of step, across an auto-reset."""
    a, b = pendulum(2), pendulum(2)  # episodes of 5 steps: each env resets inside the chunk of 7
    assert isinstance(a, Env)
    a.reset(seed=3), b.reset(seed=3)
    actions = np.random.default_rng(0).uniform(-1, 1, (2, 7, 1)).astype(np.float32)
    obs, rewards, term, trunc, infos = a.chunk_step(actions)
    assert rewards.shape == term.shape == trunc.shape == (2, 7) and len(infos) == 7
    for c in range(7):
        obs_b, r, term_b, trunc_b, info_b = b.step(actions[:, c])
        np.testing.assert_allclose(rewards[:, c], r)
        np.testing.assert_array_equal(term[:, c], term_b)
        np.testing.assert_array_equal(trunc[:, c], trunc_b)
        np.testing.assert_array_equal(infos[c]["done"], info_b["done"])
        np.testing.assert_allclose(infos[c]["final_obs"], info_b["final_obs"])
    np.testing.assert_allclose(obs, obs_b)
    assert trunc[:, 4].all() and not trunc[:, [0, 1, 2, 3, 5, 6]].any()  # step 5 ended both episodes


def test_chunks_fill_the_buffer_with_correct_next_observations():
    env = pendulum(2, max_steps=5)
    obs = env.reset(seed=1)
    spec = Spec(obs={"": ((3,), "float32")}, action=((1,), "float32"))
    builder = ChunkBuilder(ChunkSchema(spec, chunk_len=8, num_envs=2))
    builder.start(obs)
    true_next = []  # (obs, next obs) pairs as the env produced them
    while True:
        action = np.zeros((2, 1), np.float32)
        prev = obs
        obs, r, term, trunc, info = env.step(action)
        for i in range(2):
            nxt = info["final_obs"][i] if info["done"][i] else obs[i]
            true_next.append((prev[i].copy(), nxt.copy()))
        if builder.add(action, r, term, trunc, obs, info["final_obs"]):
            break
    chunk = builder.finish()
    buf = ReplayBuffer(spec, capacity=64, chunk_len=8)
    assert buf.add_chunk(chunk) == 16
    batch = buf.sample(256, np.random.default_rng(0))
    pairs = {tuple(np.round(o, 5)): tuple(np.round(n, 5)) for o, n in true_next}
    for o, n in zip(batch["obs"], batch["next_obs"]):
        assert pairs[tuple(np.round(o, 5))] == tuple(np.round(n, 5))
