"""Tests of the wire protocol: round trips over real sockets, zero-copy receive, and that any
malformed input is refused with a ProtocolError naming the right reason, never another exception."""
from __future__ import annotations

import gc
import logging
import tempfile

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from wire.protocol import (
    ALLOWED_DTYPES, KINDS, MAX_RANK, PROTOCOL_VERSION, ZERO_COPY_MIN_BYTES, Kind, Message, ProtocolError,
    RejectCounter, decode, describe_route, encode, flatten_arrays, recv, send, unflatten_arrays,
)

# Deterministic (derandomize) and modest, so the whole file stays fast on a shared 2-core machine.
FEW = settings(max_examples=40, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
RECV_TIMEOUT_MS = 10_000  # a lost message fails the test instead of hanging it


# ---------------------------------------------------------------------------------------------
# helpers


def as_bytes(frames) -> list[bytes]:
    """What a receiver sees: plain bytes, whatever encode produced."""
    return [frame.bytes if isinstance(frame, zmq.Frame) else bytes(frame) for frame in frames]


def assert_same_arrays(got, want) -> None:
    """Same nesting, names, dtypes, shapes and bytes (bitwise, so NaN payloads count too)."""
    flat_got, flat_want = flatten_arrays(got), flatten_arrays(want)
    assert list(flat_got) == list(flat_want)
    for name, expected in flat_want.items():
        expected = np.asarray(expected)
        actual = flat_got[name]
        assert isinstance(actual, np.ndarray), name
        assert actual.dtype.name == expected.dtype.name and actual.dtype.isnative, name
        assert actual.shape == expected.shape, name
        assert actual.tobytes() == expected.astype(actual.dtype).tobytes(), name
        assert not actual.flags.writeable, name


def sample_arrays() -> dict:
    """A message with every flavour of array: big (zero-copy), small, scalar, empty, strided."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8)
    big = rng.standard_normal((300, 128)).astype(np.float32)
    return {
        "obs": {"front": images, "wrist": images[:, ::2, ::2],
                "state": rng.standard_normal((16, 7)).astype(np.float32)},
        "action": np.asfortranarray(rng.standard_normal((16, 4))),
        "reward": np.float32(1.5),
        "done": np.array([True, False] * 8),
        "empty": np.zeros((0, 3), dtype=np.int16),
        "big_t": big.T,  # large and not contiguous
        "big_endian": np.arange(20_000, dtype=">i4"),
    }


def valid_frames(arrays=None, **fields) -> list[bytes]:
    arrays = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)} if arrays is None else arrays
    fields.setdefault("sender", "tester")
    return as_bytes(encode(fields.pop("kind", Kind.CHUNK), arrays, **fields))


def with_header(frames: list[bytes], mutate) -> list[bytes]:
    header = msgpack.unpackb(frames[0])
    mutate(header)
    return [msgpack.packb(header), *frames[1:]]


def reason_of(frames, **kwargs) -> str:
    with pytest.raises(ProtocolError) as info:
        decode(frames, **kwargs)
    return info.value.reason


# ---------------------------------------------------------------------------------------------
# real sockets


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def socket_pair(ctx: zmq.Context, transport: str, directory: str):
    """(sender, receiver) connected over `transport`, with a receive time-out."""
    if transport == "inproc":
        sender, receiver = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        receiver.bind(f"inproc://pair-{id(receiver)}")
        sender.connect(receiver.LAST_ENDPOINT.decode())
    else:
        sender, receiver = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
        if transport == "ipc":
            receiver.bind(f"ipc://{directory}/wire.sock")
        else:
            receiver.bind("tcp://127.0.0.1:*")
        sender.connect(receiver.LAST_ENDPOINT.decode())
    for sock in (sender, receiver):
        sock.linger = 0
    receiver.rcvtimeo = RECV_TIMEOUT_MS
    return sender, receiver


@pytest.fixture(scope="module")
def ipc_dir():
    # ipc paths are limited to ~100 characters, so not pytest's long tmp_path.
    with tempfile.TemporaryDirectory(prefix="wire-", dir="/tmp") as directory:
        yield directory


@pytest.mark.parametrize("transport", ["inproc", "ipc", "tcp"])
def test_round_trip_over_real_sockets(context, transport, ipc_dir):
    sender, receiver = socket_pair(context, transport, ipc_dir)
    arrays = sample_arrays()
    for seq in range(3):
        send(sender, Kind.CHUNK, arrays, sender="actor-3", seq=seq, policy_version=7, meta={"env": "pick", "n": 16})
    for seq in range(3):
        route, message = recv(receiver)
        assert route == []
        assert (message.kind, message.sender, message.seq, message.policy_version) == (Kind.CHUNK, "actor-3", seq, 7)
        assert message.meta == {"env": "pick", "n": 16}
        assert_same_arrays(message.arrays, arrays)
        assert message.nbytes == sum(np.asarray(a).nbytes for a in flatten_arrays(arrays).values())


def test_router_dealer_routing_frames(context):
    router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    for sock in (router, dealer):
        sock.linger, sock.rcvtimeo = 0, RECV_TIMEOUT_MS
    router.bind("inproc://router")
    dealer.setsockopt(zmq.IDENTITY, b"actor-1")
    dealer.connect("inproc://router")
    send(dealer, Kind.REGISTER, sender="actor-1", meta={"pid": 42})
    route, message = recv(router, route_frames=1)
    assert route == [b"actor-1"] and describe_route(route) == "actor-1"
    assert message.kind == Kind.REGISTER and message.arrays == {} and message.meta == {"pid": 42}
    send(router, Kind.CREDIT, {"w": np.ones(3, np.float32)}, sender="replay", route=route, seq=1)
    _, reply = recv(dealer)
    assert reply.kind == Kind.CREDIT and reply.arrays["w"].tolist() == [1, 1, 1]
    # A bad message through a ROUTER still tells who sent it.
    dealer.send_multipart([b"not msgpack \xc1"])
    with pytest.raises(ProtocolError) as info:
        recv(router, route_frames=1)
    assert info.value.reason == "bad_header" and info.value.route == [b"actor-1"]
    dealer.send_multipart([b""])
    router.recv_multipart()  # identity + empty frame: no header after the routing frame
    assert describe_route([b"\xff\x00"]) == "ff00" and describe_route([]) == "?"


def test_recv_without_header_frame(context):
    router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    for sock in (router, dealer):
        sock.linger, sock.rcvtimeo = 0, RECV_TIMEOUT_MS
    router.bind("inproc://router-short")
    dealer.connect("inproc://router-short")
    dealer.send_multipart([b"x"])
    with pytest.raises(ProtocolError) as info:
        recv(router, route_frames=2)
    assert info.value.reason == "frame_count" and len(info.value.route) == 2


@pytest.fixture(scope="module")
def inproc_pair():
    ctx = zmq.Context()
    sender, receiver = socket_pair(ctx, "inproc", "")
    yield sender, receiver
    ctx.destroy(linger=0)


# ---------------------------------------------------------------------------------------------
# round-trip properties

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789.-", min_size=1, max_size=8)
leaf_arrays = st.sampled_from(sorted(ALLOWED_DTYPES)).flatmap(
    lambda dtype: hnp.arrays(np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
nested_arrays = st.recursive(
    leaf_arrays, lambda children: st.dictionaries(names, children, min_size=1, max_size=3), max_leaves=8,
).filter(lambda tree: isinstance(tree, dict))
json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


@FEW
@given(arrays=nested_arrays, kind=st.sampled_from(sorted(KINDS)), sender=st.text(max_size=20),
       seq=st.integers(0, 2**64 - 1), policy_version=st.integers(0, 2**31),
       meta=st.dictionaries(st.text(max_size=8), json_like, max_size=4))
def test_round_trip_in_memory(arrays, kind, sender, seq, policy_version, meta):
    message = decode(valid_frames(arrays, kind=kind, sender=sender, seq=seq, policy_version=policy_version, meta=meta))
    assert (message.kind, message.sender, message.seq, message.policy_version) == (kind, sender, seq, policy_version)
    assert message.meta == meta
    assert_same_arrays(message.arrays, arrays)


@settings(FEW, max_examples=20)
@given(arrays=nested_arrays)
def test_round_trip_over_socket(inproc_pair, arrays):
    sender, receiver = inproc_pair
    send(sender, Kind.BATCH, arrays, sender="replay", seq=5)
    _, message = recv(receiver)
    assert message.kind == Kind.BATCH and message.seq == 5
    assert_same_arrays(message.arrays, arrays)


def test_flatten_and_unflatten():
    tree = {"obs": {"front": 1, "deep": {"x": 2}}, "a": 3}
    flat = flatten_arrays(tree)
    assert flat == {"obs/front": 1, "obs/deep/x": 2, "a": 3}
    assert unflatten_arrays(flat) == tree
    # Empty sub-dicts carry no arrays, so they do not travel.
    assert decode(valid_frames({"a": {}, "b": np.zeros(1)})).arrays.keys() == {"b"}


# ---------------------------------------------------------------------------------------------
# zero copy


@pytest.mark.parametrize("transport", ["inproc", "tcp"])  # tcp: the frame is the receiver's own memory
def test_large_received_arrays_are_views_on_the_frame(context, transport):
    sender, receiver = socket_pair(context, transport, "")
    big = np.arange(ZERO_COPY_MIN_BYTES, dtype=np.uint16)  # 128 KiB
    small = np.arange(10, dtype=np.float64)
    send(sender, Kind.CHUNK, {"big": big, "small": small}, sender="a")
    frames = receiver.recv_multipart(copy=False)
    message = decode(frames)
    received, small_received = message.arrays["big"], message.arrays["small"]
    frame_address = np.frombuffer(frames[1].buffer, dtype=np.uint8).ctypes.data
    assert received.ctypes.data == frame_address  # the array *is* the frame's memory
    assert not received.flags.owndata and not received.flags.writeable
    base = received
    while isinstance(base, np.ndarray):
        assert not base.flags.owndata
        base = base.base
    assert isinstance(base, (memoryview, zmq.Frame))
    del frames, message  # the array alone keeps the frame's memory alive
    gc.collect()
    assert np.array_equal(received, big)
    # Small arrays are private copies, also read-only.
    assert small_received.flags.owndata and not small_received.flags.writeable
    with pytest.raises(ValueError):
        received[0] = 1


def test_large_sent_arrays_are_not_copied_unless_asked():
    big = np.zeros(ZERO_COPY_MIN_BYTES, dtype=np.uint8)
    frame = encode(Kind.CHUNK, {"big": big}, sender="a")[1]
    assert isinstance(frame, zmq.Frame)
    assert np.frombuffer(frame.buffer, dtype=np.uint8).ctypes.data == big.ctypes.data
    copied = encode(Kind.CHUNK, {"big": big}, sender="a", copy=True)[1]
    assert isinstance(copied, bytes)
    small = encode(Kind.CHUNK, {"small": np.zeros(ZERO_COPY_MIN_BYTES - 1, dtype=np.uint8)}, sender="a")[1]
    assert isinstance(small, bytes)


def test_received_arrays_can_be_forwarded():
    # A replay service re-sends read-only arrays it received.
    first = decode(valid_frames(sample_arrays()))
    second = decode(as_bytes(encode(Kind.BATCH, first.arrays, sender="replay")))
    assert_same_arrays(second.arrays, first.arrays)


# ---------------------------------------------------------------------------------------------
# torch tensors


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    big = torch.arange(ZERO_COPY_MIN_BYTES, dtype=torch.float32)
    frames = encode(Kind.WEIGHTS, {"w": big, "b": torch.ones(3, dtype=torch.int64),
                                   "t": torch.arange(12.0).reshape(3, 4).T, "g": torch.ones(2, requires_grad=True),
                                   "flag": torch.tensor([True, False])}, sender="learner")
    names = [entry["name"] for entry in msgpack.unpackb(frames[0])["arrays"]]
    w = frames[1 + names.index("w")]
    assert np.frombuffer(w.buffer, np.uint8).ctypes.data == big.data_ptr()  # CPU tensors: no copy
    message = decode(as_bytes(frames))
    assert message.arrays["w"].dtype == np.float32 and np.array_equal(message.arrays["w"], big.numpy())
    assert message.arrays["b"].dtype == np.int64
    assert message.arrays["t"].tolist() == torch.arange(12.0).reshape(3, 4).T.tolist()
    assert message.arrays["g"].tolist() == [1.0, 1.0]
    assert message.arrays["flag"].tolist() == [True, False]
    with pytest.raises(ProtocolError, match="bfloat16") as info:
        encode(Kind.WEIGHTS, {"w": torch.ones(2, dtype=torch.bfloat16)}, sender="learner")
    assert info.value.reason == "bad_dtype"
    with pytest.raises(ProtocolError) as info:
        encode(Kind.WEIGHTS, {"w": torch.ones(2, dtype=torch.complex64)}, sender="learner")
    assert info.value.reason == "bad_dtype"


def test_cuda_tensors():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    tensor = torch.arange(100_000, dtype=torch.float32, device="cuda").reshape(1000, 100)
    message = decode(as_bytes(encode(Kind.WEIGHTS, {"w": tensor, "t": tensor.T}, sender="learner")))
    assert np.array_equal(message.arrays["w"], tensor.cpu().numpy())
    assert np.array_equal(message.arrays["t"], tensor.T.cpu().numpy())


# ---------------------------------------------------------------------------------------------
# bad input on the sending side


@pytest.mark.parametrize(("arrays", "fields", "reason"), [
    ({"x": np.zeros(2, dtype=np.complex64)}, {}, "bad_dtype"),
    ({"x": np.array(["a"])}, {}, "bad_dtype"),
    ({"x": np.array([object()])}, {}, "bad_dtype"),
    ({"x": np.zeros(2, dtype=[("a", "f4")])}, {}, "bad_dtype"),
    ({"x": [1, 2]}, {}, "bad_value"),
    ({"x": 1.0}, {}, "bad_value"),
    ({"x": np.zeros((1,) * (MAX_RANK + 1))}, {}, "bad_shape"),
    ({"a/b": np.zeros(1)}, {}, "bad_name"),
    ({"": np.zeros(1)}, {}, "bad_name"),
    ({1: np.zeros(1)}, {}, "bad_name"),
    ({}, {"kind": "chunky"}, "bad_kind"),
    ({}, {"kind": 3}, "bad_kind"),
    ({}, {"seq": -1}, "bad_header"),
    ({}, {"seq": 2**64}, "bad_header"),
    ({}, {"policy_version": 1.0}, "bad_header"),
    ({}, {"sender": None}, "bad_header"),
    ({}, {"sender": "x" * 1000}, "bad_header"),
    ({}, {"meta": {"x": object()}}, "bad_meta"),
    ({}, {"meta": {"x": np.zeros(3)}}, "bad_meta"),
    ({}, {"meta": {1: "int keys do not decode"}}, "bad_meta"),
    ({}, {"meta": [1, 2]}, "bad_meta"),
])
def test_encode_refuses_bad_input(arrays, fields, reason):
    fields.setdefault("sender", "tester")
    with pytest.raises(ProtocolError) as info:
        encode(fields.pop("kind", Kind.CHUNK), arrays, **fields)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_encode_converts_numpy_scalars_in_meta_and_accepts_own_kinds():
    message = decode(valid_frames({}, meta={"r": np.float32(0.5), "n": np.int64(3)}))
    assert message.meta == {"r": 0.5, "n": 3}
    frames = as_bytes(encode("ping", sender="a", kinds={"ping"}))
    assert decode(frames, kinds={"ping"}).kind == "ping"
    assert reason_of(frames) == "bad_kind"


# ---------------------------------------------------------------------------------------------
# bad input on the receiving side


def set_array_field(key, value):
    return lambda header: header["arrays"][0].__setitem__(key, value)


MUTATIONS = {
    "wrong version": (lambda h: h.__setitem__("v", PROTOCOL_VERSION + 1), "bad_version"),
    "version as bool": (lambda h: h.__setitem__("v", True), "bad_version"),
    "version as string": (lambda h: h.__setitem__("v", "1"), "bad_version"),
    "no version": (lambda h: h.pop("v"), "bad_version"),
    "unknown kind": (lambda h: h.__setitem__("kind", "chunks"), "bad_kind"),
    "kind as int": (lambda h: h.__setitem__("kind", 3), "bad_kind"),
    "missing field": (lambda h: h.pop("seq"), "bad_header"),
    "extra field": (lambda h: h.__setitem__("extra", 1), "bad_header"),
    "sender as bytes": (lambda h: h.__setitem__("sender", b"a"), "bad_header"),
    "seq negative": (lambda h: h.__setitem__("seq", -5), "bad_header"),
    "seq as float": (lambda h: h.__setitem__("seq", 1.0), "bad_header"),
    "policy version as bool": (lambda h: h.__setitem__("policy_version", False), "bad_header"),
    "meta as list": (lambda h: h.__setitem__("meta", [1]), "bad_header"),
    "arrays as map": (lambda h: h.__setitem__("arrays", {}), "bad_header"),
    "array entry as list": (lambda h: h["arrays"].__setitem__(0, ["x", "float32", [2, 3]]), "bad_header"),
    "array entry missing dtype": (lambda h: h["arrays"][0].pop("dtype"), "bad_header"),
    "dtype not allowed": (set_array_field("dtype", "complex64"), "bad_dtype"),
    "dtype bfloat16": (set_array_field("dtype", "bfloat16"), "bad_dtype"),
    "dtype object": (set_array_field("dtype", "object"), "bad_dtype"),
    "dtype as int": (set_array_field("dtype", 5), "bad_dtype"),
    "dtype other itemsize": (set_array_field("dtype", "float64"), "size_mismatch"),
    "shape vs length": (set_array_field("shape", [2, 4]), "size_mismatch"),
    "shape scalar vs length": (set_array_field("shape", []), "size_mismatch"),
    "negative dim": (set_array_field("shape", [-2, -3]), "bad_shape"),
    "dims overflowing": (set_array_field("shape", [2**62, 2**62, 4]), "bad_shape"),
    "zero dim beside huge dim": (set_array_field("shape", [0, 2**63]), "bad_shape"),
    "rank too high": (set_array_field("shape", [1] * (MAX_RANK + 1)), "bad_shape"),
    "dim as float": (set_array_field("shape", [2.0, 3]), "bad_shape"),
    "dim as bool": (set_array_field("shape", [True, 6]), "bad_shape"),
    "shape as string": (set_array_field("shape", "2,3"), "bad_shape"),
    "empty name": (set_array_field("name", ""), "bad_name"),
    "name as int": (set_array_field("name", 7), "bad_name"),
    "empty path part": (set_array_field("name", "obs//x"), "bad_name"),
    "trailing slash": (set_array_field("name", "obs/"), "bad_name"),
    "huge name": (set_array_field("name", "x" * 5000), "bad_name"),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_mutated_header_is_refused_with_its_reason(case):
    mutate, reason = MUTATIONS[case]
    assert reason_of(with_header(valid_frames(), mutate)) == reason


def test_frames_that_do_not_match_the_header():
    frames = valid_frames({"a": np.zeros(3, np.float32), "b": np.ones(2, np.uint8)})
    assert reason_of([]) == "frame_count"
    assert reason_of(frames[:2]) == "frame_count"
    assert reason_of([*frames, b"extra"]) == "frame_count"
    assert reason_of([frames[0][:-1], *frames[1:]]) == "bad_header"  # truncated header
    assert reason_of([frames[0], frames[1][:-1], frames[2]]) == "size_mismatch"  # truncated array
    assert reason_of([frames[0], frames[1] + b"\0", frames[2]]) == "size_mismatch"
    assert reason_of([frames[0] + b"\0", *frames[1:]]) == "bad_header"  # trailing bytes after the header
    assert reason_of(frames, max_bytes=len(frames[0]) + 13) == "too_large"
    assert reason_of([b"\x00" * (2 * 1024 * 1024)]) == "too_large"  # header over MAX_HEADER_BYTES
    assert decode(frames, max_bytes=sum(map(len, frames))).arrays["b"].tolist() == [1, 1]


def test_names_that_clash():
    frames = valid_frames({"a": np.zeros(1), "b": np.zeros(1)})
    def rename(first, second):
        def mutate(header):
            header["arrays"][0]["name"], header["arrays"][1]["name"] = first, second
        return with_header(frames, mutate)
    assert reason_of(rename("x", "x")) == "bad_name"  # duplicate
    assert reason_of(rename("x", "x/y")) == "bad_name"  # leaf then prefix
    assert reason_of(rename("x/y", "x")) == "bad_name"  # prefix then leaf
    assert decode(rename("x/y", "x/z")).arrays["x"].keys() == {"y", "z"}


def test_bool_arrays_hold_only_zero_and_one():
    frames = valid_frames({"done": np.array([True, False, True])})
    assert reason_of([frames[0], b"\x01\x02\x00"]) == "bad_value"
    assert decode([frames[0], b"\x01\x00\x00"]).arrays["done"].tolist() == [True, False, False]


@pytest.mark.parametrize("frames", [
    "a string", b"bytes", None, 3, [None], ["text"], [3], [b"ok", 4.5], [[1, 2]],
    [msgpack.packb([1, 2, 3])], [msgpack.packb(7)], [msgpack.packb(None)], [b""], [b"\xc1"],
    [msgpack.packb({1: 2})], [b"\x81\xa1v\xa5\xff\xfe\xfd\xfc\xfb"],  # int key; invalid utf-8
    [msgpack.packb([[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]])], [b"\xdd\xff\xff\xff\xff"],  # deep; huge array length
    [np.zeros((2, 2))[:, 0]],  # non-contiguous buffer
])
def test_junk_is_refused(frames):
    with pytest.raises(ProtocolError):
        decode(frames)


def test_frame_types_accepted():
    frames = valid_frames()
    for kind in (bytes, bytearray, memoryview, lambda f: zmq.Frame(f)):
        assert decode([kind(f) for f in frames]).arrays["x"].shape == (2, 3)
    assert decode(tuple(frames)).kind == Kind.CHUNK
    assert decode(iter(frames)).kind == Kind.CHUNK


@FEW
@given(st.lists(st.binary(max_size=64), max_size=4))
def test_random_frames_are_refused(frames):
    with pytest.raises(ProtocolError):
        decode(frames)


@FEW
@given(data=st.data())
def test_byte_mutations_never_raise_anything_else(data):
    """Flip, insert or delete bytes anywhere: the result decodes or is a ProtocolError, nothing else."""
    frames = valid_frames({"x": np.arange(6, dtype=np.float32), "d": np.array([True])}, meta={"a": [1, "b"]})
    index = data.draw(st.integers(0, len(frames) - 1))
    frame = bytearray(frames[index])
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(frame)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "insert" or not frame:
            frame.insert(position, data.draw(st.integers(0, 255)))
        elif action == "flip":
            frame[min(position, len(frame) - 1)] ^= data.draw(st.integers(1, 255))
        else:
            del frame[min(position, len(frame) - 1)]
    frames[index] = bytes(frame)
    try:
        assert isinstance(decode(frames), Message)
    except ProtocolError:
        pass


FIELD_REASONS = {
    "v": {"bad_version"}, "kind": {"bad_kind"}, "sender": {"bad_header"}, "seq": {"bad_header"},
    "policy_version": {"bad_header"}, "meta": {"bad_header"}, "arrays": {"bad_header", "frame_count"},
}
any_msgpack = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=6)
    | st.binary(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)


@FEW
@given(key=st.sampled_from(sorted(FIELD_REASONS)), value=any_msgpack)
def test_any_value_in_any_field(key, value):
    frames = with_header(valid_frames({}), lambda header: header.__setitem__(key, value))
    try:
        decode(frames)
    except ProtocolError as error:
        assert error.reason in FIELD_REASONS[key]


ENTRY_REASONS = {"name": {"bad_name"}, "dtype": {"bad_dtype", "size_mismatch"},
                 "shape": {"bad_shape", "size_mismatch"}}


@FEW
@given(key=st.sampled_from(sorted(ENTRY_REASONS)), value=any_msgpack)
def test_any_value_in_any_array_field(key, value):
    frames = with_header(valid_frames(), set_array_field(key, value))
    try:
        decode(frames)
    except ProtocolError as error:
        assert error.reason in ENTRY_REASONS[key]


# ---------------------------------------------------------------------------------------------
# rejection bookkeeping


def test_reject_counter_counts_everything_and_logs_a_little(caplog):
    counter = RejectCounter(logging.getLogger("test.wire"), "replay")
    caplog.set_level(logging.WARNING, logger="test.wire")
    for _ in range(2000):
        counter.reject(ProtocolError("bad_dtype", "array 'x' has dtype 'bfloat16'"), peer="actor-7")
    counter.reject(ProtocolError("too_large", "message of 9 GB"))
    assert counter.counts == {"bad_dtype": 2000, "too_large": 1}
    assert counter.total == 2001
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 10 + 2 + 1  # first ten, the 1000th and 2000th, then the other reason
    assert "replay" in lines[0] and "actor-7" in lines[0] and "bad_dtype" in lines[0] and "bfloat16" in lines[0]
    assert "one 'bad_dtype' rejection in 1000 is logged" in lines[9]
    assert "#1000" in lines[10] and "too_large" in lines[-1]


def test_kinds_and_constants():
    assert KINDS == {"register", "heartbeat", "chunk", "credit", "sample", "batch", "rows", "weights", "stats",
                     "control", "bye"}
    assert len(ALLOWED_DTYPES) == 12 and "bfloat16" not in ALLOWED_DTYPES
    assert issubclass(ProtocolError, ValueError)
