"""Replay snapshots: compact, exact round trip (images stay uint8), damage named, previous or empty used."""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest

from replay.buffer import ReplayBuffer
from wire.schema import Spec
from replay.snapshot import BackgroundSnapshot, list_snapshots, load_latest_snapshot, save_snapshot

SPEC = Spec(obs={"front": ((8, 8, 3), "uint8"), "state": ((3,), "float32")}, action=((2,), "float32"))
CHUNK = 4


def chunk(rng: np.random.Generator, rows: int = 2) -> dict:
    """A chunk of `rows` env rows; row 0 ends an episode at step 1."""
    terminated = np.zeros((rows, CHUNK), bool)
    terminated[0, 1] = True
    return {"obs": {"front": rng.integers(0, 256, (rows, CHUNK + 1, 8, 8, 3), dtype=np.uint8),
                    "state": rng.standard_normal((rows, CHUNK + 1, 3)).astype(np.float32)},
            "action": rng.standard_normal((rows, CHUNK, 2)).astype(np.float32),
            "reward": rng.standard_normal((rows, CHUNK)).astype(np.float32),
            "terminated": terminated, "truncated": np.zeros((rows, CHUNK), bool),
            "final_obs": {"front": rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8),
                          "state": rng.standard_normal((1, 3)).astype(np.float32)},
            "final_index": np.array([[0, 1]], np.int32)}


def filled_buffer(chunks: int, capacity: int = 200) -> ReplayBuffer:
    buffer, rng = ReplayBuffer(SPEC, capacity, CHUNK), np.random.default_rng(0)
    for _ in range(chunks):
        buffer.add_chunk(chunk(rng))
    return buffer


SERVICE = {"limiter": {"inserted": 40, "updates": 12}, "actors": {"actor-0": {"last_seq": 5, "chunks": 5, "lost": 0}}}


def recorder() -> tuple[logging.Logger, list]:
    messages: list[str] = []
    log = logging.getLogger(f"snapshot-test-{id(messages)}")
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    log.addHandler(handler)
    return log, messages


@pytest.mark.parametrize("chunks", [5, 40])  # a buffer partly full, and one that wrapped around
def test_a_snapshot_restores_the_buffer_exactly(tmp_path, chunks):
    buffer = filled_buffer(chunks)
    save_snapshot(tmp_path, buffer, SERVICE, run_id="run-1")
    log, messages = recorder()
    restored, snapshot = load_latest_snapshot(tmp_path, lambda spec: ReplayBuffer(spec, 200, CHUNK), log)

    assert messages == [] and snapshot.service == SERVICE
    assert len(restored) == len(buffer) and restored.spec == SPEC
    for name, array in buffer.state_arrays().items():
        np.testing.assert_array_equal(restored.state_arrays()[name], array, err_msg=name)
    a, b = buffer.sample(32, np.random.default_rng(7)), restored.sample(32, np.random.default_rng(7))
    for key in ("action", "reward", "terminated"):
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(a["next_obs"]["front"], b["next_obs"]["front"])
    # A restored buffer keeps working as a ring: more chunks evict the oldest rows as before.
    rng = np.random.default_rng(1)
    for _ in range(30):
        more = chunk(rng)
        buffer.add_chunk(more)
        restored.add_chunk(more)
    assert len(restored) == len(buffer) and restored.start == buffer.start


def test_snapshots_are_compact_and_keep_images_uint8(tmp_path):
    buffer = filled_buffer(5, capacity=10_000)  # 40 of 10,000 transitions written
    path = save_snapshot(tmp_path, buffer, SERVICE)
    images = np.load(path / "obs.front.npy", mmap_mode="r")
    assert images.dtype == np.uint8
    assert len(images) == buffer.obs_written, "only the written part of the ring is saved"
    total = sum(f.stat().st_size for f in path.iterdir())
    assert total < buffer.nbytes() / 50, f"snapshot {total:,} bytes for a buffer of {buffer.nbytes():,}"


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_a_damaged_snapshot_is_named_and_the_previous_one_is_used(tmp_path, damage):
    save_snapshot(tmp_path, filled_buffer(3), {**SERVICE, "limiter": {"inserted": 24, "updates": 0}})
    newest = save_snapshot(tmp_path, filled_buffer(6), SERVICE)
    target = newest / ("manifest.json" if damage == "manifest" else "obs.front.npy")
    data = target.read_bytes()
    if damage == "flip":
        target.write_bytes(data[:200] + bytes([data[200] ^ 1]) + data[201:])
    else:
        target.write_bytes(data[: len(data) - 100])

    log, messages = recorder()
    restored, snapshot = load_latest_snapshot(tmp_path, lambda spec: ReplayBuffer(spec, 200, CHUNK), log)
    assert snapshot.service["limiter"]["inserted"] == 24 and len(restored) == 24
    assert len(messages) == 1 and str(target) in messages[0], messages
    assert len(list_snapshots(tmp_path)) == 1  # the damaged one was renamed *.corrupt


def test_with_no_usable_snapshot_the_service_starts_empty(tmp_path):
    save_snapshot(tmp_path, filled_buffer(3), SERVICE)
    log, messages = recorder()
    # A buffer of another capacity (replay.capacity changed): the snapshot is intact but does not fit.
    assert load_latest_snapshot(tmp_path, lambda spec: ReplayBuffer(spec, 100, CHUNK), log) is None
    assert "capacity" in messages[0] and "snapshot skipped" in messages[0]
    assert load_latest_snapshot(tmp_path / "nothing-here", lambda spec: None, log) is None


def wait_done(writer: BackgroundSnapshot, timeout: float = 30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = writer.poll()
        if done is not None:
            return done
        time.sleep(0.01)
    raise AssertionError("the background snapshot did not finish")


def test_a_background_snapshot_holds_the_buffer_as_it_was_at_the_fork(tmp_path):
    buffer = filled_buffer(10)
    expected = {name: array.copy() for name, array in buffer.state_arrays().items()}
    log, _ = recorder()
    writer = BackgroundSnapshot(tmp_path, keep=2, run_id="run-1", log=log)
    assert writer.start(buffer, SERVICE) and writer.running
    rng = np.random.default_rng(5)
    for _ in range(40):  # the service goes on storing (and wrapping the ring) while the child writes
        buffer.add_chunk(chunk(rng))
    done = wait_done(writer)
    assert done.ok and done.service == SERVICE and done.transitions == 80 and not writer.running

    restored, snapshot = load_latest_snapshot(tmp_path, lambda spec: ReplayBuffer(spec, 200, CHUNK), log)
    assert snapshot.service == SERVICE and len(restored) == 80
    for name, array in restored.state_arrays().items():
        np.testing.assert_array_equal(array, expected[name], err_msg=name)


def test_a_background_snapshot_that_cannot_write_reports_failure(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the snapshot directory should be")
    log, _ = recorder()
    writer = BackgroundSnapshot(blocker, keep=2, run_id="", log=log)
    assert writer.start(filled_buffer(3), SERVICE)
    done = wait_done(writer)
    assert not done.ok and not writer.running


def test_a_stopped_background_snapshot_leaves_no_writer_and_no_partial_snapshot(tmp_path):
    log, messages = recorder()
    writer = BackgroundSnapshot(tmp_path, keep=2, run_id="", log=log)
    assert writer.start(filled_buffer(40, capacity=5_000), SERVICE)
    pid = writer.pid
    writer.stop()
    assert not writer.running and writer.poll() is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left
    save_snapshot(tmp_path, filled_buffer(2), SERVICE)  # the next write clears a killed writer's temporaries
    assert not list(tmp_path.glob(".tmp-*"))
    assert load_latest_snapshot(tmp_path, lambda spec: ReplayBuffer(spec, 200, CHUNK), log) is not None
