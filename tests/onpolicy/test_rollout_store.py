"""The versioned rollout store: parts, actors coming and going, and stale chunks never trained on.

The last test runs the real store process and talks to it over real sockets, as an actor and a
learner would, with a chunk from an old policy version sent in the middle of a new rollout.
"""
from __future__ import annotations

import numpy as np
import pytest
import zmq

from core.net import endpoint, make_socket
from replay.rollout_store import RolloutError, RolloutStore, concat_rollouts, join_parts, split_rollout
from wire import protocol
from wire.protocol import Kind

B, T = 3, 5


def make_rollout(fill: float, envs: int = B, steps: int = T, finals=((1, 2),)) -> dict:
    index = np.array(finals, np.int32).reshape(-1, 2)
    return {"steps": {"obs": np.full((envs, steps, 4), fill, np.float32),
                      "action": np.zeros((envs, steps), np.int64),
                      "log_prob": np.zeros((envs, steps), np.float32),
                      "reward": np.full((envs, steps), fill, np.float32),
                      "terminated": np.zeros((envs, steps), bool), "truncated": np.zeros((envs, steps), bool)},
            "finals": {"obs": np.full((len(index), 4), fill, np.float32), "index": index},
            "envs": {"last_obs": np.full((envs, 4), fill, np.float32)}}


def add_all(store: RolloutStore, name: str, version: int, rollout: dict, part_len: int = 2, now: float = 0.0):
    parts = split_rollout(rollout, part_len)
    return [store.add_chunk(name, version, i, len(parts), p, {"env_steps": B * T}, now) for i, p in enumerate(parts)]


def test_split_and_join_round_trip():
    rollout = make_rollout(1.0, finals=((0, 0), (2, 3), (1, 4)))
    rollout["steps"]["reward"] = np.arange(B * T, dtype=np.float32).reshape(B, T)
    parts = split_rollout(rollout, 2)
    assert len(parts) == 3 and [len(p["finals"]["index"]) for p in parts] == [1, 1, 1]
    joined = join_parts(parts)
    np.testing.assert_array_equal(joined["steps"]["reward"], rollout["steps"]["reward"])
    assert sorted(joined["finals"]["index"].tolist()) == sorted(rollout["finals"]["index"].tolist())


def test_concat_shifts_final_indices_to_the_right_env():
    both = concat_rollouts([make_rollout(1.0, envs=3, finals=((1, 2),)), make_rollout(2.0, envs=2, finals=((0, 4),))])
    assert both["steps"]["reward"].shape == (5, T)
    assert both["finals"]["index"].tolist() == [[1, 2], [3, 4]]


def test_version_waits_for_every_registered_actor():
    store = RolloutStore(timeout_s=30)
    store.register("a")
    store.register("b")
    store.request(1)
    add_all(store, "a", 1, make_rollout(1.0))
    assert not store.ready(now=1.0)  # b is still acting
    add_all(store, "b", 1, make_rollout(2.0))
    assert store.ready(now=1.0)
    taken = store.take()
    assert taken.actors == ["a", "b"] and not taken.missing and taken.rollout["steps"]["reward"].shape == (2 * B, T)
    assert store.env_steps_served == 2 * B * T and store.env_steps == 0  # trained on once version 2 begins
    store.request(2)
    assert store.env_steps == 2 * B * T


def test_time_out_trains_on_what_arrived_and_late_parts_are_stale():
    store = RolloutStore(timeout_s=30)
    store.register("a")
    store.register("slow")
    store.request(1)
    add_all(store, "a", 1, make_rollout(1.0), now=100.0)
    assert not store.ready(now=129.0)
    assert store.ready(now=130.0)
    taken = store.take()
    assert taken.missing == ["slow"] and taken.timed_out and store.timeouts == 1
    assert add_all(store, "slow", 1, make_rollout(9.0)) == ["stale"] * 3
    assert store.stale_chunks == 3


def test_an_actor_that_leaves_is_not_waited_for_and_a_newcomer_is():
    store = RolloutStore(timeout_s=30)
    store.register("a")
    store.register("b")
    store.request(1)
    store.leave("b")
    store.register("c")  # joins during version 1: it acts with version 1's weights
    add_all(store, "a", 1, make_rollout(1.0))
    assert store.missing() == ["c"] and not store.ready(now=0.0)
    add_all(store, "c", 1, make_rollout(3.0))
    assert store.ready(now=0.0) and store.take().actors == ["a", "c"]


def test_a_chunk_of_a_newer_version_begins_it_and_drops_the_older_parts():
    store = RolloutStore(timeout_s=30)
    store.register("a")
    store.register("b")
    store.request(1)
    parts = split_rollout(make_rollout(1.0), 2)
    store.add_chunk("a", 1, 0, len(parts), parts[0], {}, 0.0)  # an unfinished version-1 rollout
    assert add_all(store, "b", 2, make_rollout(2.0)) == ["accepted"] * 3
    assert store.version == 2 and store.stale_chunks == 1
    assert store.add_chunk("a", 1, 1, len(parts), parts[1], {}, 0.0) == "stale"
    with pytest.raises(RolloutError, match="already handed out|store is at version"):
        store.request(1)


def test_bad_chunks_are_refused_with_a_reason():
    store = RolloutStore(timeout_s=30)
    store.register("a")
    store.request(1)
    with pytest.raises(RolloutError, match="part"):
        store.add_chunk("a", 1, 3, 2, make_rollout(1.0), {}, 0.0)
    with pytest.raises(RolloutError, match="groups"):
        store.add_chunk("a", 1, 0, 1, {"steps": {}}, {}, 0.0)
    add_all(store, "a", 1, make_rollout(1.0))
    store.register("b")
    with pytest.raises(RolloutError, match="unlike the others"):
        add_all(store, "b", 1, make_rollout(1.0, steps=T + 1))


# ------------------------------------------------------------------------------------------------
# The real service process


def _recv(sock: zmq.Socket, kinds: set, timeout_s: float = 30.0) -> protocol.Message:
    if not sock.poll(int(timeout_s * 1000)):
        raise AssertionError(f"no {kinds} message within {timeout_s} s")
    return protocol.recv(sock, kinds=kinds)[1]


def test_stale_chunk_is_never_mixed_into_an_update(system_factory):
    system = system_factory("cartpole_ppo_mlp", ["replay.heartbeat_timeout_s=60"])
    system.start("replay", "replay")
    ctx = zmq.Context.instance()
    actor = make_socket(ctx, zmq.DEALER)
    actor.connect(endpoint(system.cfg, "replay_actors", bind=False))
    learner = make_socket(ctx, zmq.DEALER)
    learner.connect(endpoint(system.cfg, "replay_learner", bind=False))
    spec = {"obs": {"": [[4], "float32"]}, "action": [[], "int64"]}
    try:
        protocol.send(actor, Kind.REGISTER, sender="actor-0", meta={"spec": spec, "pid": 0})
        assert _recv(actor, {Kind.CREDIT}).meta.get("registered")

        def send_part(version: int, rollout: dict, part: int, parts: int, seq: int) -> str:
            piece = split_rollout(rollout, 3)[part]
            protocol.send(actor, Kind.CHUNK, piece, sender="actor-0", seq=seq, policy_version=version,
                          meta={"part": part, "parts": parts, "env_steps": B * T, "episodes": []})
            reply = _recv(actor, {Kind.CREDIT})
            assert reply.meta["last_seq"] == seq and reply.meta["credits"] == 1
            return reply.meta["outcome"]

        # Version 1: the learner asks, the actor delivers in two parts, the learner gets it.
        protocol.send(learner, Kind.SAMPLE, sender="learner", seq=1, policy_version=1)
        v1 = make_rollout(1.0)
        assert [send_part(1, v1, p, 2, 1 + p) for p in range(2)] == ["accepted", "accepted"]
        batch = _recv(learner, {Kind.BATCH})
        assert batch.policy_version == 1 and np.all(batch.arrays["steps"]["reward"] == 1.0)

        # Version 2: a version-1 chunk (marked 666) arrives between the two parts of the version-2 rollout.
        protocol.send(learner, Kind.SAMPLE, sender="learner", seq=2, policy_version=2)
        v2, old = make_rollout(2.0), make_rollout(666.0)
        assert send_part(2, v2, 0, 2, seq=3) == "accepted"
        assert send_part(1, old, 0, 2, seq=4) == "stale"
        assert send_part(1, old, 1, 2, seq=5) == "stale"
        assert send_part(2, v2, 1, 2, seq=6) == "accepted"
        batch = _recv(learner, {Kind.BATCH})
        assert batch.policy_version == 2
        for name, array in {**batch.arrays["steps"], **batch.arrays["finals"], **batch.arrays["envs"]}.items():
            assert not np.any(array == 666.0), f"stale data in {name}"
        np.testing.assert_array_equal(batch.arrays["steps"]["reward"], v2["steps"]["reward"])
        assert batch.arrays["steps"]["obs"].shape == (B, T, 4)

        # Progress counts rollouts the learner has finished with: version 2's steps once it asks for version 3.
        counters = lambda: system.report("replay").get("counters", {})  # noqa: E731
        system.wait_until(lambda: counters().get("stale_chunks") == 2, 15, "the store to report 2 stale chunks")
        assert counters()["env_steps"] == B * T and counters()["env_steps_served"] == 2 * B * T
        protocol.send(learner, Kind.SAMPLE, sender="learner", seq=3, policy_version=3)
        system.wait_until(lambda: counters().get("env_steps") == 2 * B * T, 15, "version 2 to count as trained")
    finally:
        actor.close(0)
        learner.close(0)
    assert system.stop()["replay"] == 0
