"""How long a replay snapshot stops the replay service: written in the service's loop vs by a forked child.

    python benchmarks/snapshot_stall.py [--json] [--out FILE] [--mb MB] [--dir DIR]

A camera buffer (PandaPickCubeVision-v0 observations, two 128x128x3 uint8 cameras) of ``--mb`` MB is
filled, then snapshotted twice into ``--dir`` while this process does the service's work in a loop:
sample a batch of 256 and, every fourth batch, store a chunk of 64 steps (so the service dirties pages
while the child writes).

* ``inline``: ``save_snapshot`` in the loop, as the service did before: the loop stops for the whole write.
* ``background``: ``BackgroundSnapshot`` (replay/snapshot.py): fork a child that writes; the loop goes on.

For each: the snapshot's duration, the longest gap between two batches of the loop while it ran (the
stall the learner sees), and batches/s during the snapshot against batches/s with no snapshot, measured
just before (``serving_ratio``). ``stall_ratio`` = background's longest gap / inline's.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.harness import describe_machine, machine_info  # noqa: E402
from benchmarks.replay import SPECS, make_chunk  # noqa: E402
from benchmarks.report import add_output_args, emit  # noqa: E402
from core.log import get_logger  # noqa: E402
from replay.buffer import ReplayBuffer  # noqa: E402
from replay.snapshot import BackgroundSnapshot, save_snapshot  # noqa: E402

CHUNK_LEN, BATCH = 64, 256


class ServiceLoop:
    """The replay service's work on one buffer: batches sampled, a chunk stored every fourth batch."""

    def __init__(self, buffer: ReplayBuffer, rng: np.random.Generator):
        self.buffer, self.rng = buffer, rng
        self.chunk = make_chunk(SPECS["franka_vision"], 1, CHUNK_LEN, rng)
        self.batches = 0

    def step(self) -> None:
        self.buffer.sample(BATCH, self.rng)
        self.batches += 1
        if self.batches % 4 == 0:
            self.buffer.add_chunk(self.chunk)

    def rate(self, seconds: float) -> float:
        start, t0 = self.batches, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self.step()
        return (self.batches - start) / (time.perf_counter() - t0)


def measure(loop: ServiceLoop, how: str, directory: Path, log) -> dict:
    idle = loop.rate(2.0)
    service = {"limiter": {"inserted": 0}, "actors": {}}
    start_batches, t0 = loop.batches, time.perf_counter()
    if how == "inline":
        loop.step()
        save_snapshot(directory, loop.buffer, service)  # the loop waits here, as the service did
        loop.step()
        gap = time.perf_counter() - t0
        seconds = gap
    else:
        writer = BackgroundSnapshot(directory, keep=2, run_id="", log=log)
        last = time.perf_counter()
        if not writer.start(loop.buffer, service):
            raise RuntimeError("fork() was refused")
        gap = time.perf_counter() - last  # the fork itself pauses the loop
        done = None
        while done is None:
            loop.step()
            now = time.perf_counter()
            gap, last = max(gap, now - last), now
            done = writer.poll()
        if not done.ok:
            raise RuntimeError("the background snapshot failed (see the log above)")
        seconds = done.seconds
    during = (loop.batches - start_batches) / (time.perf_counter() - t0)
    return {"snapshot_s": round(seconds, 3), "longest_gap_s": round(gap, 4), "idle_batches_per_s": round(idle, 1),
            "batches_per_s_during": round(during, 1), "serving_ratio": round(during / idle, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=1200.0, help="buffer size in MB (filled before measuring)")
    parser.add_argument("--dir", default=None, help="where snapshots go (default: a temporary directory)")
    add_output_args(parser)
    args = parser.parse_args()
    spec = SPECS["franka_vision"]
    capacity = int(args.mb * 1e6 / ReplayBuffer.bytes_per_transition(spec, CHUNK_LEN))
    buffer, rng = ReplayBuffer(spec, capacity, CHUNK_LEN), np.random.default_rng(0)
    print(f"filling a {args.mb:,.0f} MB camera buffer ({capacity:,} transitions) ...", flush=True)
    for _ in range(capacity // CHUNK_LEN + 1):
        buffer.add_chunk(make_chunk(spec, 1, CHUNK_LEN, rng))
    loop = ServiceLoop(buffer, rng)
    scratch = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="snapshot-stall-"))
    log = get_logger("snapshot-stall")
    try:
        results = {how: measure(loop, how, scratch / how, log) for how in ("inline", "background")}
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)
    stall_ratio = results["background"]["longest_gap_s"] / results["inline"]["longest_gap_s"]
    machine = machine_info()
    print(f"machine: {describe_machine(machine)}")
    print(f"{'snapshot':<11} {'seconds':>8} {'longest gap s':>14} {'batches/s idle':>15} {'during':>8} {'ratio':>6}")
    for how, r in results.items():
        print(f"{how:<11} {r['snapshot_s']:>8.2f} {r['longest_gap_s']:>14.4f} {r['idle_batches_per_s']:>15.1f} "
              f"{r['batches_per_s_during']:>8.1f} {r['serving_ratio']:>6.2f}")
    print(f"longest stall, background / inline: {stall_ratio:.4f}")
    emit({"benchmark": "snapshot_stall", "buffer_MB": args.mb, "buffer_GB_allocated": round(buffer.nbytes() / 1e9, 3),
          "results": results, "stall_ratio": round(stall_ratio, 5), "machine": machine}, args)


if __name__ == "__main__":
    main()
