"""Exactly-once delivery with real processes: resends, kill -9 of the replay service (restarted from its
snapshot) and kill -9 of an actor (replaced). No chunk is stored twice and none is lost."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from reliability_helpers import HandActor, counters, log_text, pendulum_chunk, replay_actor

from wire import shared_memory

# No update-to-data limit: the actor keeps producing whatever the learner does, so chunks are always in
# flight and stored-but-not-yet-snapshotted when the replay service dies.
OVERRIDES = ["eval.enabled=false", "replay.snapshot_every_s=2", "replay.rate_limit.updates_per_step=0"]
# Chunks over 64 KiB (6 envs x 1025 steps of 3 floats) leave their observations in the actor's shared-memory slots:
# the same crashes, with the data waiting in /dev/shm instead of in socket frames.
SHARED_MEMORY = ["env.num_envs=6", "actor.chunk_len=1024"]


def exactly_once(system, name: str) -> tuple[int, int, int]:
    """(chunks stored, last sequence number, sequence numbers lost) of one actor, as the service reports them."""
    record = replay_actor(system, name)
    return record.get("chunks", 0), record.get("last_seq", 0), record.get("lost", 0)


def kill(system, name: str) -> None:
    proc = system.procs[name]
    os.kill(proc.pid, signal.SIGKILL)
    proc.proc.wait()
    system.monitor.reports.pop(name, None)  # forget what the dead process last said


@pytest.mark.parametrize("path", ["socket", "shared_memory"])
def test_each_chunk_is_stored_once_across_resends_and_crashes(system_factory, figures, path):
    if path == "shared_memory" and not shared_memory.available():
        pytest.skip("no /dev/shm on this host")
    system = system_factory(overrides=OVERRIDES + (SHARED_MEMORY if path == "shared_memory" else []))
    system.start("replay", "replay")
    system.start("learner", "learner")
    system.start("actor-0", "actor", 0)
    system.wait_until(lambda: counters(system, "learner").get("updates", 0) > 0
                      and exactly_once(system, "actor-0")[0] >= 4, 90, "data flowing and the learner updating")

    # -- a resend of a stored sequence number is acknowledged and dropped; a NaN reward is refused -----------
    hand = HandActor(system.cfg, "hand-0")
    reply = hand.register()
    assert reply["registered"] and reply["last_seq"] == 0
    assert hand.chunk(1, pendulum_chunk(32))["last_seq"] == 1
    for _ in range(2):
        assert hand.chunk(1, pendulum_chunk(32))["last_seq"] == 1
    poisoned = pendulum_chunk(32)
    poisoned["reward"][0, 5] = np.nan
    reply = hand.chunk(2, poisoned)
    assert reply["rejected_seq"] == 2 and reply["last_seq"] == 1
    system.wait_until(lambda: exactly_once(system, "hand-0") == (1, 1, 0)
                      and counters(system, "replay").get("duplicates") == 2
                      and counters(system, "replay").get("rejected_chunks") == 1, 30, "the service's counts")
    hand.close()
    # Refused as a malformed chunk: the same chunk without the NaN was stored as #1.
    assert system.report("replay")["rejected"].get("bad_chunk") == 1, system.report("replay")["rejected"]

    # -- kill -9 the replay service between two snapshots, start a new one -----------------------------------
    snapshots = counters(system, "replay").get("snapshots", 0)
    system.wait_until(lambda: counters(system, "replay").get("snapshots", 0) > snapshots, 30, "a snapshot")
    after_snapshot = exactly_once(system, "actor-0")[1]
    system.wait_until(lambda: exactly_once(system, "actor-0")[1] >= after_snapshot + 2, 30,
                      "chunks stored after the snapshot")
    last_seq, updates = exactly_once(system, "actor-0")[1], counters(system, "learner")["updates"]
    placed_at_kill = counters(system, "actor-0").get("chunks_shared_memory", 0)
    killed = time.time()
    kill(system, "replay")
    system.start("replay", "replay")  # same launch (run id): restores the newest snapshot
    system.wait_until(lambda: exactly_once(system, "actor-0")[1] > last_seq, 90,
                      "actor-0 to register with the new replay service and deliver new chunks")
    replay_recovery_s = time.time() - killed
    system.wait_until(lambda: counters(system, "learner").get("updates", 0) > updates + 20, 60,
                      "the learner to get batches from the new replay service")
    learner_recovery_s = time.time() - killed
    system.wait_until(lambda: counters(system, "actor-0").get("chunks_shared_memory", 0) > placed_at_kill + 1
                      or path == "socket", 30, "chunks through shared memory to the new service")
    placed_after_restart = counters(system, "actor-0").get("chunks_shared_memory", 0)
    # The new service restored the snapshot: a fresh one would count no rejected chunk and no duplicate.
    restored = counters(system, "replay")
    assert restored.get("rejected_chunks") == 1 and restored.get("duplicates", 0) >= 2, restored
    resent = system.report("actor-0")["counters"]["chunks_resent"]
    assert resent >= 1, "the actor resent the chunks the snapshot did not hold"
    chunks, seq, lost = exactly_once(system, "actor-0")
    assert lost == 0 and chunks == seq, f"{chunks} chunks stored for sequence numbers 1..{seq}, {lost} lost"

    # -- kill -9 the actor: the launcher's replacement continues its sequence with the newest weights ---------
    newest_version = counters(system, "learner")["policy_version"]
    duplicates = counters(system, "replay")["duplicates"]
    killed = time.time()
    kill(system, "actor-0")
    replacement = system.start("actor-0", "actor", 0)
    # Where the dead actor's sequence stopped: the service's record of it in a report made a second after the
    # kill (chunks it sent before dying are in by then; the replacement is still starting). The service tells
    # the replacement this number when it registers, and the replacement continues from there.
    system.wait_until(lambda: system.report("replay").get("time", 0) > killed + 1.0, 30,
                      "a report of the replay service after the kill")
    predecessor_last = exactly_once(system, "actor-0")[1]
    assert predecessor_last >= seq, (predecessor_last, seq)
    system.wait_until(lambda: system.report("actor-0").get("pid") == replacement.pid
                      and exactly_once(system, "actor-0")[1] > predecessor_last, 90,
                      "the replacement actor to register and deliver chunks")
    actor_recovery_s = time.time() - killed
    # Continued, not restarted at #1 (its chunks would be duplicates) and not skipping numbers (they would be lost).
    assert counters(system, "replay")["duplicates"] == duplicates
    system.wait_until(lambda: system.report("actor-0").get("scalars", {}).get("actor/policy_version", 0)
                      >= newest_version, 30, "the replacement to act with the newest weights")
    assert "no random warm-up" in log_text(system, "actor-0")  # no counter says so (actors/actor.py reports none)
    system.wait_until(lambda: counters(system, "actor-0").get("chunks_shared_memory", 0) > 0 or path == "socket",
                      30, "the replacement's chunks through shared memory")
    chunks, seq, lost = exactly_once(system, "actor-0")
    assert lost == 0 and chunks == seq, f"{chunks} chunks stored for sequence numbers 1..{seq}, {lost} lost"

    codes = system.stop()
    assert all(code == 0 for code in codes.values()), codes
    if path == "shared_memory":
        assert placed_after_restart > placed_at_kill  # and the restarted service took them from shared memory too
        assert counters(system, "replay").get("torn_chunks") == 0
        figures["shared memory: chunks lost / stored twice across both crashes"] = f"{lost} / {chunks - seq + lost}"
        return
    figures.update({
        "replay kill -9 -> restarted service stored past its pre-crash sequence (s)": round(replay_recovery_s, 1),
        "replay kill -9 -> learner updating again (s)": round(learner_recovery_s, 1),
        "chunks resent after the replay restart": resent,
        "actor kill -9 -> replacement's chunks stored (s)": round(actor_recovery_s, 1),
        "chunks lost (replay + actor crash)": lost,
        "chunks stored twice": chunks - seq + lost,
        "duplicate resends dropped": counters(system, "replay").get("duplicates"),
    })
