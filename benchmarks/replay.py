"""How fast the replay buffer (replay/buffer.py) stores chunks and samples batches, against the machine's memcpy.

    python benchmarks/replay.py [--json] [--seconds S] [--rounds R] [--vision-mb MB]

In this process, no sockets (benchmarks/transport.py measures those). Observation kinds:

* ``pendulum``: Pendulum-v1, 3-D float32 observation, 1-D action.
* ``franka_state``: PandaPickCube-v0, 10-D float32 observation, 4-D action.
* ``franka_vision``: PandaPickCubeVision-v0, two 128x128x3 uint8 cameras + 7-D float32 proprio, 4-D action.

A chunk is what one actor sends: ``--envs`` rows of ``--chunk-len`` steps, with one episode ending in
the middle of every row (so the final-observation path is on the clock too). Measured, in one run:

* insert: ``ReplayBuffer.add_chunk`` (validation included) into a full buffer, so every insert also
  evicts: chunks/s, transitions/s, and GB/s of array bytes stored.
* sample: ``ReplayBuffer.sample`` of ``--batch`` transitions (observation and next observation
  gathered from the observation ring): batches/s, transitions/s, GB/s of bytes gathered.
* the ceilings: ``memcpy`` (``np.copyto`` of the chunk's arrays into preallocated arrays, rotating
  over 64 MB of targets, more than a cache holds: the speed of moving the bytes once) and
  ``gather`` (numpy fancy indexing of a batch's observation and next observation rows, at random,
  from the buffer's own observation rings: the least a sample can cost with this layout).
  ``insert_vs_memcpy`` (GB/s against GB/s) and ``sample_vs_gather`` (batches/s against batches/s)
  are the buffer's efficiencies; ``sample_vs_memcpy`` says what random access costs against a
  straight copy.

And the memory a camera transition takes: the buffer stores each observation once (each transition
points at its observation and next observation), plus the bootstrap observation at each chunk end
and the final observation of each finished episode. ``bytes_per_image_transition`` is
``ReplayBuffer.bytes_per_transition`` and ``measured_bytes_per_image_transition`` the allocated bytes
per transition of capacity of an 8 GB buffer (what configs/frankasim_sac_cnn.yaml asks for); both
against ``raw_frame_bytes`` (the two camera frames of one step, 98,304 bytes) and against an
(s, a, r, s') table that stores every observation twice.

Rounds interleave the measurements (so a shared machine's load hits all alike); each figure is the
best of its rounds. Prints a table, then (with ``--json``) one JSON line last.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.harness import describe_machine, machine_info  # noqa: E402
from benchmarks.report import add_output_args, emit  # noqa: E402
from core import tree  # noqa: E402
from replay.buffer import ReplayBuffer  # noqa: E402
from wire.schema import Spec  # noqa: E402

CAMERA = (128, 128, 3)
COLD_BYTES = 64 * 2**20  # more than a CPU's last-level cache
IMAGE_BUFFER_GB = 8.0  # replay.capacity_gb of configs/frankasim_sac_cnn.yaml
SPECS = {
    "pendulum": Spec(obs={"": ((3,), "float32")}, action=((1,), "float32")),
    "franka_state": Spec(obs={"": ((10,), "float32")}, action=((4,), "float32")),
    "franka_vision": Spec(obs={"front": (CAMERA, "uint8"), "wrist": (CAMERA, "uint8"), "state": ((7,), "float32")},
                          action=((4,), "float32")),
}


@dataclass
class ReplayBenchConfig:
    seconds: float = 1.0  # least time per measurement
    rounds: int = 3  # repetitions, interleaved; the best is kept
    chunk_len: int = 64  # actor.chunk_len of the configs
    envs: int = 1  # rows per chunk (env.num_envs)
    batch: int = 256  # sac.batch_size of the configs
    vision_mb: float = 1024.0  # memory of the vision buffer (state buffers hold state_capacity transitions)
    state_capacity: int = 100_000
    seed: int = 0

    def __post_init__(self):
        if self.seconds <= 0 or self.rounds < 1 or self.chunk_len < 2 or self.envs < 1 or self.batch < 1:
            raise ValueError(f"need seconds > 0, rounds >= 1, chunk_len >= 2, envs >= 1 and batch >= 1: {self}")


def random_observations(spec: Spec, lead: tuple, rng: np.random.Generator):
    obs = {}
    for name, (shape, dtype) in spec.obs.items():
        if np.dtype(dtype) == np.uint8:
            obs[name] = rng.integers(0, 256, size=(*lead, *shape), dtype=np.uint8)
        else:
            obs[name] = rng.standard_normal((*lead, *shape)).astype(dtype)
    return obs[""] if set(obs) == {""} else obs


def make_chunk(spec: Spec, envs: int, steps: int, rng: np.random.Generator) -> dict:
    """A chunk as actors/chunk.py builds it, with one episode end in the middle of every row."""
    a_shape, a_dtype = spec.action
    truncated = np.zeros((envs, steps), bool)
    truncated[:, steps // 2] = True
    return {"obs": random_observations(spec, (envs, steps + 1), rng),
            "action": rng.uniform(-1, 1, (envs, steps, *a_shape)).astype(a_dtype),
            "reward": rng.standard_normal((envs, steps)).astype(np.float32),
            "terminated": np.zeros((envs, steps), bool), "truncated": truncated,
            "final_obs": random_observations(spec, (envs,), rng),
            "final_index": np.stack([np.arange(envs), np.full(envs, steps // 2)], axis=1).astype(np.int32)}


def nbytes(arrays) -> int:
    return sum(a.nbytes for a in tree.leaves(arrays))


def timed(step, seconds: float) -> tuple[int, float]:
    """Calls `step()` for at least `seconds` (and at least 3 times); returns (calls, elapsed)."""
    step()  # warm: first-touch page faults, caches
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls, time.perf_counter() - start


class KindBench:
    """The buffer of one observation kind, its chunk, and the four measurements."""

    def __init__(self, kind: str, bench: ReplayBenchConfig):
        self.kind, self.bench = kind, bench
        spec = SPECS[kind]
        rng = np.random.default_rng(bench.seed)
        self.spec = spec
        self.chunk = make_chunk(spec, bench.envs, bench.chunk_len, rng)
        self.chunk_bytes = nbytes(self.chunk)
        self.transitions_per_chunk = bench.envs * bench.chunk_len
        per = ReplayBuffer.bytes_per_transition(spec, bench.chunk_len)
        capacity = int(bench.vision_mb * 1e6 / per) if spec.obs_bytes() > 10_000 else bench.state_capacity
        capacity = max(capacity, 2 * self.transitions_per_chunk)
        self.buffer = ReplayBuffer(spec, capacity, bench.chunk_len)
        while self.buffer.written < capacity + self.transitions_per_chunk:  # full, and already evicting
            self.buffer.add_chunk(self.chunk)
        self.sample_rng = np.random.default_rng(bench.seed + 1)
        self.batch_bytes = nbytes(self.buffer.sample(bench.batch, self.sample_rng))
        # memcpy's targets rotate over more memory than a CPU cache holds, as the buffer's ring does.
        self.copy_sources = list(tree.leaves(self.chunk))
        copies = min(16, -(-COLD_BYTES // self.chunk_bytes))
        self.copy_targets = [[np.ones_like(a) for a in self.copy_sources] for _ in range(copies)]
        self.copies = 0

    def insert(self) -> dict:
        calls, elapsed = timed(lambda: self.buffer.add_chunk(self.chunk), self.bench.seconds)
        return {"per_s": calls / elapsed, "GBps": calls * self.chunk_bytes / elapsed / 1e9}

    def sample(self) -> dict:
        batch, rng = self.bench.batch, self.sample_rng
        calls, elapsed = timed(lambda: self.buffer.sample(batch, rng), self.bench.seconds)
        return {"per_s": calls / elapsed, "GBps": calls * self.batch_bytes / elapsed / 1e9}

    def memcpy(self) -> dict:
        def copy_chunk():
            self.copies += 1
            for src, dst in zip(self.copy_sources, self.copy_targets[self.copies % len(self.copy_targets)]):
                np.copyto(dst, src)

        calls, elapsed = timed(copy_chunk, self.bench.seconds)
        return {"per_s": calls / elapsed, "GBps": calls * self.chunk_bytes / elapsed / 1e9}

    def gather(self) -> dict:
        """A batch's observation and next-observation rows gathered from the buffer's own rings, nothing else.
        All of a batch's arrays are alive at once, as in a sampled batch: a batch of images is larger
        than a CPU cache, so the gathered rows go out to memory, which is what sampling costs."""
        rings, batch, rng = list(self.buffer.obs.values()), self.bench.batch, self.sample_rng

        def gather_batch():
            rows = rng.integers(0, len(rings[0]), size=(2, batch))  # observations and next observations
            return [ring[rows[0]] for ring in rings] + [ring[rows[1]] for ring in rings]

        calls, elapsed = timed(gather_batch, self.bench.seconds)
        return {"per_s": calls / elapsed, "GBps": calls * 2 * batch * self.spec.obs_bytes() / elapsed / 1e9}


def image_memory(bench: ReplayBenchConfig) -> dict:
    spec = SPECS["franka_vision"]
    raw = 2 * int(np.prod(CAMERA))
    per = ReplayBuffer.bytes_per_transition(spec, bench.chunk_len)
    # A buffer of the vision config's size; numpy allocates it lazily, so it costs no memory until written.
    capacity = int(IMAGE_BUFFER_GB * 1e9 / per)
    allocated = ReplayBuffer(spec, capacity, bench.chunk_len).nbytes() / capacity
    a_shape, a_dtype = spec.action
    sars = 2 * spec.obs_bytes() + int(np.prod(a_shape)) * np.dtype(a_dtype).itemsize + 4 + 1
    return {"raw_frame_bytes": raw, "bytes_per_image_transition": round(per, 1),
            "measured_bytes_per_image_transition": round(allocated, 1),
            "bytes_vs_raw_frames": round(per / raw, 4), "sars_table_bytes_per_transition": sars,
            "bytes_vs_sars_table": round(per / sars, 4)}


def run(bench: ReplayBenchConfig) -> dict:
    machine = machine_info()
    kinds = {kind: KindBench(kind, bench) for kind in SPECS}
    best: dict[tuple[str, str], dict] = {}
    for _ in range(bench.rounds):
        for kind, kb in kinds.items():
            for what in ("insert", "memcpy", "sample", "gather"):
                result = getattr(kb, what)()
                if (kind, what) not in best or result["per_s"] > best[kind, what]["per_s"]:
                    best[kind, what] = result
    results = {}
    for kind, kb in kinds.items():
        ins, sam = best[kind, "insert"], best[kind, "sample"]
        results[kind] = {
            "capacity": kb.buffer.capacity, "buffer_GB": round(kb.buffer.nbytes() / 1e9, 3),
            "chunk_bytes": kb.chunk_bytes, "batch_bytes": kb.batch_bytes,
            "insert_chunks_per_s": round(ins["per_s"], 1),
            "insert_transitions_per_s": round(ins["per_s"] * kb.transitions_per_chunk),
            "insert_GBps": round(ins["GBps"], 3), "memcpy_GBps": round(best[kind, "memcpy"]["GBps"], 3),
            "insert_vs_memcpy": round(ins["GBps"] / best[kind, "memcpy"]["GBps"], 3),
            "sample_batches_per_s": round(sam["per_s"], 1),
            "sample_transitions_per_s": round(sam["per_s"] * bench.batch),
            "sample_GBps": round(sam["GBps"], 3), "gather_GBps": round(best[kind, "gather"]["GBps"], 3),
            "sample_vs_gather": round(sam["per_s"] / best[kind, "gather"]["per_s"], 3),
            "sample_vs_memcpy": round(sam["GBps"] / best[kind, "memcpy"]["GBps"], 3),
        }
    memory = image_memory(bench)
    machine["load_avg_1min_end"] = round(os.getloadavg()[0], 2)

    print(f"machine: {describe_machine(machine)}")
    print(f"chunks of {bench.envs} x {bench.chunk_len} steps, batches of {bench.batch}; best of {bench.rounds} rounds")
    print(f"{'kind':<14} {'chunks/s':>9} {'trans/s':>10} {'GB/s':>6} {'vs memcpy':>9} | {'batches/s':>9} "
          f"{'trans/s':>10} {'GB/s':>6} {'vs gather':>9} {'vs memcpy':>9} | {'buffer GB':>9}")
    for kind, r in results.items():
        print(f"{kind:<14} {r['insert_chunks_per_s']:>9.1f} {r['insert_transitions_per_s']:>10,} "
              f"{r['insert_GBps']:>6.2f} {r['insert_vs_memcpy']:>9.2f} | {r['sample_batches_per_s']:>9.1f} "
              f"{r['sample_transitions_per_s']:>10,} {r['sample_GBps']:>6.2f} {r['sample_vs_gather']:>9.2f} "
              f"{r['sample_vs_memcpy']:>9.2f} | {r['buffer_GB']:>9.3f}")
    print(f"image transition: {memory['bytes_per_image_transition']:,.0f} bytes "
          f"({memory['measured_bytes_per_image_transition']:,.0f} allocated) for {memory['raw_frame_bytes']:,} bytes "
          f"of camera frames: {memory['bytes_vs_raw_frames']:.3f}x the raw frames, "
          f"{memory['bytes_vs_sars_table']:.3f}x an (s, a, r, s') table")
    return {"benchmark": "replay", "results": results, "image_memory": memory, "machine": machine,
            "chunk_len": bench.chunk_len, "envs": bench.envs, "batch": bench.batch, "rounds": bench.rounds}


def main() -> None:
    defaults = ReplayBenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="least seconds per measurement")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="repetitions; the best is kept")
    parser.add_argument("--chunk-len", type=int, default=defaults.chunk_len)
    parser.add_argument("--envs", type=int, default=defaults.envs, help="rows per chunk")
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--vision-mb", type=float, default=defaults.vision_mb, help="memory of the vision buffer")
    parser.add_argument("--state-capacity", type=int, default=defaults.state_capacity)
    add_output_args(parser)
    args = parser.parse_args()
    bench = ReplayBenchConfig(seconds=args.seconds, rounds=args.rounds, chunk_len=args.chunk_len, envs=args.envs,
                              batch=args.batch, vision_mb=args.vision_mb, state_capacity=args.state_capacity)
    emit(run(bench), args)


if __name__ == "__main__":
    main()
