"""Env steps per second of N actors through the whole system, against the same envs and policy in bare loops.

    python benchmarks/actor_throughput.py [--json] [--configs C ...] [--actors 1 2] [--chunk-lens 64]
                                          [--seconds S] [--rounds R] [--out FILE.json] [key=value ...]

For each config, chunk length and actor count N, two sides are measured in the same run, in
alternating phases (benchmarks/harness.py says how):

* system: the real role processes (replay service, SAC learner, N actors) as the local launcher
  starts them, over TCP loopback. The rate limiter is off (``replay.rate_limit.updates_per_step=0``):
  the learner samples and trains as fast as it can and never holds the actors back. Env steps/s are
  the actors' own counters (``actor_env_steps``); the actors act with the policy from the first step
  (``actor.random_steps=0``) and load new weights as the learner publishes them.
* bare: N processes that build the same vector env and policy as an actor and loop
  ``obs = env.step(policy.act(obs))``: no chunks, no sockets, no replay; beside them one bare
  SAC update loop (the learner's computation on random batches). The learner's computation is on
  the machine in both phases, so that on a machine with fewer cores than processes both sides
  share the cores alike; the difference is what the system adds around the computation: chunking,
  credits, sending, replay inserts and batch sampling, weight loading.

``efficiency`` = system env steps/s / bare env steps/s. Goal: >= 0.9 for N = 1 and 2 on 2 cores.
Also reported: the learner's critic updates/s in both phases.

Prints a table, then (with ``--json``) one JSON line last: ``efficiency`` ({"<config> N=<n>
chunk=<len>": ratio}), ``results`` (every measured figure) and ``machine``. ``--out FILE`` writes the
same JSON to a file (``benchmarks/plot_scaling.py`` draws it). ``key=value`` arguments override the
config of both sides, e.g. ``env.num_envs=4``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (LoopWorkers, RunningSystem, alternate, bare_actor_loop,  # noqa: E402
                                bare_learner_loop, describe_machine, machine_info)

GOAL = 0.9


@dataclass
class ActorBenchConfig:
    configs: list = field(default_factory=lambda: ["pendulum_sac_mlp", "frankasim_sac_mlp"])
    actors: list = field(default_factory=lambda: [1, 2])
    chunk_lens: list = field(default_factory=lambda: [64])
    seconds: float = 4.0  # measured per phase
    rounds: int = 3  # system/bare pairs per point; the figure is the median of the rounds' ratios
    settle_s: float = 0.5  # after a side is thawed, before its clock starts
    start_timeout_s: float = 300.0  # for the roles to start, connect and the learner to make its first update
    overrides: list = field(default_factory=list)  # key=value for both sides

    def __post_init__(self):
        if self.rounds < 1 or self.seconds <= 0 or not self.actors or not self.chunk_lens or not self.configs:
            raise ValueError(f"need rounds >= 1, seconds > 0 and at least one config, actor count and chunk length: {self}")
        if min(self.actors) < 1 or min(self.chunk_lens) < 1:
            raise ValueError(f"actor counts and chunk lengths must be >= 1: {self}")


def system_overrides(num_actors: int, chunk_len: int) -> list[str]:
    return [f"actor.num_actors={num_actors}", f"actor.chunk_len={chunk_len}", "actor.random_steps=0",
            "replay.rate_limit.updates_per_step=0",  # the learner never gates the actors
            f"replay.min_size={chunk_len}"]  # the learner starts consuming after the first chunk


def measure_point(preset: str, num_actors: int, chunk_len: int, bench: ActorBenchConfig) -> dict:
    """Both sides of one (config, N, chunk length), in alternating rounds."""
    overrides = [*system_overrides(num_actors, chunk_len), *bench.overrides]
    bare_actors = bare_learner = system = None
    try:
        bare_actors = LoopWorkers(bare_actor_loop, preset, overrides, num_actors, bench.start_timeout_s)
        bare_learner = LoopWorkers(bare_learner_loop, preset, overrides, 1, bench.start_timeout_s)
        system = RunningSystem(preset, overrides)
        system.start_roles(num_actors)
        actor_names = [f"actor-{i}" for i in range(num_actors)]
        # Warm: every actor acts with the learner's weights and the learner has consumed batches.
        system.wait_until(lambda: system.latest("learner", "updates") > 0
                          and all(system.latest(a, "actor_env_steps") > 2 * chunk_len for a in actor_names),
                          bench.start_timeout_s, "the actors to send chunks and the learner to update")
        system.freeze()

        def measure_system() -> dict:
            rates = system.measure(bench.seconds, bench.settle_s,
                                   {**{a: (a, "actor_env_steps") for a in actor_names},
                                    "learner": ("learner", "updates")})
            return {"env_steps_per_s": sum(rates[a] for a in actor_names), "updates_per_s": rates["learner"]}

        def measure_bare() -> dict:
            # Both bare loops run together, as actors and learner do in the system.
            bare_learner.thaw()
            try:
                learner_count0, t0 = bare_learner.total(), time.perf_counter()
                steps = bare_actors.measure(bench.seconds, bench.settle_s)
                updates = (bare_learner.total() - learner_count0) / (time.perf_counter() - t0)
            finally:
                bare_learner.freeze()
            return {"env_steps_per_s": steps, "updates_per_s": updates}

        pairs = alternate(bench.rounds, measure_system, measure_bare)
    finally:
        for side in (system, bare_actors, bare_learner):
            if side is not None:
                side.close()
    ratios = [s["env_steps_per_s"] / b["env_steps_per_s"] for s, b in pairs]
    median = statistics.median
    return {
        "config": preset, "num_actors": num_actors, "chunk_len": chunk_len,
        "system_env_steps_per_s": round(median(s["env_steps_per_s"] for s, _ in pairs), 1),
        "bare_env_steps_per_s": round(median(b["env_steps_per_s"] for _, b in pairs), 1),
        "efficiency": round(median(ratios), 3),
        "efficiency_rounds": [round(r, 3) for r in ratios],
        "system_learner_updates_per_s": round(median(s["updates_per_s"] for s, _ in pairs), 1),
        "bare_learner_updates_per_s": round(median(b["updates_per_s"] for _, b in pairs), 1),
    }


def key(row: dict) -> str:
    return f"{row['config']} N={row['num_actors']} chunk={row['chunk_len']}"


def run(bench: ActorBenchConfig) -> dict:
    machine = machine_info()
    print(f"machine: {describe_machine(machine)}")
    print(f"{bench.rounds} rounds of {bench.seconds:.1f} s per side; figures are medians over the rounds")
    print(f"{'config':<20} {'N':>2} {'chunk':>5} {'system steps/s':>15} {'bare steps/s':>13} {'efficiency':>10} "
          f"{'updates/s sys/bare':>19}")
    rows = []
    for preset in bench.configs:
        for chunk_len in bench.chunk_lens:
            for n in bench.actors:
                row = measure_point(preset, n, chunk_len, bench)
                rows.append(row)
                print(f"{preset:<20} {n:>2} {chunk_len:>5} {row['system_env_steps_per_s']:>15.1f} "
                      f"{row['bare_env_steps_per_s']:>13.1f} {row['efficiency']:>10.3f} "
                      f"{row['system_learner_updates_per_s']:>9.1f}/{row['bare_learner_updates_per_s']:<9.1f}",
                      flush=True)
    machine["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    efficiency = {key(r): r["efficiency"] for r in rows}
    return {"benchmark": "actor_throughput", "goal": GOAL, "efficiency": efficiency,
            "goal_met": all(v >= GOAL for v in efficiency.values()), "results": rows, "machine": machine,
            "seconds": bench.seconds, "rounds": bench.rounds}


def main() -> None:
    defaults = ActorBenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=defaults.configs, help="config presets")
    parser.add_argument("--actors", nargs="+", type=int, default=defaults.actors, help="actor counts N")
    parser.add_argument("--chunk-lens", nargs="+", type=int, default=defaults.chunk_lens, help="actor.chunk_len values")
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="measured seconds per side and round")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="system/bare pairs per point")
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument("--json", action="store_true", help="print one JSON line of results last")
    args, overrides = parser.parse_known_args()
    bench = ActorBenchConfig(configs=args.configs, actors=args.actors, chunk_lens=args.chunk_lens,
                             seconds=args.seconds, rounds=args.rounds, overrides=overrides)
    result = run(bench)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
