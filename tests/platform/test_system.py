"""The platform with real processes and sockets: joins, leaves, malformed input, back-pressure."""
from __future__ import annotations

import os
import signal
import time

import psutil
import zmq

from core.net import endpoint
from wire import protocol
from wire.protocol import Kind


def env_steps(system) -> int:
    return int(system.report("replay").get("counters", {}).get("env_steps", 0))


def connected(system) -> dict:
    return system.report("replay").get("actors", {})


def test_actor_joins_late_and_actors_leave(system_factory):
    system = system_factory(overrides=["replay.heartbeat_timeout_s=2", "eval.enabled=false"])
    system.start("replay", "replay")
    system.start("learner", "learner")
    system.start("actor-0", "actor", 0)
    system.wait_until(lambda: env_steps(system) >= 256, 60, "actor-0's first chunks")

    system.start("actor-1", "actor", 1)  # joins a running system
    system.wait_until(lambda: connected(system).get("actor-1", {}).get("chunks", 0) >= 2, 60,
                      "actor-1 to join and deliver chunks")

    system.procs["actor-1"].signal(signal.SIGTERM)  # leaves politely (says bye)
    system.wait_until(lambda: "actor-1" not in connected(system), 30, "actor-1 to leave")

    system.procs["actor-0"].signal(signal.SIGKILL)  # leaves without a word: found by missing heartbeats
    system.wait_until(lambda: "actor-0" not in connected(system), 30, "actor-0 to be dropped")
    codes = system.stop()
    assert codes["replay"] == 0 and codes["learner"] == 0
    assert codes["actor-1"] == 0


def test_malformed_messages_are_rejected_and_the_service_keeps_serving(system_factory):
    # No learner in this test: the rate limiter is off so the actor's data keeps flowing.
    system = system_factory(overrides=["eval.enabled=false", "replay.rate_limit.updates_per_step=0"])
    system.start("replay", "replay")
    system.start("actor-0", "actor", 0)
    system.wait_until(lambda: env_steps(system) >= 64, 60, "first chunks")

    ctx = zmq.Context.instance()
    rogue = ctx.socket(zmq.DEALER)
    rogue.setsockopt(zmq.LINGER, 0)
    rogue.connect(endpoint(system.cfg, "replay_actors", bind=False))
    frames = protocol.encode(Kind.CHUNK, {"reward": __import__("numpy").zeros((1, 4), "float32")},
                             sender="rogue", seq=1)
    bad = [
        [b"not msgpack at all \xff\xfe"],
        [frames[0]],  # header announces an array, frame missing
        [frames[0], b"123"],  # array frame of the wrong size
        [b"\x81\xa1v\x63"],  # a msgpack map with a wrong protocol version
        [os.urandom(64), os.urandom(10)],
    ]
    for message in bad:
        rogue.send_multipart(message)
    # Well-formed, but from an actor that never registered: told to register, nothing stored.
    protocol.send(rogue, Kind.CHUNK, {"reward": __import__("numpy").zeros((1, 4), "float32")}, sender="rogue", seq=1)
    system.wait_until(lambda: sum(system.report("replay").get("rejected", {}).values()) >= len(bad), 30,
                      "the replay service to count the rejected messages")
    before = env_steps(system)
    system.wait_until(lambda: env_steps(system) >= before + 128, 60, "the real actor's data to keep flowing")
    assert system.procs["replay"].poll() is None
    rogue.close()
    system.stop()


def test_memory_stays_bounded_while_the_learner_is_paused(system_factory):
    slack, chunk, credits = 256, 32, 2
    system = system_factory(overrides=[f"replay.rate_limit.slack_steps={slack}", f"actor.chunk_len={chunk}",
                                       f"actor.credits={credits}", "eval.enabled=false"])
    system.start("replay", "replay")
    learner = system.start("learner", "learner")
    actor = system.start("actor-0", "actor", 0)
    system.wait_until(lambda: system.report("learner").get("counters", {}).get("updates", 0) > 50, 90,
                      "the learner to start updating")
    os.kill(learner.pid, signal.SIGSTOP)
    try:
        # Once the learner stops consuming, the actor may run at most `slack` steps plus its credits ahead.
        system.wait_until(lambda: system.report("replay").get("scalars", {}).get("replay/actors_waiting") == 1,
                          60, "the actor to wait for credit")
        steps_paused = env_steps(system)
        rss = [psutil.Process(actor.pid).memory_info().rss, psutil.Process(system.procs["replay"].pid).memory_info().rss]
        t_end = time.time() + 4
        while time.time() < t_end:
            system.monitor.poll(100)
        # Bound: the actor's credits, plus what the sample requests already in flight when the learner
        # stopped may release (replay.prefetch updates at one update per env step: at most one more chunk).
        assert env_steps(system) - steps_paused <= (credits + 2) * chunk
        rss_after = [psutil.Process(actor.pid).memory_info().rss,
                     psutil.Process(system.procs["replay"].pid).memory_info().rss]
        for r0, r1 in zip(rss, rss_after):
            assert r1 - r0 < 8 * 2**20, f"memory grew by {(r1 - r0) / 2**20:.1f} MiB while the learner was paused"
    finally:
        os.kill(learner.pid, signal.SIGCONT)
    system.wait_until(lambda: env_steps(system) > steps_paused + 2 * chunk, 60, "actors to resume")
    system.stop()


def test_two_env_groups_take_turns_and_send_their_own_chunks(system_factory):
    """actor.pipeline_stages=2: 4 envs in two groups of 2, each group's chunks (2 rows of 32 steps) stored whole."""
    system = system_factory(overrides=["actor.pipeline_stages=2", "env.num_envs=4", "eval.enabled=false"])
    system.start("replay", "replay")
    system.start("learner", "learner")
    system.start("actor-0", "actor", 0)
    learner = lambda: system.report("learner").get("counters", {})  # noqa: E731
    # Past the random warm-up and acting with trained weights: the policy's start_act path is the one running.
    system.wait_until(lambda: learner().get("policy_version", 0) > 3 and env_steps(system) >= 2048, 90,
                      "the learner publishing and the actor acting with its weights")
    record = connected(system)["actor-0"]
    assert record["lost"] == 0 and record["chunks"] == record["last_seq"]
    # Every chunk is one group's, 2 envs x 32 steps (one stage would send chunks of all 4 envs).
    assert env_steps(system) == record["chunks"] * 2 * 32
    codes = system.stop()
    assert codes == {"replay": 0, "learner": 0, "actor-0": 0}, codes
