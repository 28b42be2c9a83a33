"""Chunks between processes of one host through shared memory: one copy instead of three.

Over a socket, a 25 MB chunk of camera frames is copied three times on its way into the replay
buffer: into the kernel, out of the kernel into the receiver's frame, and from the frame into the
buffer. Through shared memory the sender copies it into a slot of its segment, and the receiver
reads the slot with preadv (one kernel copy into its own memory, never a mapping of the sender's
file: a file its sender truncates cannot fault the receiver with SIGBUS). The ZeroMQ message still goes
over the socket (header, small arrays, flow control, acknowledgements); only the large arrays
stay behind in the slot and the header says where.

    sender (actor)                          receiver (replay service)
    SlotWriter.place(arrays, seq)  ------>  SlotReader.resolve(sender, meta, arrays)
      copies large arrays into a free slot    opens the segment (once), checks the slot's stamp,
      returns the small arrays + meta         reads the slot (preadv), returns read-only arrays
    SlotWriter.release_through(last_seq) <--  acknowledgement: everything up to last_seq is stored

The segment is one file in ``/dev/shm`` (``SEGMENT_DIR``), created and removed by the sender::

    bytes 0..63          segment header: magic, token, slot count, slot size
    slot i (64-aligned)  8-byte stamp (the sequence number of the chunk in it) | arrays, 64-aligned

Rules that keep it safe:

* A slot is written only when free, and it becomes free only when the receiver has acknowledged
  the chunk in it as stored (its sequence number <= the acknowledged one). A chunk finds no free
  slot only when more are in flight than slots exist; it then travels as ordinary frames.
* The stamp is a seqlock: the writer zeroes it, writes the arrays, then writes the chunk's
  sequence number. The receiver checks it before and after it copies the arrays out
  (``SlotReader.check``); a stamp that is not the message's sequence number rejects the chunk.
* The receiver proves it can read the sender's segment before the sender uses it: the
  registration carries the segment name and a random token written in the segment's header, and
  the receiver answers whether it found that token (``SlotReader.attach``). A receiver on another
  host, or in a container with its own /dev/shm, answers no, and the sender keeps to frames.
* Names from the network are checked against ``SEGMENT_NAME`` (the whole name: no trailing newline)
  and opened read-only as a regular file only (no link, no FIFO or device: O_NOFOLLOW, O_NONBLOCK,
  fstat), of the size its header states; every offset is checked against the slot's size, and a
  read that comes up short (the sender truncated the file) rejects the chunk.

(multiprocessing.shared_memory is not used: before Python 3.13 a process that only attaches to a
segment also registers it with its resource tracker, which then deletes the segment under the
sender when the receiver exits.)
"""
from __future__ import annotations

import mmap
import os
import re
import secrets
import stat
import struct
from pathlib import Path

import numpy as np

from wire.protocol import (ALLOWED_DTYPES, ZERO_COPY_MIN_BYTES, ProtocolError, _parse_array_entry, flatten_arrays,
                           unflatten_arrays)

SEGMENT_DIR = Path("/dev/shm")
SEGMENT_NAME = re.compile(r"zarl-[A-Za-z0-9_.-]{1,160}")  # matched whole (fullmatch): no trailing newline
MAGIC = b"ZARLSHM1"
ALIGN = 64  # cache-line alignment of the header, the slots and every array in a slot
HEADER = struct.Struct("<8s16sQQ")  # magic, token, slots, slot_bytes
STAMP = struct.Struct("<Q")
MAX_SEGMENT_BYTES = 64 * 2**30


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def available() -> bool:
    """Whether this host has a shared-memory file system to put segments in."""
    return SEGMENT_DIR.is_dir() and os.access(SEGMENT_DIR, os.W_OK)


def slot_bytes_for(array_bytes: list[int]) -> int:
    """Slot size for chunks whose large arrays have these sizes (the stamp and alignment included)."""
    return _aligned(STAMP.size) + sum(_aligned(n) for n in array_bytes if n >= ZERO_COPY_MIN_BYTES)


class SlotWriter:
    """The sender's side: a segment of `slots` slots of `slot_bytes` each, and which chunk holds which slot."""

    def __init__(self, name: str, slots: int, slot_bytes: int):
        if not SEGMENT_NAME.fullmatch(name):
            raise ValueError(f"shared-memory segment name {name!r} does not match {SEGMENT_NAME.pattern}")
        if slots < 1 or slot_bytes < ALIGN:
            raise ValueError(f"need at least one slot of {ALIGN} bytes, got {slots} of {slot_bytes}")
        self.name, self.slots, self.slot_bytes = name, slots, _aligned(slot_bytes)
        self.size = _aligned(HEADER.size) + self.slots * self.slot_bytes
        if self.size > MAX_SEGMENT_BYTES:
            raise ValueError(f"{slots} slots of {slot_bytes:,} bytes exceed {MAX_SEGMENT_BYTES:,} bytes")
        self.path = SEGMENT_DIR / name
        self.token = secrets.token_bytes(16)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, self.size)
            # Reserve the pages now: a full /dev/shm (Docker gives 64 MB by default) then fails here, with ENOSPC,
            # instead of killing the process with SIGBUS at its first write into a page that cannot be had.
            os.posix_fallocate(fd, 0, self.size)
            self._map = mmap.mmap(fd, self.size)
        except BaseException:
            os.unlink(self.path)
            raise
        finally:
            os.close(fd)
        HEADER.pack_into(self._map, 0, MAGIC, self.token, self.slots, self.slot_bytes)
        self._buffer = np.frombuffer(self._map, dtype=np.uint8)
        self.holder: list[int | None] = [None] * self.slots  # sequence number of the chunk in each slot
        self.placed = self.fallbacks = 0  # chunks that went through a slot / as frames (no slot free or too big)

    def _slot_offset(self, slot: int) -> int:
        return _aligned(HEADER.size) + slot * self.slot_bytes

    def place(self, arrays: dict, seq: int) -> tuple[dict, dict | None]:
        """Copy the large arrays of a chunk into a free slot.

        Returns (the arrays to send as frames, the ``shm`` entry for the message's meta); with no free
        slot or a chunk too big for one: (arrays, None), and the chunk travels as frames.
        """
        if seq <= 0:
            raise ValueError(f"sequence numbers in slots start at 1, got {seq}")
        flat = flatten_arrays(arrays)
        large = {k: np.ascontiguousarray(v) for k, v in flat.items()
                 if isinstance(v, np.ndarray) and v.nbytes >= ZERO_COPY_MIN_BYTES and v.dtype.name in ALLOWED_DTYPES}
        free = next((i for i, holder in enumerate(self.holder) if holder is None), None)
        if not large or free is None or slot_bytes_for([v.nbytes for v in large.values()]) > self.slot_bytes:
            self.fallbacks += 1
            return arrays, None
        base = self._slot_offset(free)
        STAMP.pack_into(self._map, base, 0)  # torn until the stamp says otherwise
        offset, entries = _aligned(STAMP.size), []
        for key, value in large.items():
            self._buffer[base + offset: base + offset + value.nbytes] = value.reshape(-1).view(np.uint8)
            entries.append({"name": key, "dtype": value.dtype.name, "shape": list(value.shape), "offset": offset})
            offset += _aligned(value.nbytes)
        STAMP.pack_into(self._map, base, seq)
        self.holder[free] = seq
        self.placed += 1
        rest = unflatten_arrays((k, v) for k, v in flat.items() if k not in large)
        return rest, {"segment": self.name, "slot": free, "arrays": entries}

    def release_through(self, seq: int) -> None:
        """The receiver has stored every chunk up to `seq`: their slots are free again."""
        for i, holder in enumerate(self.holder):
            if holder is not None and holder <= seq:
                self.holder[i] = None

    def release(self, seq: int) -> None:
        """Free the slot of one chunk (the receiver refused it: it will not read that slot again)."""
        self.holder = [None if holder == seq else holder for holder in self.holder]

    def in_use(self) -> int:
        return sum(holder is not None for holder in self.holder)

    def close(self) -> None:
        """Unmap and remove the segment (a receiver that still maps it keeps its pages until it lets go)."""
        self._buffer = None
        try:
            self._map.close()
        except BufferError:
            pass  # views on it still exist: the mapping goes when they do
        self.path.unlink(missing_ok=True)


class _Segment:
    """A sender's segment as the receiver holds it: an open file descriptor, never a mapping.

    It is opened only as a regular file (O_NOFOLLOW: not a link; O_NONBLOCK: a FIFO or device named as the segment
    cannot block the open; fstat: nothing but a regular file of a size its header explains), and read with
    pread/preadv into this process's own memory. A sender that truncates its segment afterwards makes the reads
    come up short, which rejects the chunk; it cannot fault the receiver (an mmap of a file that shrank kills the
    process that touches the lost pages with SIGBUS).
    """

    fd = -1

    def __init__(self, name: str):
        path = SEGMENT_DIR / name
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
            size = st.st_size
            if size < _aligned(HEADER.size) or size > MAX_SEGMENT_BYTES:
                raise ValueError(f"segment of {size} bytes")
            header = os.pread(fd, HEADER.size, 0)
            if len(header) != HEADER.size:
                raise ValueError("segment shorter than its header")
            magic, self.token, self.slots, self.slot_bytes = HEADER.unpack(header)
            if magic != MAGIC:
                raise ValueError("not a zarl segment (bad magic)")
            if (_aligned(HEADER.size) + self.slots * self.slot_bytes != size or self.slot_bytes % ALIGN
                    or not self.slot_bytes):
                raise ValueError(f"header says {self.slots} slots of {self.slot_bytes} bytes in a {size}-byte "
                                 "segment")
        except BaseException:
            os.close(fd)
            raise
        self.fd, self.name, self.size = fd, name, size
        self.staging = np.empty(self.slot_bytes, np.uint8)  # one slot's bytes, read out of the segment

    def stamp(self, slot: int) -> int | None:
        """The slot's stamp; None if the segment no longer holds it (truncated)."""
        raw = os.pread(self.fd, STAMP.size, _aligned(HEADER.size) + slot * self.slot_bytes)
        return STAMP.unpack(raw)[0] if len(raw) == STAMP.size else None

    def read(self, slot: int, ranges: list[tuple[int, int]]) -> bool:
        """Copy byte ranges (offset, nbytes within the slot, ascending, not overlapping) of a slot into `staging`
        at the same offsets, in one preadv per contiguous run; False if the segment came up short."""
        base = _aligned(HEADER.size) + slot * self.slot_bytes
        for offset, nbytes in ranges:
            if nbytes and os.preadv(self.fd, [memoryview(self.staging[offset: offset + nbytes])],
                                    base + offset) != nbytes:
                return False
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self):
        self.close()


class SlotReader:
    """The receiver's side: the segment each sender has attached, and reading chunks out of their slots."""

    def __init__(self):
        self.segments: dict[str, _Segment] = {}

    def attach(self, sender: str, name: object, token: object, max_slot_bytes: int | None = None) -> str | None:
        """Open `sender`'s segment; returns None if it holds `token` (and its slots are no larger than
        `max_slot_bytes`, what the sender's registered chunks need), else why it cannot be used."""
        self.detach(sender)
        if not isinstance(name, str) or not SEGMENT_NAME.fullmatch(name):
            return f"segment name {name!r} is not a zarl segment name"
        if not isinstance(token, bytes) or len(token) != 16:
            return "no 16-byte token"
        try:
            segment = _Segment(name)
        except (OSError, ValueError) as e:
            return f"cannot map /dev/shm/{name}: {e}"
        if segment.token != token:
            segment.close()
            return "the segment's token differs (another host's, or another process's, segment)"
        if max_slot_bytes is not None and segment.slot_bytes > _aligned(max_slot_bytes):
            segment.close()
            return f"slots of {segment.slot_bytes:,} bytes, more than its chunks need ({max_slot_bytes:,})"
        self.segments[sender] = segment
        return None

    def detach(self, sender: str) -> None:
        segment = self.segments.pop(sender, None)
        if segment is not None:
            segment.close()

    def resolve(self, sender: str, seq: int, shm: object, arrays: dict) -> dict:
        """The chunk's arrays: `arrays` (from frames) plus read-only arrays read out of the slot (into a staging
        buffer per sender, reused by its next chunk). Raises ProtocolError.

        Call `check` after copying them out: only then is it known that the sender did not
        overwrite the slot meanwhile.
        """
        segment = self.segments.get(sender)
        if segment is None:
            raise ProtocolError("bad_meta", "chunk in shared memory from a sender without an attached segment")
        if not isinstance(shm, dict) or shm.get("segment") != segment.name:
            raise ProtocolError("bad_meta", f"shared-memory entry {shm!r:.120} does not name the sender's segment")
        slot, entries = shm.get("slot"), shm.get("arrays")
        if type(slot) is not int or not 0 <= slot < segment.slots or not isinstance(entries, list):
            raise ProtocolError("bad_meta", f"shared-memory slot {slot!r:.40} of {segment.slots}, or no array list")
        stamp = segment.stamp(slot)
        if stamp != seq:
            raise ProtocolError("bad_meta", f"shared-memory slot {slot} holds chunk #{stamp}, not #{seq}")
        flat = dict(flatten_arrays(arrays))
        specs = [self._entry(segment, entry) for entry in entries]
        ranges = sorted((offset, spec.nbytes) for offset, spec in specs)
        if any(a + n > b for (a, n), (b, _) in zip(ranges, ranges[1:])):
            raise ProtocolError("size_mismatch", "shared-memory arrays overlap in the slot")
        if not segment.read(slot, ranges):
            raise ProtocolError("size_mismatch", f"/dev/shm/{segment.name} is shorter than its header says "
                                                 "(truncated by its sender)")
        for offset, spec in specs:
            array = segment.staging[offset: offset + spec.nbytes].view(spec.dtype).reshape(spec.shape)
            if spec.dtype == np.bool_ and array.size and array.view(np.uint8).max() > 1:
                raise ProtocolError("bad_value", f"bool array {spec.name!r} holds bytes other than 0 and 1")
            if spec.name in flat:
                raise ProtocolError("bad_name", f"array {spec.name!r} both in a frame and in shared memory")
            array.flags.writeable = False
            flat[spec.name] = array
        try:
            return unflatten_arrays(flat.items())
        except ValueError as e:
            raise ProtocolError("bad_name", str(e)) from None

    def _entry(self, segment: _Segment, entry: object):
        if not isinstance(entry, dict) or entry.keys() != {"name", "dtype", "shape", "offset"}:
            raise ProtocolError("bad_meta", f"shared-memory array entry {entry!r:.120}")
        # The same checks as an array frame's description (name, dtype allow-list, shape), then the slot's bounds.
        spec = _parse_array_entry(0, {k: entry[k] for k in ("name", "dtype", "shape")})
        offset = entry["offset"]
        if (type(offset) is not int or offset < STAMP.size or offset % ALIGN
                or offset + spec.nbytes > segment.slot_bytes):
            raise ProtocolError("size_mismatch", f"shared-memory array {spec.name!r} ({spec.nbytes} bytes at offset "
                                                 f"{offset!r:.20}) does not lie inside a {segment.slot_bytes}-byte slot")
        return offset, spec

    def check(self, sender: str, seq: int, shm: dict) -> bool:
        """After the arrays were copied out: True if the slot still holds chunk `seq` (nothing was torn)."""
        segment = self.segments.get(sender)
        return segment is not None and segment.stamp(shm["slot"]) == seq


def segment_name(run_id: str, role: str, pid: int) -> str:
    """The segment of one actor process: ``zarl-<run id>-<role>-<pid>`` (the launcher removes a run's leftovers)."""
    return f"zarl-{run_id or 'norun'}-{role}-{pid}"


def remove_segments(run_id: str, role: str = "", pid: int | None = None) -> int:
    """Remove segments a crashed process left in /dev/shm (of one run; of one role and pid if given)."""
    if not run_id or not SEGMENT_DIR.is_dir():
        return 0
    pattern = f"zarl-{run_id}-{role}-{pid}" if role and pid is not None else f"zarl-{run_id}-*"
    removed = 0
    for path in SEGMENT_DIR.glob(pattern):
        path.unlink(missing_ok=True)
        removed += 1
    return removed
