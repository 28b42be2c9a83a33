"""What CurveZMQ costs on the sockets path: one camera chunk between two processes over TCP, plain vs Curve.

    python benchmarks/curve_cost.py [--mb 25.2] [--chunks 20]

Runs over loopback TCP with the project's wire format (wire/protocol.py), once without authentication and once
with Curve (the run's default for TCP: launch.keys makes the keys). Prints GB/s of each and their ratio; with
--json one JSON line last. Same-host runs do not pay this: they use ipc:// sockets in an owner-only directory,
and shared-memory chunks send only headers.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import zmq  # noqa: E402

from core import security  # noqa: E402
from core.net import make_socket  # noqa: E402
from launch.keys import generate_keys  # noqa: E402
from wire import protocol  # noqa: E402
from wire.protocol import Kind  # noqa: E402


def _context(keys_dir: str | None) -> zmq.Context:
    ctx = zmq.Context()
    if keys_dir:
        security.use_keys(ctx, security.load_keys(keys_dir))
    return ctx


def receiver(keys_dir: str | None, chunks: int, port_q, done_q) -> None:
    ctx = _context(keys_dir)
    sock = make_socket(ctx, zmq.ROUTER, curve="server")
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    port_q.put(port)
    for _ in range(chunks + 1):  # one warm-up
        route, msg = protocol.recv(sock, route_frames=1)
        protocol.send(sock, Kind.CREDIT, sender="replay", route=route, meta={"ok": 1})
    done_q.put(True)
    sock.close(0)
    security.release(ctx)
    ctx.term()


def measure(keys_dir: str | None, mb: float, chunks: int) -> float:
    port_q, done_q = mp.Queue(), mp.Queue()
    proc = mp.Process(target=receiver, args=(keys_dir, chunks, port_q, done_q))
    proc.start()
    port = port_q.get(timeout=30)
    ctx = _context(keys_dir)
    sock = make_socket(ctx, zmq.DEALER, curve="client")
    sock.connect(f"tcp://127.0.0.1:{port}")
    arrays = {"obs": np.random.default_rng(0).integers(0, 255, int(mb * 1e6), dtype=np.uint8)}
    start = 0.0
    for i in range(chunks + 1):
        if i == 1:
            start = time.perf_counter()
        protocol.send(sock, Kind.CHUNK, arrays, sender="actor-0", seq=i + 1)
        protocol.recv(sock, kinds={Kind.CREDIT})
    seconds = time.perf_counter() - start
    done_q.get(timeout=30)
    proc.join(10)
    sock.close(0)
    security.release(ctx)
    ctx.term()
    return chunks * arrays["obs"].nbytes / seconds / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=25.2)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        keys = str(generate_keys(Path(tmp) / "keys"))
        plain = measure(None, args.mb, args.chunks)
        curve = measure(keys, args.mb, args.chunks)
    print(f"{args.mb} MB chunks over loopback TCP: plain {plain:.2f} GB/s, CurveZMQ {curve:.2f} GB/s "
          f"({curve / plain:.2f} of plain)")
    if args.json:
        print(json.dumps({"plain_GBps": plain, "curve_GBps": curve, "curve_vs_plain": curve / plain, "mb": args.mb}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
