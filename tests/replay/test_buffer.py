"""The off-policy ring buffer: observations stored once, next observations by index, whole-row eviction."""
from __future__ import annotations

import numpy as np
import pytest

from replay.buffer import ReplayBuffer
from wire.schema import ChunkError, Spec
from replay.rate_limiter import RateLimiter


def make_chunk(B: int, T: int, start: int, ends: dict[int, list[int]] | None = None) -> dict:
    """Observations count up from `start` per row (obs value = 1000*b + step), so the tests can check which
    observation each transition points at; final observations are negative."""
    ends = ends or {}
    obs = np.zeros((B, T + 1, 2), np.float32)
    for b in range(B):
        obs[b, :, 0] = 1000 * b + start + np.arange(T + 1)
    terminated = np.zeros((B, T), bool)
    truncated = np.zeros((B, T), bool)
    final_index, final_obs = [], []
    for b, steps in ends.items():
        for t in steps:
            truncated[b, t] = True
            final_index.append((b, t))
            final_obs.append([-(1000 * b + start + t + 1), 0.0])
    order = np.lexsort((np.array([b for b, _ in final_index]), np.array([t for _, t in final_index]))) \
        if final_index else []
    return {"obs": obs, "action": np.zeros((B, T, 1), np.float32), "reward": np.arange(B * T, dtype=np.float32).reshape(B, T),
            "terminated": terminated, "truncated": truncated,
            "final_obs": np.array([final_obs[i] for i in order], np.float32).reshape(-1, 2),
            "final_index": np.array([final_index[i] for i in order], np.int32).reshape(-1, 2)}


SPEC = Spec(obs={"": ((2,), "float32")}, action=((1,), "float32"))


def test_next_observation_is_the_following_step_or_the_final_one():
    buf = ReplayBuffer(SPEC, capacity=100, chunk_len=4)
    buf.add_chunk(make_chunk(B=2, T=4, start=0, ends={1: [1]}))
    assert len(buf) == 8
    batch = buf.sample(500, np.random.default_rng(0))
    obs, nxt = batch["obs"][:, 0], batch["next_obs"][:, 0]
    for o, n in zip(obs, nxt):
        if o == 1001:  # row 1 ended its episode after step 1: its next obs is the final one
            assert n == -1002
        else:
            assert n == o + 1


def test_rows_are_evicted_whole_and_oldest_first():
    buf = ReplayBuffer(SPEC, capacity=8, chunk_len=4)
    for i in range(5):
        buf.add_chunk(make_chunk(B=1, T=4, start=10 * i))
    assert len(buf) == 8  # two newest rows
    obs = buf.sample(200, np.random.default_rng(1))["obs"][:, 0]
    assert obs.min() >= 30 and set(np.unique(obs)) <= set(range(30, 34)) | set(range(40, 44))
    nxt = buf.sample(200, np.random.default_rng(2))
    assert np.all(nxt["next_obs"][:, 0] == nxt["obs"][:, 0] + 1)


def test_images_are_stored_once():
    spec = Spec(obs={"front": ((128, 128, 3), "uint8")}, action=((4,), "float32"))
    per = ReplayBuffer.bytes_per_transition(spec, chunk_len=64)
    raw = 128 * 128 * 3
    assert per < 1.1 * raw  # not 2x as with a stored next observation


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(obs=c["obs"][:, :-1]), "obs"),
    (lambda c: c.update(action=c["action"][:, :, :0]), "action"),
    (lambda c: c["reward"].__setitem__((0, 0), np.nan), "NaN"),
    (lambda c: c.update(final_index=np.zeros((1, 2), np.int32)), "final_index"),
])
def test_malformed_chunks_are_rejected_before_anything_is_written(mutate, message):
    buf = ReplayBuffer(SPEC, capacity=100, chunk_len=4)
    chunk = make_chunk(B=2, T=4, start=0)
    mutate(chunk)
    with pytest.raises(ChunkError, match=message):
        buf.add_chunk(chunk)
    assert len(buf) == 0


def test_snapshot_round_trip():
    buf = ReplayBuffer(SPEC, capacity=16, chunk_len=4)
    for i in range(3):
        buf.add_chunk(make_chunk(B=2, T=4, start=10 * i, ends={0: [2]}))
    copy = ReplayBuffer(SPEC, capacity=16, chunk_len=4)
    copy.load_state_arrays(buf.state_arrays())
    a, b = buf.sample(64, np.random.default_rng(3)), copy.sample(64, np.random.default_rng(3))
    for k in ("obs", "next_obs", "reward"):
        np.testing.assert_array_equal(a[k], b[k])


def test_rate_limiter_keeps_the_ratio_and_cannot_deadlock():
    rl = RateLimiter(updates_per_step=0.5, min_size=100, slack_steps=50)
    assert rl.can_insert() and not rl.can_sample()
    rl.inserted = 100
    assert not rl.can_sample()  # no data beyond the minimum yet
    rl.inserted = 200  # 50 updates owed
    assert rl.can_sample()
    rl.updates = 50
    assert not rl.can_sample() and rl.can_insert()
    rl.inserted, rl.updates = 400, 50  # learner far behind: 100 updates owed > slack of 25
    assert not rl.can_insert() and rl.can_sample()
