"""How fast trajectory chunks travel between two processes, against memcpy and the peers' formats.

    python benchmarks/transport.py [--json] [--seconds S] [--chunks N] [--rounds R]

A chunk is what one vision actor sends: 256 steps of two 128x128x3 uint8 camera images, a 7-D
float32 proprio state, a 4-D float32 action, a float32 reward and a bool done flag (25.2 MB).
A sender process pushes chunks to a receiver process over PUSH/PULL sockets with a small
high-water mark (so the sender cannot run ahead and the figure is a steady-state rate), over
ipc (unix socket) and tcp loopback. The receiver fully decodes every chunk. Measured, in one run:

* ``wire``: this project's protocol (``wire.protocol``): msgpack header + one raw frame per array,
  zero-copy on both ends.
* ``wire_shm``: the same protocol as the actors use it on one host (``wire.shared_memory``): the
  sender copies the large arrays into a free slot of its shared-memory segment and sends the
  header; the receiver reads them in place and acknowledges, which frees the slot (3 slots, as an
  actor with 2 credits has). One copy per chunk instead of the sockets' two.

Both ``wire`` methods speak the actors' session (``wire/session.py``): the sender is a
``ClientSession`` (registration, 2 credits, slots), the receiver a ``ServiceSession`` whose
acknowledgements come back over a second socket and return the credits, as the replay service's do.
* ``raw_frames``: the same array buffers as bare ZeroMQ frames, no header, no checks: the
  ceiling of these sockets, so ``wire / raw_frames`` is the protocol's own efficiency.
* ``pickle_lz4``: SERL's agentlace format, ``lz4.frame.compress(pickle.dumps(chunk))``; the
  receiver decompresses and unpickles.
* ``torch_save``: LeRobot's format, ``torch.save`` of the tensors into a BytesIO; the receiver
  runs ``torch.load``.
* ``memcpy``: ``np.copyto`` of the same arrays into preallocated ones, in one process: the speed
  of moving the bytes once. A socket between processes copies them twice, into the kernel and
  out of it.

The baselines get the same sockets and zero-copy sends as ``wire``; only the serialisation
differs. Throughput counts the chunk's array bytes (not compressed bytes) per second, measured on
the receiver after a few warm-up chunks. The camera images are smooth gradients with a moving
object and sensor noise, like real frames, so lz4 gets a realistic (small) compression ratio
rather than the huge one it would get on zeros.

Each figure is the best of ``--rounds`` rounds; the rounds interleave the methods, so that load
from other programs on a shared machine hits all of them alike.

Prints a table, then (with ``--json``) one JSON line last: GBps (the project's transport between
two processes of one host: the better of wire_shm and wire), GBps_shm, GBps_ipc, GBps_tcp (wire over
the sockets, the path between hosts), memcpy_GBps, ratio_vs_memcpy, ratio_vs_memcpy_frames,
speedup_vs_pickle_lz4 and speedup_vs_torch_save (ours against the peer's best transport), the same
two speedups for wire over the sockets (``*_frames``), bytes_per_chunk, and raw_frames_GBps,
ratio_vs_raw_frames, pickle_lz4_GBps, torch_save_GBps, lz4_compression_ratio. Goals:
ratio_vs_memcpy >= 0.4 and both speedups >= 3.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import multiprocessing
import os
import pathlib
import pickle
import queue
import sys
import tempfile
import time
from dataclasses import dataclass

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import zmq  # noqa: E402

from core import tree  # noqa: E402
from wire import protocol, shared_memory  # noqa: E402
from wire.session import ClientSession, ServiceSession  # noqa: E402

METHODS = ("raw_frames", "wire", "wire_shm", "pickle_lz4", "torch_save")
CREDITS = 2  # chunks in flight, as an actor has (actor.credits)
SHM_SLOTS = CREDITS + 1
TRANSPORTS = ("ipc", "tcp")
END_OF_STREAM = b""  # the baselines' end marker; wire sends a BYE message


@dataclass
class TransportBenchConfig:
    seconds: float = 2.0  # least time measured per method and transport
    chunks: int = 10  # least chunks measured per method and transport
    warmup_chunks: int = 2  # received before the clock starts (connection set-up, first allocations)
    steps: int = 256  # steps per chunk
    image_size: int = 128
    high_water_mark: int = 2  # messages queued per socket side: a small queue, as the actors use
    socket_buffer_bytes: int = 0  # kernel send/receive buffer (SO_SNDBUF/SO_RCVBUF); 0: the OS default
    rounds: int = 2  # every measurement is repeated this many times and the best kept
    seed: int = 0

    def __post_init__(self):
        if self.warmup_chunks < 1 or self.chunks < 1 or self.rounds < 1 or self.seconds < 0:
            raise ValueError(f"need warmup_chunks, chunks and rounds >= 1 and seconds >= 0: {self}")


# ---------------------------------------------------------------------------------------------
# The data


def camera_frames(steps: int, size: int, rng: np.random.Generator, phase: float) -> np.ndarray:
    """[steps, size, size, 3] uint8 frames: lit gradients, a moving bright block, and sensor noise."""
    t = np.arange(steps, dtype=np.float32)[:, None, None] / steps
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    frames = np.empty((steps, size, size, 3), dtype=np.float32)
    for channel in range(3):  # slow illumination drift over the chunk, a different tint per channel
        frames[..., channel] = 90 + 60 * y + 40 * np.sin(2 * np.pi * (x + 0.2 * t + phase + channel / 3))
    block = slice(size // 3, size // 3 + size // 6)
    for step in range(steps):  # an object sliding across the table
        left = int((0.2 + 0.5 * step / steps) * size)
        frames[step, block, left:left + size // 6] = (200, 60, 40)
    frames += rng.normal(0.0, 3.0, size=frames.shape).astype(np.float32)  # sensor noise
    return np.clip(frames, 0, 255).astype(np.uint8)


def make_chunk(config: TransportBenchConfig) -> dict:
    rng = np.random.default_rng(config.seed)
    steps = config.steps
    return {
        "obs": {
            "front": camera_frames(steps, config.image_size, rng, phase=0.0),
            "wrist": camera_frames(steps, config.image_size, rng, phase=0.5),
            "state": rng.standard_normal((steps, 7)).astype(np.float32),
        },
        "action": rng.uniform(-1, 1, (steps, 4)).astype(np.float32),
        "reward": rng.uniform(0, 1, steps).astype(np.float32),
        "done": rng.random(steps) < 0.01,
    }


def chunk_bytes(chunk: dict) -> int:
    """Array bytes of a chunk (numpy arrays, torch tensors or raw frames)."""
    return sum(len(value) if isinstance(value, zmq.Frame) else value.nbytes
               for value in protocol.flatten_arrays(chunk).values())


# ---------------------------------------------------------------------------------------------
# The formats: how each method turns a chunk into frames and back


class SessionSender:
    """The sender's side of ``wire`` and ``wire_shm``: the actors' client session over PUSH, its replies over PULL."""

    def __init__(self, method: str, chunk: dict, sock: zmq.Socket, replies: zmq.Socket):
        slots = None
        if method == "wire_shm":
            sizes = [array.nbytes for array in protocol.flatten_arrays(chunk).values()]
            slot_bytes = shared_memory.slot_bytes_for(sizes)
            slots = shared_memory.SlotWriter(f"zarl-bench-{os.getpid()}", SHM_SLOTS, slot_bytes)
        self.session = ClientSession("bench", {}, resend_buffer_bytes=0, heartbeat_s=float("inf"), slots=slots)
        self.sock, self.replies = sock, replies
        self._send(self.session.register(0.0))

    def _send(self, messages: list) -> None:
        for out in messages:
            protocol.send(self.sock, out.kind, out.arrays, sender="bench", seq=out.seq, meta=out.meta)

    def send(self, chunk: dict) -> None:
        while self.session.credits <= 0:  # wait for the receiver's acknowledgements (the first: registered)
            _, reply = protocol.recv(self.replies, kinds={protocol.Kind.CREDIT})
            self._send(self.session.on_reply(reply.meta, 0.0))
        self._send(self.session.add(chunk, {}, policy_version=0))

    def close(self) -> None:
        self._send([self.session.bye("done")])

    def release(self) -> None:
        if self.session.slots is not None:
            self.session.slots.close()


class SessionReceiver:
    """The receiver's side of ``wire`` and ``wire_shm``: the replay service's session, replies over PUSH."""

    def __init__(self, replies: zmq.Socket):
        self.session = ServiceSession(credits=CREDITS, max_actors=1, heartbeat_timeout_s=float("inf"), snapshots=False)
        self.replies, self.shm = replies, shared_memory.SlotReader()
        self.pending = None

    def _reply(self, replies: list) -> None:
        for reply in replies:
            protocol.send(self.replies, protocol.Kind.CREDIT, sender="receiver", meta=reply.meta)

    def recv(self, sock: zmq.Socket) -> dict | None:
        """The next chunk's arrays (views on a slot for wire_shm); None at the end of the stream."""
        while True:
            _, message = protocol.recv(sock)
            if message.kind == protocol.Kind.BYE:
                return None
            if message.kind == protocol.Kind.REGISTER:
                registration = self.session.register("bench", [], 0.0)
                shm = message.meta.get("shm")
                if shm is not None:
                    problem = self.shm.attach("bench", shm["segment"], shm["token"], shm.get("pid"), shm.get("fd"))
                    if problem:
                        raise RuntimeError(f"cannot read the sender's shared memory: {problem}")
                    registration.reply.meta["shm"] = True
                self._reply([registration.reply])
                continue
            self.pending = (self.session.seen("bench", [], 0.0), message.seq)
            shm = message.meta.get("shm")
            return message.arrays if shm is None else self.shm.resolve("bench", message.seq, shm, message.arrays)

    def done(self) -> None:
        """Done with the last chunk (no view on its slot is left): acknowledge it, which returns its credit."""
        replies, _ = self.session.filed(*self.pending)
        self._reply(replies)


def send_chunk(method: str, sock: zmq.Socket, chunk: dict, wire: SessionSender | None = None) -> None:
    if method in ("wire", "wire_shm"):
        wire.send(chunk)
    elif method == "raw_frames":
        sock.send_multipart(list(protocol.flatten_arrays(chunk).values()), copy=False)
    elif method == "pickle_lz4":
        import lz4.frame
        sock.send(lz4.frame.compress(pickle.dumps(chunk)), copy=False)
    elif method == "torch_save":
        import torch
        buffer = io.BytesIO()
        torch.save(tree.map(torch.from_numpy, chunk), buffer)
        sock.send(buffer.getbuffer(), copy=False)
    else:
        raise ValueError(f"unknown method {method!r}")


def send_end(method: str, sock: zmq.Socket, wire: SessionSender | None = None) -> None:
    if wire is not None:
        wire.close()
    else:
        sock.send(END_OF_STREAM)


def recv_chunk(method: str, sock: zmq.Socket, wire: SessionReceiver | None = None) -> dict | None:
    """Receives and fully decodes one chunk; None at the end of the stream."""
    if wire is not None:
        return wire.recv(sock)
    if method == "raw_frames":
        frames = sock.recv_multipart(copy=False)
        return None if len(frames[0]) == 0 else {str(i): frame for i, frame in enumerate(frames)}
    frame = sock.recv(copy=False)
    if len(frame) == 0:
        return None
    if method == "pickle_lz4":
        import lz4.frame
        return pickle.loads(lz4.frame.decompress(frame.buffer))
    import torch
    return torch.load(io.BytesIO(frame.buffer), weights_only=True)


def import_decoder(method: str) -> None:
    if method == "pickle_lz4":
        import lz4.frame  # noqa: F401
    elif method == "torch_save":
        import torch  # noqa: F401


# ---------------------------------------------------------------------------------------------
# The two processes


def receiver_process(method: str, transport: str, directory: str, config: TransportBenchConfig,
                     results: multiprocessing.Queue) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.PULL)
    sock.rcvhwm = config.high_water_mark
    if config.socket_buffer_bytes:
        sock.rcvbuf = config.socket_buffer_bytes
    sock.linger = 0
    sock.rcvtimeo = 60_000  # a dead sender ends the run with an error instead of a hang
    sock.bind(f"ipc://{directory}/{method}.sock" if transport == "ipc" else "tcp://127.0.0.1:*")
    acks = context.socket(zmq.PUSH)  # wire methods: the session's acknowledgements, which return credits (and slots)
    acks.linger = 0
    acks.bind(f"ipc://{directory}/{method}-acks.sock" if transport == "ipc" else "tcp://127.0.0.1:*")
    wire = SessionReceiver(acks) if method in ("wire", "wire_shm") else None
    import_decoder(method)  # before saying ready, so the first chunks do not wait for an import
    results.put(("endpoint", (sock.LAST_ENDPOINT.decode(), acks.LAST_ENDPOINT.decode())))
    received, timed_bytes, started, last = 0, 0, 0.0, 0.0
    while (chunk := recv_chunk(method, sock, wire)) is not None:
        last = time.perf_counter()
        received += 1
        if received <= config.warmup_chunks:
            started = last  # the clock starts when the last warm-up chunk has arrived
        else:
            timed_bytes += chunk_bytes(chunk)
        del chunk  # frees the received buffers, as a real consumer would after storing the data
        if wire is not None:
            wire.done()  # done with the views on the slot: the sender may reuse it
    results.put(("result", {"chunks": received - config.warmup_chunks, "bytes": timed_bytes,
                            "seconds": last - started}))
    context.destroy(linger=0)


def sender_process(method: str, endpoints: tuple[str, str], chunk: dict, config: TransportBenchConfig,
                   finished) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.PUSH)
    sock.sndhwm = config.high_water_mark
    if config.socket_buffer_bytes:
        sock.sndbuf = config.socket_buffer_bytes
    sock.connect(endpoints[0])
    wire = None
    if method in ("wire", "wire_shm"):
        acks = context.socket(zmq.PULL)
        acks.connect(endpoints[1])
        wire = SessionSender(method, chunk, sock, acks)
    sent = 0
    while sent < config.warmup_chunks:
        send_chunk(method, sock, chunk, wire)
        sent += 1
    # Both limits must be met: enough time to smooth out noise, enough chunks for slow methods.
    deadline = time.perf_counter() + config.seconds
    while sent < config.warmup_chunks + config.chunks or time.perf_counter() < deadline:
        send_chunk(method, sock, chunk, wire)
        sent += 1
    send_end(method, sock, wire)
    # Stay connected until the receiver has everything: a peer that disconnects while the
    # receiver's queue is full can lose its last messages in ZeroMQ.
    finished.wait(timeout=600)
    if wire is not None:
        wire.release()
    context.destroy(linger=0)


def measure_transport(method: str, transport: str, chunk: dict, config: TransportBenchConfig, directory: str) -> dict:
    """One method over one transport; `chunk` is made once by the caller and handed to each sender (making it
    takes about a second, more than a whole measurement with few chunks)."""
    processes = multiprocessing.get_context("forkserver")  # set up by run(): see there
    results = processes.Queue()
    receiver = processes.Process(target=receiver_process, args=(method, transport, directory, config, results))
    receiver.start()
    children = [receiver]
    try:
        endpoints = _next_result(results, children, f"{method} over {transport}")
        finished = processes.Event()
        sender = processes.Process(target=sender_process, args=(method, endpoints, chunk, config, finished))
        sender.start()
        children.append(sender)
        result = _next_result(results, children, f"{method} over {transport}")
        finished.set()
        for child in children:
            child.join()
    finally:
        for child in children:  # only left running when something failed
            if child.is_alive():
                child.terminate()
                child.join()
    return result


def _next_result(results: multiprocessing.Queue, children: list, what: str):
    """The next value a child reports; fails fast, instead of waiting forever, if a child died."""
    while True:
        try:
            return results.get(timeout=1.0)[1]
        except queue.Empty:
            failed = [child.exitcode for child in children if child.exitcode not in (None, 0)]
            if failed:
                raise RuntimeError(f"{what}: a benchmark process failed with exit code {failed[0]} "
                                   "(its traceback is above)") from None


def measure_memcpy(chunk: dict, config: TransportBenchConfig) -> dict:
    sources = list(protocol.flatten_arrays(chunk).values())
    targets = [np.empty_like(source) for source in sources]
    for source, target in zip(sources, targets):  # touch the pages once, as a warm receiver would have
        np.copyto(target, source)
    copies, started = 0, time.perf_counter()
    while copies < config.chunks or time.perf_counter() - started < config.seconds:
        for source, target in zip(sources, targets):
            np.copyto(target, source)
        copies += 1
    return {"chunks": copies, "bytes": copies * chunk_bytes(chunk), "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------------------------------------


def gbps(result: dict) -> float:
    return result["bytes"] / result["seconds"] / 1e9


def run(config: TransportBenchConfig) -> dict:
    import lz4.frame

    # Sender and receiver are fresh processes for every measurement, forked from one server process that imported
    # this module and the decoders once (spawning each would re-import them: seconds apiece for torch). No
    # figure counts the start: the clock starts after the warm-up chunks.
    multiprocessing.set_forkserver_preload(["__main__", "lz4.frame", "torch"])
    chunk = make_chunk(config)
    nbytes = chunk_bytes(chunk)
    lz4_ratio = nbytes / len(lz4.frame.compress(pickle.dumps(chunk)))
    # Rounds interleave the methods, so that a change in a shared machine's load hits them all
    # alike; each figure is the best of its rounds.
    best: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="wire-bench-", dir="/tmp") as directory:
        for _ in range(config.rounds):
            candidates = [(("memcpy", "-"), measure_memcpy(chunk, config))]
            candidates += [((method, transport), measure_transport(method, transport, chunk, config, directory))
                           for method in METHODS for transport in TRANSPORTS]
            for key, result in candidates:
                if key not in best or gbps(result) > gbps(best[key]):
                    best[key] = result
    memcpy_gbps = gbps(best["memcpy", "-"])
    print(f"chunk: {config.steps} steps, 2 cameras {config.image_size}x{config.image_size}x3 uint8, "
          f"{nbytes / 1e6:.2f} MB; lz4 compresses it {lz4_ratio:.2f}x; best of {config.rounds} rounds")
    print(f"{'method':<12} {'transport':<9} {'GB/s':>7} {'chunks/s':>9} {'ms/chunk':>9} {'vs memcpy':>10} "
          f"{'chunks':>7}")
    for (method, transport), result in best.items():
        speed = gbps(result)
        per_second = result["chunks"] / result["seconds"]
        print(f"{method:<12} {transport:<9} {speed:7.2f} {per_second:9.1f} {1e3 / per_second:9.2f} "
              f"{speed / memcpy_gbps:10.2f} {result['chunks']:7d}")
    speed = {method: max(gbps(best[method, transport]) for transport in TRANSPORTS) for method in METHODS}
    # What the project moves between two processes of one host is wire_shm (the actors' default there); between
    # hosts it is wire over the socket ("frames"). Both are reported; the peers get their best socket.
    ours = max(speed["wire_shm"], speed["wire"])
    return {
        "GBps": round(ours, 3),
        "GBps_shm": round(speed["wire_shm"], 3),
        "GBps_ipc": round(gbps(best["wire", "ipc"]), 3),
        "GBps_tcp": round(gbps(best["wire", "tcp"]), 3),
        "memcpy_GBps": round(memcpy_gbps, 3),
        "ratio_vs_memcpy": round(ours / memcpy_gbps, 3),
        "ratio_vs_memcpy_frames": round(speed["wire"] / memcpy_gbps, 3),
        "speedup_vs_pickle_lz4": round(ours / speed["pickle_lz4"], 2),
        "speedup_vs_torch_save": round(ours / speed["torch_save"], 2),
        "speedup_vs_pickle_lz4_frames": round(speed["wire"] / speed["pickle_lz4"], 2),
        "speedup_vs_torch_save_frames": round(speed["wire"] / speed["torch_save"], 2),
        "raw_frames_GBps": round(speed["raw_frames"], 3),
        "ratio_vs_raw_frames": round(speed["wire"] / speed["raw_frames"], 3),
        "pickle_lz4_GBps": round(speed["pickle_lz4"], 3),
        "torch_save_GBps": round(speed["torch_save"], 3),
        "lz4_compression_ratio": round(lz4_ratio, 3),
        "bytes_per_chunk": nbytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = TransportBenchConfig()
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="least seconds per measurement")
    parser.add_argument("--chunks", type=int, default=defaults.chunks, help="least chunks per measurement")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="repetitions; the best is kept")
    parser.add_argument("--json", action="store_true", help="print one JSON line of results last")
    args = parser.parse_args()
    config = dataclasses.replace(defaults, seconds=args.seconds, chunks=args.chunks, rounds=args.rounds)
    figures = run(config)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
