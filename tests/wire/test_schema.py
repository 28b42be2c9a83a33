"""The one chunk schema: what actors allocate, what their slots must hold, what the service accepts."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from core import tree
from wire.schema import ChunkError, ChunkSchema, Spec

SPEC = Spec(obs={"cam/front": ((4, 4, 3), "uint8"), "state": ((2,), "float32")}, action=((3,), "float32"))


def full_chunk(schema: ChunkSchema) -> dict:
    arrays = schema.allocate()
    for leaf in tree.leaves(arrays):
        leaf[...] = 0
    arrays["final_obs"], arrays["final_index"] = schema.no_finals(), np.zeros((0, 2), np.int32)
    return arrays


def test_allocation_and_slot_bytes_follow_the_layout():
    schema = ChunkSchema(SPEC, chunk_len=5, num_envs=2)
    arrays = schema.allocate()
    assert arrays["obs"]["cam"]["front"].shape == (2, 6, 4, 4, 3) and arrays["obs"]["cam"]["front"].dtype == np.uint8
    assert arrays["action"].shape == (2, 5, 3) and arrays["reward"].dtype == np.float32
    assert arrays["terminated"].dtype == bool and arrays["truncated"].shape == (2, 5)
    assert sorted(schema.array_bytes()) == sorted(a.nbytes for a in tree.leaves(arrays))
    schema.check(full_chunk(schema))
    ChunkSchema(SPEC).check(full_chunk(schema))  # the service's schema: any [B, T]


def test_spec_of_gym_spaces():
    space = gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (2,)), "cam": gym.spaces.Dict(
        {"front": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)})})
    assert Spec.from_spaces(space, gym.spaces.Box(-1, 1, (3,))) == SPEC
    assert Spec.from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2)) == \
        Spec(obs={"": ((3,), "float32")}, action=((), "int64"))


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(terminated=c["terminated"].astype(np.uint8)), "terminated"),
    (lambda c: c.update(reward=c["reward"].astype(np.float64)), "reward"),
    (lambda c: c["obs"].pop("state"), "observation keys"),
    (lambda c: c.update(final_index=np.array([[-1, 0]], np.int32)), "final_index"),
    (lambda c: c["obs"]["state"].__setitem__((0, 0, 0), np.inf), "'obs/state' holds NaN or Inf"),
])
def test_malformed_chunks_are_refused(mutate, message):
    schema = ChunkSchema(SPEC, chunk_len=5, num_envs=2)
    chunk = full_chunk(schema)
    mutate(chunk)
    with pytest.raises(ChunkError, match=message):
        ChunkSchema(SPEC).check(chunk)
