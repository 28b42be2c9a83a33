"""Chunks between processes of one host through shared memory: one copy instead of three.

Over a socket, a 25 MB chunk of camera frames is copied three times on its way into the replay
buffer: into the kernel, out of the kernel into the receiver's frame, and from the frame into the
buffer. Through shared memory it is copied twice, once into a slot that both processes map, once
from the slot into the buffer, and no system call touches the bytes. The ZeroMQ message still goes
over the socket (header, small arrays, flow control, acknowledgements); only the large arrays
stay behind in the slot and the header says where.

    sender (actor)                          receiver (replay service)
    SlotWriter.place(arrays, seq)  ------>  SlotReader.resolve(sender, meta, arrays)
      copies large arrays into a free slot    maps the segment (once), checks the slot's stamp,
      returns the small arrays + meta         returns read-only views on the slot
    SlotWriter.release_through(last_seq) <--  acknowledgement: everything up to last_seq is stored

The segment is a sealed memfd of the sender (``memfd_create``, sealed with F_SEAL_SHRINK, F_SEAL_GROW and
F_SEAL_SEAL), which the receiver opens as ``/proc/<pid>/fd/<fd>``::

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
  registration carries the segment's name, pid and fd and a random token written in the segment's
  header, and the receiver answers whether it found that token (``SlotReader.attach``). A receiver
  on another host, or in a container with its own /proc, answers no, and the sender keeps to frames.
* The receiver maps only a sealed memfd: a file that can shrink under a mapping kills the process that
  touches the lost pages with SIGBUS, and a sealed one cannot shrink. It opens it without blocking
  (O_NONBLOCK: a FIFO named instead cannot hang the open), as a regular file whose /proc link names
  the segment (the name matched whole against ``SEGMENT_NAME``: no trailing newline), of exactly the
  size its header states, with slots no larger than the sender's registered chunks need; every
  offset is checked against the slot's size.
* A sender that crashes leaves nothing behind: the memfd goes with the last process holding it.

(multiprocessing.shared_memory is not used: before Python 3.13 a process that only attaches to a
segment also registers it with its resource tracker, which then deletes the segment under the
sender when the receiver exits.)
"""
from __future__ import annotations

import fcntl
import mmap
import os
import re
import secrets
import stat
import struct
from pathlib import Path

import numpy as np

from wire.protocol import (
    ALLOWED_DTYPES,
    ZERO_COPY_MIN_BYTES,
    ProtocolError,
    _parse_array_entry,
    flatten_arrays,
    unflatten_arrays,
)

SEGMENT_DIR = Path("/dev/shm")
SEGMENT_NAME = re.compile(r"zarl-[A-Za-z0-9_.-]{1,160}")  # matched whole (fullmatch): no trailing newline
MAGIC = b"ZARLSHM1"
ALIGN = 64  # cache-line alignment of the header, the slots and every array in a slot
HEADER = struct.Struct("<8s16sQQ")  # magic, token, slots, slot_bytes
STAMP = struct.Struct("<Q")
MAX_SEGMENT_BYTES = 64 * 2**30
REQUIRED_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL  # what a segment must be sealed with


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def available() -> bool:
    """Whether this host can make sealed shared-memory segments (memfd) that another process can open (/proc)."""
    return hasattr(os, "memfd_create") and os.path.isdir(f"/proc/{os.getpid()}/fd")


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
        self.token = secrets.token_bytes(16)
        # A sealed memfd, not a file in /dev/shm: it cannot shrink or grow once sealed (F_SEAL_SHRINK, F_SEAL_GROW,
        # F_SEAL_SEAL), so a receiver that maps it can never be faulted with SIGBUS by a truncation, and it goes
        # with the last process that holds it (a crashed actor leaves nothing behind). The receiver opens it as
        # /proc/<pid>/fd/<fd> (the registration says which), as a regular file of the size its header states.
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, self.size)
            # Reserve the pages now: a full /dev/shm (Docker gives 64 MB by default) then fails here, with ENOSPC,
            # instead of killing the process with SIGBUS at its first write into a page that cannot be had.
            os.posix_fallocate(fd, 0, self.size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, REQUIRED_SEALS)
            self._map = mmap.mmap(fd, self.size)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.path = Path(f"/proc/{os.getpid()}/fd/{fd}")
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

    def offer(self) -> dict:
        """What a registration says of the segment: its name, token, and where a receiver on this host opens it."""
        return {"segment": self.name, "token": self.token, "pid": os.getpid(), "fd": self.fd}

    def close(self) -> None:
        """Unmap and close the segment (a receiver that still maps it keeps its pages until it lets go)."""
        self._buffer = None
        try:
            self._map.close()
        except BufferError:
            pass  # views on it still exist: the mapping goes when they do
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Segment:
    """A sender's segment as the receiver maps it: only a sealed memfd (it cannot shrink: no SIGBUS), opened through
    /proc/<pid>/fd/<fd> without blocking (a FIFO or device there cannot hang the open), a regular file whose
    /proc link names the segment, of exactly the size its header states, slots no larger than `max_slot_bytes`."""

    def __init__(self, name: str, pid: int, fd: int, max_slot_bytes: int | None = None):
        path = f"/proc/{pid}/fd/{fd}"
        if os.readlink(path) != f"/memfd:{name} (deleted)":
            raise ValueError(f"{path} is not the memfd {name!r}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            if seals & REQUIRED_SEALS != REQUIRED_SEALS:
                raise ValueError("not sealed against shrinking (F_SEAL_SHRINK, F_SEAL_SEAL)")
            size = st.st_size
            if size < _aligned(HEADER.size) or size > MAX_SEGMENT_BYTES:
                raise ValueError(f"segment of {size} bytes")
            self.map = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, self.token, self.slots, self.slot_bytes = HEADER.unpack_from(self.map, 0)
        if magic != MAGIC:
            raise ValueError("not a zarl segment (bad magic)")
        if _aligned(HEADER.size) + self.slots * self.slot_bytes != size or self.slot_bytes % ALIGN:
            raise ValueError(f"header says {self.slots} slots of {self.slot_bytes} bytes in a {size}-byte segment")
        if max_slot_bytes is not None and self.slot_bytes > _aligned(max_slot_bytes):
            raise ValueError(f"slots of {self.slot_bytes:,} bytes, more than its chunks need ({max_slot_bytes:,})")
        self.name, self.size = name, size
        self.buffer = np.frombuffer(self.map, dtype=np.uint8)

    def stamp(self, slot: int) -> int:
        return STAMP.unpack_from(self.map, _aligned(HEADER.size) + slot * self.slot_bytes)[0]


class SlotReader:
    """The receiver's side: the segment each sender has attached, and reading chunks out of their slots."""

    def __init__(self):
        self.segments: dict[str, _Segment] = {}

    def attach(self, sender: str, segment: object, token: object, pid: object = None, fd: object = None,
               max_slot_bytes: int | None = None) -> str | None:
        """Map `sender`'s segment (`SlotWriter.offer`); returns None if it holds `token` (and its slots are no larger
        than `max_slot_bytes`, what the sender's registered chunks need), else why it cannot be used."""
        self.detach(sender)
        name = segment
        if not isinstance(name, str) or not SEGMENT_NAME.fullmatch(name):
            return f"segment name {name!r} is not a zarl segment name"
        if not isinstance(token, bytes) or len(token) != 16:
            return "no 16-byte token"
        if type(pid) is not int or type(fd) is not int or pid <= 0 or fd < 0:
            return "no pid and fd of the segment"
        try:
            mapped = _Segment(name, pid, fd, max_slot_bytes)
        except (OSError, ValueError) as e:
            return f"cannot map {name}: {e}"
        if mapped.token != token:
            return "the segment's token differs (another host's, or another process's, segment)"
        self.segments[sender] = mapped
        return None

    def detach(self, sender: str) -> None:
        self.segments.pop(sender, None)  # the mapping closes when the last view on it is gone

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
        if segment.stamp(slot) != seq:
            raise ProtocolError("bad_meta", f"shared-memory slot {slot} holds chunk #{segment.stamp(slot)}, "
                                            f"not #{seq}")
        base = _aligned(HEADER.size) + slot * segment.slot_bytes
        flat = dict(flatten_arrays(arrays))
        for entry in entries:
            name, array = self._view(segment, base, entry)
            if name in flat:
                raise ProtocolError("bad_name", f"array {name!r} both in a frame and in shared memory")
            flat[name] = array
        try:
            return unflatten_arrays(flat.items())
        except ValueError as e:
            raise ProtocolError("bad_name", str(e)) from None

    def _view(self, segment: _Segment, base: int, entry: object) -> tuple[str, np.ndarray]:
        if not isinstance(entry, dict) or entry.keys() != {"name", "dtype", "shape", "offset"}:
            raise ProtocolError("bad_meta", f"shared-memory array entry {entry!r:.120}")
        # The same checks as an array frame's description (name, dtype allow-list, shape), then the slot's bounds.
        spec = _parse_array_entry(0, {k: entry[k] for k in ("name", "dtype", "shape")})
        offset = entry["offset"]
        if (type(offset) is not int or offset < STAMP.size or offset % ALIGN
                or offset + spec.nbytes > segment.slot_bytes):
            raise ProtocolError("size_mismatch", f"shared-memory array {spec.name!r} ({spec.nbytes} bytes at offset "
                                                 f"{offset!r:.20}) does not lie inside a {segment.slot_bytes}-byte slot")
        array = segment.buffer[base + offset: base + offset + spec.nbytes].view(spec.dtype).reshape(spec.shape)
        if spec.dtype == np.bool_ and array.size and array.view(np.uint8).max() > 1:
            raise ProtocolError("bad_value", f"bool array {spec.name!r} holds bytes other than 0 and 1")
        return spec.name, array  # read-only: the mapping is

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
