"""Shared-memory slots: round trips, slot reuse only after acknowledgement, and hostile references refused."""
from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from wire import protocol, shared_memory
from wire.protocol import ProtocolError
from wire.shared_memory import SlotReader, SlotWriter

pytestmark = pytest.mark.skipif(not shared_memory.available(), reason="no /dev/shm on this host")


def chunk(value: int = 0) -> dict:
    return {"obs": {"front": np.full((2, 9, 64, 64, 3), value, np.uint8), "state": np.ones((2, 9, 7), np.float32)},
            "action": np.zeros((2, 8, 4), np.float32), "terminated": np.zeros((2, 8), bool)}


@pytest.fixture
def writer():
    w = SlotWriter(f"zarl-test-{uuid.uuid4().hex[:8]}-actor-0-{os.getpid()}", slots=2,
                   slot_bytes=shared_memory.slot_bytes_for([2 * 9 * 64 * 64 * 3]))
    yield w
    w.close()


def send_through(writer: SlotWriter, reader: SlotReader, arrays: dict, seq: int) -> tuple[dict, dict | None]:
    """What actor and replay service do: place, encode, decode, resolve."""
    rest, placed = writer.place(arrays, seq)
    meta = {"shm": placed} if placed else {}
    message = protocol.decode(protocol.encode("chunk", rest, sender="actor-0", seq=seq, meta=meta))
    if placed is None:
        return message.arrays, None
    return reader.resolve("actor-0", seq, message.meta["shm"], message.arrays), placed


def test_large_arrays_travel_in_the_slot_small_ones_in_frames(writer):
    reader = SlotReader()
    assert reader.attach("actor-0", **writer.offer()) is None
    sent = chunk(7)
    rest, placed = writer.place(sent, seq=1)
    assert [entry["name"] for entry in placed["arrays"]] == ["obs/front"]  # 221 kB; the rest is under 64 KiB
    assert "front" not in rest["obs"] and rest["obs"]["state"].shape == (2, 9, 7)
    got = reader.resolve("actor-0", 1, placed, rest)
    for key, value in protocol.flatten_arrays(sent).items():
        np.testing.assert_array_equal(protocol.flatten_arrays(got)[key], value)
    assert not got["obs"]["front"].flags.writeable
    assert reader.check("actor-0", 1, placed)


def test_a_slot_is_reused_only_after_the_acknowledgement(writer):
    reader = SlotReader()
    reader.attach("actor-0", **writer.offer())
    _, first = send_through(writer, reader, chunk(1), 1)
    _, second = send_through(writer, reader, chunk(2), 2)
    assert first["slot"] != second["slot"] and writer.in_use() == 2
    arrays, third = send_through(writer, reader, chunk(3), 3)  # both slots held: frames instead
    assert third is None and writer.fallbacks == 1 and arrays["obs"]["front"][0, 0, 0, 0, 0] == 3
    writer.release_through(1)  # the service stored chunk 1
    arrays, fourth = send_through(writer, reader, chunk(4), 4)
    assert fourth["slot"] == first["slot"] and arrays["obs"]["front"].max() == 4
    writer.release(4)  # refused chunk: its slot is free at once
    assert writer.in_use() == 1


def test_overwritten_slot_is_detected(writer):
    reader = SlotReader()
    reader.attach("actor-0", **writer.offer())
    rest, placed = writer.place(chunk(1), 1)
    writer.release_through(1)
    writer.place(chunk(2), 2)  # a sender that broke the rule: same slot, before the receiver read it
    with pytest.raises(ProtocolError, match="holds chunk #2, not #1"):
        reader.resolve("actor-0", 1, placed, rest)
    assert not reader.check("actor-0", 1, placed)


def test_attach_refuses_strangers(writer, tmp_path):
    reader = SlotReader()
    offer = writer.offer()
    assert "token differs" in reader.attach("actor-0", **{**offer, "token": b"x" * 16})
    assert "not a zarl segment name" in reader.attach("actor-0", **{**offer, "segment": "../etc/passwd"})
    assert "not a zarl segment name" in reader.attach("actor-0", **{**offer, "segment": "zarl-a/../../x"})
    assert "not a zarl segment name" in reader.attach("actor-0", **{**offer, "segment": writer.name + "\n"})
    assert "cannot map" in reader.attach("actor-0", **{**offer, "segment": "zarl-does-not-exist"})
    assert "cannot map" in reader.attach("actor-0", **{**offer, "fd": 2**20})
    assert "16-byte token" in reader.attach("actor-0", **{**offer, "token": "text"})
    assert "pid and fd" in reader.attach("actor-0", writer.name, writer.token)
    # A file that is not a sealed memfd (it could shrink under the mapping: SIGBUS), here a plain one
    plain = open(tmp_path / "plain", "wb+")
    plain.write(b"\0" * 4096)
    plain.flush()
    try:
        assert "cannot map" in reader.attach("actor-0", **{**offer, "fd": plain.fileno()})
        unsealed = os.memfd_create(writer.name, os.MFD_CLOEXEC)
        os.ftruncate(unsealed, writer.size)
        try:
            problem = reader.attach("actor-0", **{**offer, "fd": unsealed})
            assert "not sealed" in problem, problem
        finally:
            os.close(unsealed)
    finally:
        plain.close()
    with pytest.raises(OSError):  # the writer's own segment cannot shrink
        os.ftruncate(writer.fd, 4096)
    with pytest.raises(ProtocolError, match="without an attached segment"):
        reader.resolve("actor-0", 1, {"segment": writer.name, "slot": 0, "arrays": []}, {})


@pytest.mark.parametrize("entry, reason", [
    ({"name": "x", "dtype": "uint8", "shape": [10**9], "offset": 64}, "size_mismatch"),
    ({"name": "x", "dtype": "uint8", "shape": [8], "offset": 65}, "size_mismatch"),
    ({"name": "x", "dtype": "uint8", "shape": [8], "offset": 0}, "size_mismatch"),
    ({"name": "x", "dtype": "object", "shape": [8], "offset": 64}, "bad_dtype"),
    ({"name": "x", "dtype": "uint8", "shape": [-1], "offset": 64}, "bad_shape"),
    ({"name": "x", "dtype": "uint8", "shape": [8]}, "bad_meta"),
    ({"name": "obs/state", "dtype": "uint8", "shape": [8], "offset": 64}, "bad_name"),
])
def test_hostile_slot_references_are_refused(writer, entry, reason):
    reader = SlotReader()
    reader.attach("actor-0", **writer.offer())
    rest, placed = writer.place(chunk(1), 1)
    with pytest.raises(ProtocolError) as error:
        reader.resolve("actor-0", 1, {**placed, "arrays": [entry]}, rest)
    assert error.value.reason == reason
    for bad in ({**placed, "slot": 5}, {**placed, "slot": True}, {**placed, "segment": "zarl-other"}, "text"):
        with pytest.raises(ProtocolError, match="shared-memory"):
            reader.resolve("actor-0", 1, bad, rest)


def test_segments_leave_nothing_behind():
    """A segment is a memfd: nothing in /dev/shm while it lives, nothing after its process is gone."""
    run_id = uuid.uuid4().hex[:12]
    writers = [SlotWriter(shared_memory.segment_name(run_id, f"actor-{i}", 100 + i), 1, 4096) for i in range(2)]
    assert writers[0].path.exists() and not list(shared_memory.SEGMENT_DIR.glob(f"zarl-{run_id}-*"))
    for w in writers:
        w.close()
    assert not writers[0].path.exists()


def test_a_segment_that_does_not_fit_fails_at_once_not_at_first_write(monkeypatch):
    """A full /dev/shm must give an OSError at creation (the actor then sends frames), never a SIGBUS later."""
    def no_space(fd, offset, length):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    name = f"zarl-test-{uuid.uuid4().hex[:8]}-full"
    with pytest.raises(OSError, match="No space"):
        SlotWriter(name, 2, 1 << 20)
    assert not (shared_memory.SEGMENT_DIR / name).exists()  # nothing left behind
