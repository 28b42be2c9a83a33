"""The wire protocol: how every process of the system talks to every other.

A message is one multipart ZeroMQ message::

    frame 0      msgpack header {"v", "kind", "sender", "seq", "policy_version", "meta", "arrays"}
    frame 1..n   the raw bytes of each array, in the order the header lists them

``header["arrays"]`` describes each array frame as ``{"name", "dtype", "shape"}``. Nested dicts
of arrays are flattened to "/"-joined names (``{"obs": {"front": a}}`` travels as ``"obs/front"``)
and rebuilt on decode. Array bytes are C-ordered and little-endian.

Why this layout: the header is tiny and cheap to parse and check, and the bulk data never passes
through a serialiser. Arrays of ``ZERO_COPY_MIN_BYTES`` or more are handed to ZeroMQ without a
copy on send and read with ``np.frombuffer`` on the received frame, so a 25 MB chunk of camera
images costs one copy into the kernel and one copy out of it, and nothing else.

Two consequences callers must know:

* Sending: a large array is *not* copied, ZeroMQ's I/O thread reads it after ``send`` returns.
  Do not write into it until the message has left; pass fresh arrays per message, or
  ``copy=True`` when you reuse a buffer.
* Receiving: every decoded array is read-only. Large ones are views on the received frame (no
  copy; the frame lives as long as the array does), small ones are private copies, made
  read-only too so that code behaves the same whatever the array size. ``np.array(x)`` gives a
  writable copy.

Everything that arrives from the network is checked before it is used; a bad message raises
``ProtocolError`` with a short machine-readable ``reason``:

    bad_frame      a frame is not a bytes-like object
    frame_count    no frames, or the number of array frames differs from the header's list
    too_large      the message (or its header) is bigger than allowed
    bad_header     the header is not msgpack, not a map, or a field is missing, unknown or mistyped
    bad_version    the header's protocol version is not PROTOCOL_VERSION
    bad_kind       the kind is not a string from the allowed set
    bad_name       an array name is empty, malformed, duplicated, or both a leaf and a prefix
    bad_dtype      a dtype outside ALLOWED_DTYPES
    bad_shape      a shape that is not a list of at most MAX_RANK non-negative ints
    size_mismatch  an array frame's length differs from what its dtype and shape say
    bad_value      a bool array holding bytes other than 0 and 1; on send, a value that is no array
    bad_meta       (send only) meta that msgpack cannot carry
"""
from __future__ import annotations

import logging
import math
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq

from core import tree

PROTOCOL_VERSION: int = 1
MAX_MESSAGE_BYTES: int = 512 * 1024 * 1024  # default cap on one received message, all frames together
MAX_HEADER_BYTES: int = 1024 * 1024  # headers hold names and small metadata, never bulk data
ZERO_COPY_MIN_BYTES: int = 64 * 1024  # below this, copying is cheaper than ZeroMQ's zero-copy bookkeeping
MAX_RANK: int = 8
MAX_NAME_CHARS: int = 1024
MAX_SENDER_CHARS: int = 256

ALLOWED_DTYPES: frozenset[str] = frozenset({
    "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
    "float16", "float32", "float64",
})
# The byte order on the wire is little-endian; on the usual little-endian hosts these are the
# native dtypes, so nothing is converted.
_WIRE_DTYPES: dict[str, np.dtype] = {name: np.dtype(name).newbyteorder("<") for name in ALLOWED_DTYPES}

_HEADER_FIELDS = frozenset({"v", "kind", "sender", "seq", "policy_version", "meta", "arrays"})
_ARRAY_FIELDS = frozenset({"name", "dtype", "shape"})
# Largest byte count a shape may describe: numpy cannot address more than this.
_MAX_ADDRESSABLE_BYTES = 2**63 - 1


class Kind:
    """The kinds of message. Receivers accept only these unless they pass their own set."""

    REGISTER = "register"    # an actor or service announces itself
    HEARTBEAT = "heartbeat"  # I am still alive
    CHUNK = "chunk"          # a trajectory chunk from an actor
    CREDIT = "credit"        # the replay role's reply to an actor: credits and acknowledgements (wire/session.py)
    SAMPLE = "sample"        # the learner asks the replay service for a batch
    BATCH = "batch"          # a training batch
    ROWS = "rows"            # replay rows for the learner's own copy of the buffer (learner/device_replay.py)
    WEIGHTS = "weights"      # versioned policy weights
    STATS = "stats"          # metrics for logging
    CONTROL = "control"      # the launcher's broadcast to every role: {"command": "stop"} (the only command)
    BYE = "bye"              # orderly goodbye


KINDS: frozenset[str] = frozenset(
    value for key, value in vars(Kind).items() if not key.startswith("_") and isinstance(value, str)
)


class ProtocolError(ValueError):
    """A message that breaks the protocol. ``reason`` is a short code (see the module docstring).

    ``route`` holds the routing frames of the offending message when ``recv`` raised it, so that
    a ROUTER can tell which peer sent it.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(f"[{reason}] {message}")
        self.reason = reason
        self.route: list[bytes] = []


@dataclass
class Message:
    """A decoded message. ``arrays`` is a nested dict of read-only numpy arrays."""

    kind: str
    sender: str
    seq: int
    policy_version: int
    meta: dict
    arrays: dict

    @property
    def nbytes(self) -> int:
        """Total bytes of all arrays."""
        return sum(array.nbytes for array in flatten_arrays(self.arrays).values())


# --------------------------------------------------------------------------------------------
# Nested dicts <-> "/"-joined names


def flatten_arrays(arrays: Mapping | None) -> dict[str, Any]:
    """``{"obs": {"front": a}}`` -> ``{"obs/front": a}``. Keys must be non-empty str without "/"."""
    flat: dict[str, Any] = {}
    for path, value in tree.items(arrays or {}, is_leaf=lambda node: not isinstance(node, dict)):
        for depth, key in enumerate(path):
            if not isinstance(key, str) or not key or "/" in key:
                prefix = "/".join(path[:depth])
                raise ProtocolError("bad_name", f"array key {_short(key)} under {prefix or 'the top level'!r} "
                                    "must be a non-empty string without '/'")
        flat["/".join(path)] = value
    return flat


def unflatten_arrays(flat: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict:
    """``{"obs/front": a}`` -> ``{"obs": {"front": a}}``; rejects duplicates and leaf/prefix clashes.

    Takes a mapping or (name, value) pairs (pairs can hold the duplicates a mapping would hide).
    """
    pairs = list(flat.items() if isinstance(flat, Mapping) else flat)
    for name, _ in pairs:
        _check_name(name)
    try:
        return tree.unflatten(pairs)
    except ValueError as e:
        raise ProtocolError("bad_name", f"array name {e}") from None


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ProtocolError("bad_name", f"array name {_short(name)} must be a non-empty string")
    if len(name) > MAX_NAME_CHARS:
        raise ProtocolError("bad_name", f"array name of {len(name)} characters (at most {MAX_NAME_CHARS})")
    if "" in name.split("/"):
        raise ProtocolError("bad_name", f"array name {_short(name)} has an empty path part")


# --------------------------------------------------------------------------------------------
# Header validation, shared by encode (so that whatever we send decodes) and decode


@dataclass(frozen=True)
class _ArraySpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    nbytes: int


def _parse_header(view: memoryview) -> Any:
    if view.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError("too_large", f"header of {view.nbytes} bytes (at most {MAX_HEADER_BYTES})")
    try:
        return msgpack.unpackb(view, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises many types (ExtraData, FormatError, ValueError, ...)
        raise ProtocolError("bad_header", f"header is not valid msgpack ({type(exc).__name__}: {exc})") from None


def _is_int(value: Any) -> bool:
    return type(value) is int  # msgpack's true/false arrive as bool, a subclass of int: not a number here


def _short(value: Any, limit: int = 80) -> str:
    """repr() cut to `limit` characters: hostile headers must not flood the log."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _validate_header(header: Any, array_frame_bytes: Sequence[int],
                     kinds: Collection[str]) -> list[_ArraySpec]:
    """Checks every field of a parsed header against the frames that came with it."""
    if not isinstance(header, dict):
        raise ProtocolError("bad_header", f"header is a msgpack {type(header).__name__}, not a map")
    version = header.get("v")
    if not _is_int(version) or version != PROTOCOL_VERSION:
        raise ProtocolError("bad_version", f"protocol version {_short(version)}, expected {PROTOCOL_VERSION}")
    if header.keys() != _HEADER_FIELDS:
        missing = sorted(_HEADER_FIELDS - header.keys())
        unknown = _short(sorted(map(repr, header.keys() - _HEADER_FIELDS)))
        raise ProtocolError("bad_header", f"header fields missing {missing}, unknown {unknown}")
    kind = header["kind"]
    if not isinstance(kind, str) or kind not in kinds:
        raise ProtocolError("bad_kind", f"kind {_short(kind)} is not one of {sorted(kinds)}")
    sender = header["sender"]
    if not isinstance(sender, str) or len(sender) > MAX_SENDER_CHARS:
        raise ProtocolError("bad_header", f"sender must be a string of at most {MAX_SENDER_CHARS} "
                            f"characters, got {type(sender).__name__}")
    for key in ("seq", "policy_version"):
        if not _is_int(header[key]) or not 0 <= header[key] < 2**64:
            raise ProtocolError("bad_header", f"{key} must be an int in [0, 2**64), got {_short(header[key])}")
    if not isinstance(header["meta"], dict):
        raise ProtocolError("bad_header", f"meta must be a map, got {type(header['meta']).__name__}")
    entries = header["arrays"]
    if not isinstance(entries, list):
        raise ProtocolError("bad_header", f"arrays must be a list, got {type(entries).__name__}")
    if len(entries) != len(array_frame_bytes):
        raise ProtocolError("frame_count", f"header lists {len(entries)} arrays but "
                            f"{len(array_frame_bytes)} array frames came")
    specs = [_check_array_bytes(_parse_array_entry(i, entry), frame_bytes)
             for i, (entry, frame_bytes) in enumerate(zip(entries, array_frame_bytes))]
    unflatten_arrays((spec.name, None) for spec in specs)  # names must form a tree: no duplicates, no clashes
    return specs


def _parse_array_entry(index: int, entry: Any) -> _ArraySpec:
    """Checks one array description {"name", "dtype", "shape"}: name, dtype allow-list, addressable shape."""
    if not isinstance(entry, dict) or entry.keys() != _ARRAY_FIELDS:
        raise ProtocolError("bad_header", f"arrays[{index}] must be a map with exactly the fields "
                            f"{sorted(_ARRAY_FIELDS)}, got {_short(entry, 200)}")
    name = entry["name"]
    _check_name(name)
    dtype_name = entry["dtype"]
    if not isinstance(dtype_name, str) or dtype_name not in ALLOWED_DTYPES:
        raise ProtocolError("bad_dtype", f"array {name!r} has dtype {_short(dtype_name)}, "
                            f"not one of {sorted(ALLOWED_DTYPES)}")
    dtype = _WIRE_DTYPES[dtype_name]
    shape = entry["shape"]
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_is_int(d) and d >= 0 for d in shape):
        raise ProtocolError("bad_shape", f"array {name!r} has shape {_short(shape)}; a shape is a list of "
                            f"at most {MAX_RANK} non-negative ints")
    # Python ints do not overflow, so the product is exact even for hostile dimensions.
    addressable = math.prod(d for d in shape if d) * dtype.itemsize
    if addressable > _MAX_ADDRESSABLE_BYTES:
        raise ProtocolError("bad_shape", f"array {name!r} has shape {_short(shape)}, too big to address")
    return _ArraySpec(name, dtype, tuple(shape), math.prod(shape) * dtype.itemsize)


def _check_array_bytes(spec: _ArraySpec, frame_bytes: int) -> _ArraySpec:
    if spec.nbytes != frame_bytes:
        raise ProtocolError("size_mismatch", f"array {spec.name!r} ({spec.dtype.name}{list(spec.shape)}) needs "
                            f"{spec.nbytes} bytes, its frame has {frame_bytes}")
    return spec


# --------------------------------------------------------------------------------------------
# Encoding


def _host_array(name: str, value: Any) -> np.ndarray:
    """Turns a numpy array, numpy scalar or torch tensor into a C-contiguous little-endian array."""
    torch = sys.modules.get("torch")  # a tensor can only exist if torch was imported: never import it here
    if torch is not None and isinstance(value, torch.Tensor):
        array = _tensor_to_numpy(name, value, torch)
    elif isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
    else:
        raise ProtocolError("bad_value", f"array {name!r} is a {type(value).__name__}; send numpy arrays or "
                            "torch tensors (wrap Python numbers and lists with np.asarray and a dtype)")
    if array.dtype.name not in ALLOWED_DTYPES or array.dtype.fields is not None:
        raise ProtocolError("bad_dtype", f"array {name!r} has dtype {array.dtype}, "
                            f"not one of {sorted(ALLOWED_DTYPES)}")
    if array.ndim > MAX_RANK:
        raise ProtocolError("bad_shape", f"array {name!r} has rank {array.ndim} (at most {MAX_RANK})")
    wire_dtype = _WIRE_DTYPES[array.dtype.name]
    if array.dtype != wire_dtype:  # big-endian input
        array = array.astype(wire_dtype)
    if not array.flags.c_contiguous:
        # The only copy we make of a numpy array, and only when its memory is not one C-ordered block.
        array = array.copy(order="C")
    return array


def _tensor_to_numpy(name: str, tensor: Any, torch: Any) -> np.ndarray:
    dtype_name = str(tensor.dtype).removeprefix("torch.")
    if dtype_name not in ALLOWED_DTYPES:
        hint = " (numpy has no bfloat16: convert with .float() or .half() first)" if dtype_name == "bfloat16" else ""
        raise ProtocolError("bad_dtype", f"tensor {name!r} has dtype {tensor.dtype}, "
                            f"not one of {sorted(ALLOWED_DTYPES)}{hint}")
    tensor = tensor.detach()
    if tensor.device.type == "cuda":
        # One copy, straight into page-locked memory: the DMA engine writes it without a bounce
        # buffer, and ZeroMQ then sends from it without another copy.
        host = torch.empty(tuple(tensor.shape), dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        torch.cuda.current_stream(tensor.device).synchronize()  # the copy must land before we read it
        return host.numpy()
    try:
        if tensor.device.type != "cpu":  # other accelerators: one plain copy
            tensor = tensor.to("cpu")
        return tensor.resolve_neg().resolve_conj().numpy()  # a CPU tensor: a view, no copy
    except (TypeError, RuntimeError) as exc:  # sparse, quantized, meta ... tensors have no numpy view
        raise ProtocolError("bad_value", f"tensor {name!r} cannot be viewed as a numpy array: {exc}") from None


def _meta_default(value: Any) -> Any:
    # Metrics are often numpy scalars (a float32 reward sum); send them as plain numbers.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise a {type(value).__name__}; put arrays in `arrays`, not in `meta`")


def encode(kind: str, arrays: Mapping | None = None, *, sender: str, seq: int = 0, policy_version: int = 0,
           meta: Mapping | None = None, copy: bool = False, kinds: Collection[str] | None = None) -> list:
    """Builds the frames of one message, ready for ``socket.send_multipart``.

    ``arrays``: a nested dict of numpy arrays / numpy scalars / torch tensors. Arrays of
    ``ZERO_COPY_MIN_BYTES`` or more become ``zmq.Frame(copy=False)`` frames that share memory with
    the input (ZeroMQ sends them without a copy however the frames are sent); pass ``copy=True``
    to copy them instead, when you will overwrite the arrays right after sending.
    ``meta``: small msgpack-able values (numpy scalars are converted). ``kinds`` restricts the
    kind (default ``KINDS``). Raises ProtocolError (a ValueError) naming the bad input.
    """
    entries, payload = [], []
    for name, value in flatten_arrays(arrays).items():
        array = _host_array(name, value)
        entries.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape)})
        if array.nbytes >= ZERO_COPY_MIN_BYTES and not copy:
            payload.append(zmq.Frame(array, copy=False))
        else:
            payload.append(array.tobytes())
    if meta is not None and not isinstance(meta, Mapping):
        raise ProtocolError("bad_meta", f"meta must be a mapping, got {type(meta).__name__}")
    header = {"v": PROTOCOL_VERSION, "kind": kind, "sender": sender, "seq": seq,
              "policy_version": policy_version, "meta": {}, "arrays": entries}
    # Check the fields exactly as a receiver will, so that a bad field fails here, at its source,
    # instead of as a rejection in some other process's log.
    frame_bytes = [memoryview(part).nbytes for part in payload]
    allowed_kinds = KINDS if kinds is None else kinds
    _validate_header(header, frame_bytes, allowed_kinds)
    header["meta"] = dict(meta or {})
    try:
        header_bytes = msgpack.packb(header, use_bin_type=True, default=_meta_default)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError("bad_meta", f"meta cannot be serialised: {exc}") from None
    # Meta must also survive the trip back (e.g. msgpack refuses int map keys on decode).
    try:
        _validate_header(_parse_header(memoryview(header_bytes)), frame_bytes, allowed_kinds)
    except ProtocolError as error:
        raise ProtocolError("bad_meta", f"meta would not decode: {error}") from None
    return [header_bytes, *payload]


# --------------------------------------------------------------------------------------------
# Decoding


def _byte_view(index: int, frame: Any) -> memoryview:
    if isinstance(frame, zmq.Frame):
        frame = frame.buffer
    try:
        view = memoryview(frame)
    except TypeError:
        raise ProtocolError("bad_frame", f"frame {index} is a {type(frame).__name__}, not bytes") from None
    if view.format == "B" and view.ndim == 1:
        return view
    try:
        return view.cast("B")  # numpy arrays and other typed buffers: their raw bytes
    except (TypeError, ValueError):
        raise ProtocolError("bad_frame", f"frame {index} is not a contiguous buffer") from None


def decode(frames: Sequence, *, max_bytes: int = MAX_MESSAGE_BYTES, kinds: Collection[str] | None = None) -> Message:
    """Checks and decodes one message (``zmq.Frame``, bytes or memoryview frames).

    Large arrays are read-only views on their frames, small ones read-only copies.
    Raises ProtocolError, and no other exception, for any input.
    """
    if isinstance(frames, (bytes, bytearray, memoryview, str, zmq.Frame)):
        raise ProtocolError("bad_frame", f"decode() takes a list of frames, got one {type(frames).__name__}")
    try:
        frames = list(frames)
    except TypeError:
        raise ProtocolError("bad_frame", f"decode() takes a list of frames, got {type(frames).__name__}") from None
    if not frames:
        raise ProtocolError("frame_count", "a message needs at least a header frame")
    views = [_byte_view(i, frame) for i, frame in enumerate(frames)]
    total = sum(view.nbytes for view in views)
    if total > max_bytes:  # checked first, on the real lengths, before any parsing
        raise ProtocolError("too_large", f"message of {total} bytes (at most {max_bytes})")
    header = _parse_header(views[0])
    specs = _validate_header(header, [view.nbytes for view in views[1:]], KINDS if kinds is None else kinds)
    flat = []
    for spec, view in zip(specs, views[1:]):
        array = np.frombuffer(view, dtype=spec.dtype, count=spec.nbytes // spec.dtype.itemsize).reshape(spec.shape)
        if spec.dtype == np.bool_ and array.size and array.view(np.uint8).max() > 1:
            raise ProtocolError("bad_value", f"bool array {spec.name!r} holds bytes other than 0 and 1")
        if spec.nbytes < ZERO_COPY_MIN_BYTES:
            array = array.copy()  # a small copy frees us from keeping the whole frame alive
        array.flags.writeable = False
        flat.append((spec.name, array))
    return Message(kind=header["kind"], sender=header["sender"], seq=header["seq"],
                   policy_version=header["policy_version"], meta=header["meta"], arrays=unflatten_arrays(flat))


# --------------------------------------------------------------------------------------------
# Sockets


def send(socket: zmq.Socket, kind: str, arrays: Mapping | None = None, *, sender: str, seq: int = 0,
         policy_version: int = 0, meta: Mapping | None = None, route: Sequence[bytes] = (), flags: int = 0,
         copy: bool = False) -> None:
    """Encodes and sends one message. ``route``: identity frames put first (for ROUTER sockets).

    With ``flags=zmq.NOBLOCK`` a full queue raises ``zmq.Again`` and nothing is sent.
    See ``encode`` for ``copy`` and for not writing into large arrays after sending.
    """
    frames = encode(kind, arrays, sender=sender, seq=seq, policy_version=policy_version, meta=meta, copy=copy)
    socket.send_multipart([*route, *frames], flags=flags, copy=False)


def recv(socket: zmq.Socket, *, route_frames: int = 0, flags: int = 0, max_bytes: int = MAX_MESSAGE_BYTES,
         kinds: Collection[str] | None = None) -> tuple[list[bytes], Message]:
    """Receives and decodes one message; returns (routing frames, message).

    ``route_frames``: how many leading frames are routing identities (1 on a ROUTER socket).
    A bad message raises ProtocolError with ``.route`` set; socket errors (``zmq.Again`` on
    time-out or NOBLOCK) propagate unchanged.
    """
    frames = socket.recv_multipart(flags=flags, copy=False)
    route = [frame.bytes for frame in frames[:route_frames]]
    try:
        if len(frames) <= route_frames:
            raise ProtocolError("frame_count", f"{len(frames)} frames, expected {route_frames} routing "
                                "frames and a header")
        return route, decode(frames[route_frames:], max_bytes=max_bytes, kinds=kinds)
    except ProtocolError as error:
        error.route = route
        raise


def recv_ready(socket: zmq.Socket, rejects: "RejectCounter", peer: str, *, route_frames: int = 0,
               kinds: Collection[str] | None = None, limit: int | None = None):
    """Yields (routing frames, message) for every message already waiting on `socket`, without blocking.

    Malformed messages are rejected through `rejects` (counted and logged as coming from `peer`) and
    skipped. `limit` bounds how many are taken in one go, so one busy socket cannot starve the others.
    """
    taken = 0
    while limit is None or taken < limit:
        try:
            route, msg = recv(socket, route_frames=route_frames, flags=zmq.NOBLOCK, kinds=kinds)
        except zmq.Again:
            return
        except ProtocolError as error:
            rejects.reject(error, peer)
            continue
        finally:
            taken += 1
        yield route, msg


def describe_route(route: Sequence[bytes]) -> str:
    """A printable peer name for logs: the identity as text if it is text, else hex."""
    if not route:
        return "?"
    identity = route[0]
    try:
        text = identity.decode("ascii")
        if text.isprintable() and text:
            return text
    except UnicodeDecodeError:
        pass
    return identity.hex()


# --------------------------------------------------------------------------------------------
# Rejections


@dataclass
class RejectCounter:
    """Counts and logs rejected messages, by reason.

    Every rejection is counted; the first ``log_first`` of each reason are logged, then every
    ``log_every``-th, so that a misbehaving peer cannot flood the log.
    """

    logger: logging.Logger
    where: str
    log_first: int = 10
    log_every: int = 1000
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0

    def reject(self, error: ProtocolError, peer: str = "?") -> None:
        reason = getattr(error, "reason", type(error).__name__)
        count = self.counts.get(reason, 0) + 1
        self.counts[reason] = count
        self.total += 1
        if count <= self.log_first or count % self.log_every == 0:
            quiet = (f"; from now on one '{reason}' rejection in {self.log_every} is logged"
                     if count == self.log_first else "")
            self.logger.warning("%s: rejected a message from %s (%s #%d): %s%s",
                                self.where, peer, reason, count, error, quiet)
