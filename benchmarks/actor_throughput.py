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

``efficiency`` = system env steps/s / bare env steps/s, wall clock; ``cpu_efficiency`` = the same per
CPU-second of the actor processes (harness.py says why both). Goal: >= 0.9 for N = 1 and 2 on 2
cores. Also reported: CPU shares, and the learner's critic updates/s in both phases.

Prints a table, then (with ``--json``) one JSON line last: ``efficiency`` ({"<config> N=<n>
chunk=<len>": ratio}), ``results`` (every measured figure) and ``machine``. ``--out FILE`` writes the
same JSON to a file (``benchmarks/plot_scaling.py`` draws it). ``key=value`` arguments override the
config of both sides, e.g. ``env.num_envs=4``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (LoopWorkers, RunningSystem, alternate, bare_actor_loop,  # noqa: E402
                                bare_learner_loop, cpu_seconds, describe_machine, machine_info, paired_figures,
                                side_medians)
from benchmarks.report import add_output_args, emit  # noqa: E402

GOAL = 0.9


@dataclass
class ActorBenchConfig:
    configs: list = field(default_factory=lambda: ["pendulum_sac_mlp", "frankasim_sac_mlp"])
    actors: list = field(default_factory=lambda: [1, 2])
    chunk_lens: list = field(default_factory=lambda: [64])
    seconds: float = 2.0  # measured per phase
    rounds: int = 6  # system/bare pairs per point; the figure is the median of the rounds' ratios
    settle_s: float = 0.5  # after a side is thawed, before its clock starts
    start_timeout_s: float = 300.0  # for the roles to start, connect and the learner to make its first update
    overrides: list = field(default_factory=list)  # key=value for both sides

    def __post_init__(self):
        if self.rounds < 1 or self.seconds <= 0 or not self.actors or not self.chunk_lens or not self.configs:
            raise ValueError("need rounds >= 1, seconds > 0 and at least one config, actor count and chunk length: "
                             f"{self}")
        if min(self.actors) < 1 or min(self.chunk_lens) < 1:
            raise ValueError(f"actor counts and chunk lengths must be >= 1: {self}")


def system_overrides(num_actors: int, chunk_len: int, batch_size: int = 1) -> list[str]:
    return [f"actor.num_actors={num_actors}", f"actor.chunk_len={chunk_len}", "actor.random_steps=0",
            "replay.rate_limit.updates_per_step=0",  # the learner never gates the actors
            # The learner starts consuming after the first chunk (or the first batch: min_size >= batch_size).
            f"replay.min_size={max(chunk_len, batch_size)}"]


def batch_size_of(preset: str, overrides: list[str]) -> int:
    from launch.run_config import load_config

    cfg = load_config(preset, overrides)
    return int(cfg.sac.batch_size) if "sac" in cfg else 1


def measure_point(preset: str, num_actors: int, chunk_len: int, bench: ActorBenchConfig) -> dict:
    """Both sides of one (config, N, chunk length), in alternating rounds."""
    overrides = [*system_overrides(num_actors, chunk_len, batch_size_of(preset, bench.overrides)), *bench.overrides]
    bare_actors = bare_learner = system = None
    try:
        # Everything starts at once (starting is most of a short run's time); each side is frozen once warm.
        bare_actors = LoopWorkers(bare_actor_loop, preset, overrides, num_actors)
        bare_learner = LoopWorkers(bare_learner_loop, preset, overrides, 1)
        system = RunningSystem(preset, overrides)
        system.start_roles(num_actors)
        bare_actors.wait_ready(bench.start_timeout_s)
        bare_learner.wait_ready(bench.start_timeout_s)
        actor_names = [f"actor-{i}" for i in range(num_actors)]
        # Warm: every actor acts with the learner's weights and the learner has consumed batches.
        system.wait_until(lambda: system.latest("learner", "updates") > 0
                          and all(system.latest(a, "actor_env_steps") > 2 * chunk_len for a in actor_names),
                          bench.start_timeout_s, "the actors to send chunks and the learner to update")
        system.freeze()

        def measure_system() -> dict:
            m = system.measure(bench.seconds, bench.settle_s,
                               {**{a: (a, "actor_env_steps") for a in actor_names}, "learner": ("learner", "updates")})
            return {"env_steps_per_s": sum(m["rate"][a] for a in actor_names), "updates_per_s": m["rate"]["learner"],
                    "actor_cpu": sum(m["cpu"][a] for a in actor_names), "learner_cpu": m["cpu"]["learner"],
                    "replay_cpu": m["cpu"]["replay"]}

        def measure_bare() -> dict:
            # Both bare loops run together, as the actors and the learner do in the system.
            learner_pid = bare_learner.pids[0]
            bare_learner.thaw()
            try:
                count0, cpu0, t0 = bare_learner.total(), cpu_seconds(learner_pid), time.perf_counter()
                m = bare_actors.measure(bench.seconds, bench.settle_s)
                count1, cpu1, t1 = bare_learner.total(), cpu_seconds(learner_pid), time.perf_counter()
            finally:
                bare_learner.freeze()
            return {"env_steps_per_s": m["rate"], "actor_cpu": sum(m["cpu"]),
                    "updates_per_s": (count1 - count0) / (t1 - t0), "learner_cpu": (cpu1 - cpu0) / (t1 - t0)}

        pairs = alternate(bench.rounds, measure_system, measure_bare)
    finally:
        for side in (system, bare_actors, bare_learner):
            if side is not None:
                side.close()
    return summarize(preset, num_actors, chunk_len, pairs)


def summarize(preset: str, num_actors: int, chunk_len: int, pairs: list[tuple[dict, dict]]) -> dict:
    """Medians over the rounds; each ratio is taken within a round (system and bare of the same round).

    Env steps per CPU-second of the actor processes say what the system costs per step, whatever share of
    the cores the scheduler gave each side.
    """
    return {
        "config": preset, "num_actors": num_actors, "chunk_len": chunk_len,
        **paired_figures(pairs, "env_steps_per_s", "actor_cpu", "env_steps", 1),
        **side_medians(pairs, "actor_cpu", 2),
        **side_medians(pairs, "updates_per_s", 1, name="learner_updates_per_s"),
        **side_medians(pairs, "learner_cpu", 2),
        "system_replay_cpu": round(statistics.median(s["replay_cpu"] for s, _ in pairs), 2),
    }


def key(row: dict) -> str:
    return f"{row['config']} N={row['num_actors']} chunk={row['chunk_len']}"


def run(bench: ActorBenchConfig) -> dict:
    machine = machine_info()
    print(f"machine: {describe_machine(machine)}")
    print(f"{bench.rounds} rounds of {bench.seconds:.1f} s per side; figures are medians over the rounds")
    print(f"{'config':<18} {'N':>2} {'chunk':>5} | {'env steps/s':^19} {'effic-':>7} | {'steps/actor-CPU-s':^17} "
          f"{'CPU':>6} | {'actor CPU':^11} | {'updates/s':^13} | {'replay'}")
    print(f"{'':<18} {'':>2} {'':>5} | {'system':>9} {'bare':>9} {'iency':>7} | {'system':>8} {'bare':>8} "
          f"{'effic.':>6} | {'sys':>5} {'bare':>5} | {'sys':>6} {'bare':>6} | {'CPU'}")
    rows = []
    for preset in bench.configs:
        for chunk_len in bench.chunk_lens:
            for n in bench.actors:
                row = measure_point(preset, n, chunk_len, bench)
                rows.append(row)
                print(f"{preset:<18} {n:>2} {chunk_len:>5} | {row['system_env_steps_per_s']:>9.1f} "
                      f"{row['bare_env_steps_per_s']:>9.1f} {row['efficiency']:>7.3f} | "
                      f"{row['system_env_steps_per_cpu_s']:>8.1f} {row['bare_env_steps_per_cpu_s']:>8.1f} "
                      f"{row['cpu_efficiency']:>6.3f} | "
                      f"{row['system_actor_cpu']:>5.2f} {row['bare_actor_cpu']:>5.2f} | "
                      f"{row['system_learner_updates_per_s']:>6.1f} {row['bare_learner_updates_per_s']:>6.1f} | "
                      f"{row['system_replay_cpu']:.2f}", flush=True)
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
    add_output_args(parser)
    args, overrides = parser.parse_known_args()
    bench = ActorBenchConfig(configs=args.configs, actors=args.actors, chunk_lens=args.chunk_lens,
                             seconds=args.seconds, rounds=args.rounds, overrides=overrides)
    emit(run(bench), args)


if __name__ == "__main__":
    main()
