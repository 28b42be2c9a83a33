"""Directories of files that appear on disk whole or not at all, and that say when they are damaged.

Learner checkpoints and replay snapshots are both "a few files that belong together". Each is written
like this:

    1. every file goes into a hidden temporary directory next to the final one, ``.tmp-<name>-XXXX/``;
    2. ``manifest.json`` is written last: the size and CRC-32 of every file, plus the caller's metadata;
    3. files and directory are fsync'ed, then the directory is renamed to its final name.

A rename is atomic on POSIX, so a reader sees either the complete directory or none of it, and a crash
(kill -9, power loss after the fsyncs) leaves at most a stale temporary directory, removed on the next
write. Reading checks every file against the manifest, so a file truncated or altered afterwards (a full
disk, a bad copy, a bit flip) raises ``CorruptError`` naming that file, instead of loading garbage.

Several such directories live side by side under one parent, named ``<prefix>-<time ns>-<label>``, so
that the newest is the one written last even when a run resumes from an older one. Keeping the last
few means there is always a previous good one to fall back on.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_READ_BLOCK = 16 * 2**20


class CorruptError(RuntimeError):
    """A saved directory that cannot be used; the message names the file and what is wrong with it."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


class _CRCWriter:
    """A write-only file wrapper that keeps the CRC-32 and size of everything written through it."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.crc, self.size = raw, 0, 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.crc = zlib.crc32(view, self.crc)
        self.size += view.nbytes
        return self.raw.write(view)


def file_crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(_READ_BLOCK):
            crc = zlib.crc32(block, crc)
    return crc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


FileWriter = Callable[[BinaryIO], None]


def write_atomic_dir(parent: str | os.PathLike, prefix: str, label: str, files: dict[str, bytes | FileWriter],
                     meta: dict) -> Path:
    """Write `files` (name -> bytes, or a function that writes into a binary file object) and a manifest
    holding `meta` as one directory ``parent/<prefix>-<time ns>-<label>``; returns its path."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(parent)
    name = f"{prefix}-{time.time_ns():020d}-{label}"
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".tmp-{name}-"))
    try:
        entries = {}
        for filename, content in files.items():
            with open(tmp / filename, "wb") as raw:
                writer = _CRCWriter(raw)
                if callable(content):
                    content(writer)
                else:
                    writer.write(content)
                raw.flush()
                os.fsync(raw.fileno())
            entries[filename] = {"bytes": writer.size, "crc32": writer.crc}
        manifest = {"format": FORMAT_VERSION, "files": entries, "meta": meta}
        with open(tmp / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        final = parent / name
        os.rename(tmp, final)  # atomic: the directory appears complete or not at all
        _fsync_dir(parent)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(directory: str | os.PathLike, verify: bool = True) -> dict:
    """The manifest of a saved directory after checking every file it lists (size, and CRC-32 if `verify`).

    Raises CorruptError naming the first file that is missing, truncated or altered.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CorruptError(path, "missing (the directory was not written by this program, or was damaged)") from None
    except (OSError, ValueError) as e:
        raise CorruptError(path, f"unreadable or truncated ({type(e).__name__}: {e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION or \
            not isinstance(manifest.get("files"), dict):
        raise CorruptError(path, f"not a format-{FORMAT_VERSION} manifest")
    for filename, entry in manifest["files"].items():
        file = directory / filename
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            raise CorruptError(file, "missing") from None
        if size != entry["bytes"]:
            raise CorruptError(file, f"truncated or padded: {size:,} bytes on disk, {entry['bytes']:,} written")
        if verify and file_crc32(file) != entry["crc32"]:
            raise CorruptError(file, "content differs from what was written (CRC-32 mismatch)")
    return manifest


def saved_dirs(parent: str | os.PathLike, prefix: str) -> list[Path]:
    """The saved directories under `parent` with this prefix, newest (last written) first."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    found = []
    for path in parent.iterdir():
        parts = path.name.split("-", 2)
        if path.is_dir() and len(parts) == 3 and parts[0] == prefix and parts[1].isdigit() \
                and not path.name.endswith(".corrupt"):
            found.append((int(parts[1]), path))
    return [path for _, path in sorted(found, reverse=True)]


def mark_corrupt(directory: Path) -> Path:
    """Rename a damaged directory aside (kept for inspection) so that it is not tried again."""
    target = directory.with_name(directory.name + ".corrupt")
    try:
        os.rename(directory, target)
    except OSError:
        return directory
    return target


def prune(parent: str | os.PathLike, prefix: str, keep: int) -> list[Path]:
    """Delete all but the `keep` newest directories with this prefix; returns what was deleted."""
    doomed = saved_dirs(parent, prefix)[max(1, keep):]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def remove_stale_temporaries(parent: Path) -> None:
    """Temporary directories left by a writer that was killed mid-write."""
    for path in parent.glob(".tmp-*"):
        shutil.rmtree(path, ignore_errors=True)
