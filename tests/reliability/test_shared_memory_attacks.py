"""Shared memory from a hostile local process, against a real replay service (issue 23, findings 2, 3 and 14):
a segment truncated after the service opened it, a FIFO named as the segment, a name with a trailing newline.
The service maps only sealed memfds (they cannot shrink: no SIGBUS), opens them without blocking as regular files of
the size their header states, and matches the whole name: each attack is one refused segment (the actor keeps to
frames), and the service keeps running."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from reliability_helpers import HandActor, replay_actor

from wire import shared_memory
from wire.shared_memory import SEGMENT_DIR, SlotWriter

# Chunks over 64 KiB (6 envs x 1024 steps of 3 floats) put their observations in shared-memory slots.
OVERRIDES = ["eval.enabled=false", "env.num_envs=6", "actor.chunk_len=1024", "replay.rate_limit.updates_per_step=0"]
B, T = 6, 1024


def big_chunk(value: float = 0.5) -> dict:
    return {"obs": np.full((B, T + 1, 3), value, np.float32), "action": np.zeros((B, T, 1), np.float32),
            "reward": np.zeros((B, T), np.float32), "terminated": np.zeros((B, T), bool),
            "truncated": np.zeros((B, T), bool), "final_obs": np.zeros((0, 3), np.float32),
            "final_index": np.zeros((0, 2), np.int32)}


def slot_actor(system, name: str) -> tuple[HandActor, SlotWriter]:
    cfg = system.cfg
    need = shared_memory.slot_bytes_for([a.nbytes for k, a in big_chunk().items() if k not in ("final_obs",
                                                                                                "final_index")])
    slots = SlotWriter(shared_memory.segment_name(cfg.runner.run_id, name, os.getpid()), 2, need)
    return HandActor(cfg, name, slots=slots, chunk_len=T, num_envs=B), slots


@pytest.mark.skipif(not shared_memory.available(), reason="no /dev/shm on this host")
def test_truncated_segments_fifos_and_bad_names_are_refused(system_factory, figures):
    system = system_factory(overrides=OVERRIDES)
    system.start("replay", "replay")
    cfg = system.cfg

    # -- a segment that could be truncated under the service's mapping (SIGBUS before): only sealed ones are mapped
    hand, slots = slot_actor(system, "hand-shm")
    reply = hand.register()
    assert reply["registered"] and reply.get("shm") is True, reply
    assert hand.chunk(1, big_chunk())["last_seq"] == 1  # through the slot
    assert slots.placed == 1
    with pytest.raises(OSError):  # sealed: nobody can shrink it, its sender included
        os.ftruncate(slots.fd, 4096)
    refused = 0
    for i in range(3):  # three truncations ended the run before
        unsealed = os.memfd_create(slots.name, os.MFD_CLOEXEC)
        os.ftruncate(unsealed, slots.size)
        os.pwrite(unsealed, bytes(slots._map[:64]), 0)  # the right header and token
        fake = HandActor(cfg, f"hand-unsealed-{i}", chunk_len=T, num_envs=B)
        fake.session.register_meta["shm"] = {**slots.offer(), "fd": unsealed}
        reply = fake.request([fake.session.register(time.monotonic())[0]])
        assert reply["registered"] and reply.get("shm") is False and reply.get("shm_problem"), reply
        os.ftruncate(unsealed, 4096)  # what the attack did next: nothing maps it
        os.close(unsealed)
        fake.close()
        refused += 1
    time.sleep(0.2)
    assert system.procs["replay"].poll() is None, "the replay service died"

    # -- a FIFO named as the segment: the registration answers at once, with the segment refused --------------
    fifo = SEGMENT_DIR / shared_memory.segment_name(cfg.runner.run_id, "hand-fifo", os.getpid())
    os.mkfifo(fifo, 0o600)
    fifo_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fake = HandActor(cfg, "hand-fifo", chunk_len=T, num_envs=B)
        fake.session.register_meta["shm"] = {"segment": fifo.name, "token": b"0" * 16, "pid": os.getpid(),
                                             "fd": fifo_fd}
        t0 = time.time()
        reply = fake.request([fake.session.register(time.monotonic())[0]], timeout_s=10)
        fifo_seconds = time.time() - t0
        assert reply["registered"] and reply.get("shm") is False and reply.get("shm_problem"), reply
        assert fifo_seconds < 2.0
    finally:
        os.close(fifo_fd)
        fifo.unlink()

    # -- a name with a trailing newline (the pattern's `$` matched before it) ----------------------------------
    newline = HandActor(cfg, "hand-nl", chunk_len=T, num_envs=B)
    newline.session.register_meta["shm"] = {**slots.offer(), "segment": slots.name + "\n"}
    reply = newline.request([newline.session.register(time.monotonic())[0]])
    assert reply.get("shm") is False and reply.get("shm_problem"), reply

    # -- the service still stores chunks, through frames and through the slot ----------------------------------
    assert hand.chunk(2, big_chunk())["last_seq"] == 2
    assert slots.placed == 2
    system.wait_until(lambda: replay_actor(system, "hand-shm").get("chunks") == 2, 30, "the service's counts")
    codes = system.stop()
    assert codes["replay"] == 0, codes
    for h in (hand, newline):
        h.close()
    slots.close()
    figures.update({"shm: unsealed (truncatable) segments refused (service alive)": refused,
                    "shm: FIFO registration answered in s": round(fifo_seconds, 3)})
