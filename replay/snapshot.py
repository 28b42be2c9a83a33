"""Replay buffer snapshots: the buffer's arrays as .npy files in one atomically written directory.

A snapshot is a directory ``<run_dir>/replay/snapshot-<time ns>-s<env steps>/`` holding one ``.npy`` file
per buffer array and a manifest (size and CRC-32 of every file, see core/atomic_dir.py) whose metadata
holds the buffer's spec and geometry and the service's own state: rate-limiter counters and, per actor,
the last chunk sequence number stored (so that exactly-once delivery holds across a restart).

Compact: only the part of each ring that was ever written is saved (a buffer a tenth full writes a tenth
of its size), and arrays keep their dtype, so camera images stay uint8. Loading memory-maps the files and
copies them straight into the preallocated buffer: no second copy of the buffer in memory.

In the background: `BackgroundSnapshot` writes a snapshot from a forked child process, as Redis does.
fork() hands the child a copy-on-write view of the buffer frozen at that instant, so the snapshot is
consistent while the service goes on storing chunks and serving batches; memory grows only by the pages
the service overwrites while the child writes. Writing the whole buffer in the service's own loop had
stopped it for seconds (1.2 GB took 4.7 s).
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.atomic_dir import (
    CorruptError,
    mark_corrupt,
    prune,
    read_manifest,
    saved_dirs,
    write_atomic_dir,
)
from replay.buffer import ReplayBuffer
from wire.schema import Spec

PREFIX = "snapshot"
# Arrays indexed by transition slot, and by observation slot; the rest (counters, rows) are saved whole.
_TRANSITION_ARRAYS = ("action", "reward", "terminated", "obs_index", "next_obs_index")


class SnapshotMismatch(ValueError):
    """An intact snapshot that does not fit this service's configuration (capacity, chunk length)."""


@dataclass
class Snapshot:
    path: Path
    spec: Spec
    capacity: int
    chunk_len: int
    service: dict  # the service's state: rate limiter counters, per-actor sequence numbers, counters
    arrays: dict[str, np.ndarray]  # read-only memory maps of the saved arrays


def _filename(array_name: str) -> str:
    return array_name.replace("/", ".") + ".npy"


def _written_rows(buffer: ReplayBuffer, name: str) -> int:
    """How many leading slots of an array were ever written (the rest is still zeros)."""
    if name.startswith("obs/"):
        return min(buffer.obs_written, buffer.obs_capacity)
    if name in _TRANSITION_ARRAYS:
        return min(buffer.written, buffer.capacity)
    return -1  # saved whole


def save_snapshot(directory: str | os.PathLike, buffer: ReplayBuffer, service: dict, *, keep: int = 2,
                  run_id: str = "") -> Path:
    """Write the buffer and the service's state as a new snapshot, then delete all but the `keep` newest."""
    arrays = buffer.state_arrays()
    files, names = {}, {}
    for name, array in arrays.items():
        rows = _written_rows(buffer, name)
        part = array if rows < 0 else array[:rows]
        names[name] = _filename(name)
        files[names[name]] = lambda f, part=part: np.lib.format.write_array(f, np.ascontiguousarray(part),
                                                                              allow_pickle=False)
    meta = {"spec": buffer.spec.to_meta(), "capacity": buffer.capacity, "chunk_len": buffer.chunk_len,
            "obs_capacity": buffer.obs_capacity, "arrays": names, "service": service, "run_id": run_id}
    path = write_atomic_dir(directory, PREFIX, f"s{service.get('limiter', {}).get('inserted', 0)}", files, meta)
    prune(directory, PREFIX, keep)
    return path


def snapshot_meta(path: str | os.PathLike) -> dict:
    """A snapshot's metadata (from its manifest), without checking or reading the arrays."""
    return read_manifest(path, verify=False).get("meta", {})


def list_snapshots(directory: str | os.PathLike) -> list[Path]:
    return saved_dirs(directory, PREFIX)


def load_snapshot(path: str | os.PathLike) -> Snapshot:
    """Check every file of a snapshot and memory-map its arrays; raises CorruptError naming a damaged file."""
    path = Path(path)
    meta = read_manifest(path).get("meta", {})
    try:
        spec = Spec.from_meta(meta["spec"])
        names = dict(meta["arrays"])
        capacity, chunk_len = int(meta["capacity"]), int(meta["chunk_len"])
        service = dict(meta["service"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CorruptError(path / "manifest.json", f"lacks the snapshot's description ({type(e).__name__}: {e})") \
            from None
    arrays = {}
    for name, filename in names.items():
        try:
            arrays[name] = np.load(path / filename, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CorruptError(path / filename, f"not a readable .npy file ({type(e).__name__}: {e})") from None
    return Snapshot(path=path, spec=spec, capacity=capacity, chunk_len=chunk_len, service=service, arrays=arrays)


def restore_buffer(buffer: ReplayBuffer, snapshot: Snapshot) -> None:
    """Copy a snapshot into a freshly made buffer of the same spec, capacity and chunk length."""
    if (snapshot.spec, snapshot.capacity, snapshot.chunk_len) != (buffer.spec, buffer.capacity, buffer.chunk_len):
        raise SnapshotMismatch(
            f"snapshot {snapshot.path} holds a buffer of {snapshot.capacity:,} transitions, chunks of "
            f"{snapshot.chunk_len} and spec {snapshot.spec}; this service has {buffer.capacity:,}, "
            f"{buffer.chunk_len} and {buffer.spec} (replay.capacity, actor.chunk_len or the env changed)")
    # state_arrays() hands out the buffer's own arrays: fill their written part in place, then let the buffer
    # take its counters from the snapshot (copying its own arrays onto themselves costs nothing).
    live = buffer.state_arrays()
    if set(live) != set(snapshot.arrays):
        raise SnapshotMismatch(f"snapshot {snapshot.path} has arrays {sorted(snapshot.arrays)}, the buffer "
                               f"{sorted(live)}")
    for name, saved in snapshot.arrays.items():
        if _written_rows(buffer, name) < 0:
            live[name] = np.array(saved)
            continue
        target = live[name]
        if saved.dtype != target.dtype or saved.shape[1:] != target.shape[1:] or len(saved) > len(target):
            raise CorruptError(snapshot.path / _filename(name), f"holds {saved.dtype}{list(saved.shape)}, which "
                               f"does not fit the buffer's {target.dtype}{list(target.shape)}")
        target[:len(saved)] = saved
    buffer.load_state_arrays(live)


def load_latest_snapshot(directory: str | os.PathLike, make_buffer, log: logging.Logger) \
        -> tuple[ReplayBuffer, Snapshot] | None:
    """The newest snapshot that is intact and fits, restored into ``make_buffer(spec)``; None if there is none.

    A damaged snapshot is logged as an error naming the file, renamed to ``*.corrupt`` and the previous one
    is tried; one that does not fit the configuration is logged and skipped. With none usable the caller
    starts empty (and says so).
    """
    for path in list_snapshots(directory):
        try:
            snapshot = load_snapshot(path)
            buffer = make_buffer(snapshot.spec)
            restore_buffer(buffer, snapshot)
            return buffer, snapshot
        except CorruptError as e:
            moved = mark_corrupt(path)
            log.error(f"replay snapshot unusable: {e}; renamed to {moved.name}, trying the previous one")
        except SnapshotMismatch as e:
            log.error(f"replay snapshot skipped: {e}")
    return None


@dataclass
class SnapshotDone:
    """A background snapshot that ended: written (ok) or not, with what the service state held at the fork."""

    ok: bool
    seconds: float
    service: dict
    transitions: int


class BackgroundSnapshot:
    """At most one snapshot at a time, written by a forked child process (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike, keep: int, run_id: str, log: logging.Logger):
        self.directory, self.keep, self.run_id, self.log = Path(directory), keep, run_id, log
        self.pid: int | None = None
        self.started = 0.0
        self.service: dict = {}
        self.transitions = 0

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, buffer: ReplayBuffer, service: dict) -> bool:
        """Fork a child that writes the buffer and `service` as a snapshot; False when fork() is refused."""
        if self.running:
            raise RuntimeError("a background snapshot is already being written")
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as e:  # e.g. the kernel would not commit the memory a copy-on-write child might need
            self.log.warning(f"cannot fork a snapshot writer ({e}): writing the snapshot in the service instead")
            return False
        if pid == 0:
            self._child(buffer, service, parent)  # never returns
        self.pid, self.started, self.service, self.transitions = pid, time.time(), service, len(buffer)
        return True

    def _child(self, buffer: ReplayBuffer, service: dict, parent: int) -> None:
        code = 1
        try:
            _die_with_parent(parent)
            # Ctrl-C reaches the whole process group; the parent decides when the child stops.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            save_snapshot(self.directory, buffer, service, keep=self.keep, run_id=self.run_id)
            code = 0
        except BaseException as e:  # noqa: BLE001 - report anything, then leave without running the parent's code
            self.log.error(f"background snapshot failed: {type(e).__name__}: {e}")
        finally:
            os._exit(code)  # no atexit handlers, no ZeroMQ context teardown: those belong to the parent

    def poll(self) -> SnapshotDone | None:
        """The finished snapshot, once the child has exited; None while it runs (or when none was started)."""
        if self.pid is None:
            return None
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        return self._finished(status)

    def wait(self, timeout: float) -> SnapshotDone | None:
        """Wait up to `timeout` s for the running child; past that, stop it. None when none was running or it
        was stopped."""
        deadline = time.time() + timeout
        while self.pid is not None:
            done = self.poll()
            if done is not None:
                return done
            if time.time() >= deadline:
                self.log.warning(f"background snapshot still running after {timeout:.0f} s")
                self.stop()
                return None
            time.sleep(0.02)
        return None

    def stop(self) -> None:
        """Kill the running child, if any, and forget its snapshot (the next write removes its temporary files)."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.log.info("background snapshot stopped unfinished")
            self.pid, self.service = None, {}

    def _finished(self, status: int) -> SnapshotDone:
        done = SnapshotDone(ok=os.waitstatus_to_exitcode(status) == 0, seconds=time.time() - self.started,
                            service=self.service, transitions=self.transitions)
        self.pid, self.service = None, {}
        return done


def _die_with_parent(parent: int) -> None:
    """Linux: the child gets SIGKILL when the service dies (a kill -9 of the service leaves no writer behind)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
