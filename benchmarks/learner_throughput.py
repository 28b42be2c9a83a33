"""SAC critic updates per second in the learner process, fed by the replay service, against a bare update loop.

    python benchmarks/learner_throughput.py [--json] [--configs C ...] [--seconds S] [--rounds R]
                                            [--out FILE.json] [key=value ...]

For each config, two sides are measured in the same run, in alternating phases (benchmarks/harness.py
says how):

* system: the real replay service and learner processes, as the local launcher starts them. One
  actor fills the replay service with ``replay.min_size`` transitions (one batch's worth) and is
  then frozen, so that it takes no CPU from the learner. The learner then trains as fast as it can
  (the rate limiter is off): its batch fetcher keeps ``replay.prefetch`` requests in flight, every
  batch is sampled by the replay service, sent over TCP loopback, decoded and moved to the learner's
  device; the learner publishes weights every ``learner.publish_every`` steps. Updates/s are the
  learner's own counter.
* bare: the same SAC update (learner.sac.SAC, same networks, config, device, precision and CPU
  threads) in a loop on fixed random batches already on the device, as
  benchmarks/sac_update_speed.py does: no sockets, no replay, no copies.

``efficiency`` = system critic updates/s / bare critic updates/s, wall clock (goal: >= 0.9);
``cpu_efficiency`` = the same per CPU-second of the learner process (harness.py says why both). The device is the
config's ``learner.device`` (``auto``: the GPU when there is one), e.g. ``frankasim_sac_cnn`` on a
GPU machine, where the actor renders with ``MUJOCO_GL=egl``.

Prints a table, then (with ``--json``) one JSON line last: ``efficiency`` ({config: ratio}),
``results`` and ``machine``. ``key=value`` arguments override the config of both sides.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (LoopWorkers, RunningSystem, alternate, bare_learner_loop,  # noqa: E402
                                describe_machine, machine_info, paired_figures, side_medians)
from benchmarks.report import add_output_args, emit  # noqa: E402

GOAL = 0.9


@dataclass
class LearnerBenchConfig:
    configs: list = field(default_factory=lambda: ["pendulum_sac_mlp", "frankasim_sac_mlp"])
    seconds: float = 2.0  # measured per phase
    rounds: int = 6  # system/bare pairs per config; the figure is the median of the rounds' ratios
    settle_s: float = 0.5  # after a side is thawed, before its clock starts
    start_timeout_s: float = 600.0  # roles start, the actor fills replay.min_size, the learner's first update
    overrides: list = field(default_factory=list)  # key=value for both sides

    def __post_init__(self):
        if self.rounds < 1 or self.seconds <= 0 or not self.configs:
            raise ValueError(f"need rounds >= 1, seconds > 0 and at least one config: {self}")


def system_overrides(cfg) -> list[str]:
    # One batch's worth of data is enough to sample from (with replacement), and quick to collect even
    # from a vision env rendering on a CPU.
    min_size = max(int(cfg.sac.batch_size), int(cfg.actor.chunk_len) * int(cfg.env.num_envs))
    return ["actor.num_actors=1", "replay.rate_limit.updates_per_step=0", f"replay.min_size={min_size}",
            "eval.enabled=false"]


def measure_config(preset: str, bench: LearnerBenchConfig) -> dict:
    from launch.run_config import load_config

    cfg = load_config(preset, list(bench.overrides))
    overrides = [*system_overrides(cfg), *bench.overrides]
    bare = system = None
    try:
        bare = LoopWorkers(bare_learner_loop, preset, overrides, 1)  # both sides start at once
        system = RunningSystem(preset, overrides)
        system.start_roles(actors=1)
        bare.wait_ready(bench.start_timeout_s)
        system.wait_until(lambda: system.latest("learner", "updates") > 0, bench.start_timeout_s,
                          "the actor to fill replay.min_size and the learner to update")
        system.park("actor-0")  # the data is there; from now on the learner has the machine
        system.freeze()

        def measure_system() -> dict:
            m = system.measure(bench.seconds, bench.settle_s, {"learner": ("learner", "updates")})
            return {"updates_per_s": m["rate"]["learner"], "learner_cpu": m["cpu"]["learner"],
                    "replay_cpu": m["cpu"]["replay"]}

        def measure_bare() -> dict:
            m = bare.measure(bench.seconds, bench.settle_s)
            return {"updates_per_s": m["rate"], "learner_cpu": m["cpu"][0]}

        pairs = alternate(bench.rounds, measure_system, measure_bare)
    finally:
        for side in (system, bare):
            if side is not None:
                side.close()
    return summarize(preset, cfg, pairs)


def summarize(preset: str, cfg, pairs: list[tuple[dict, dict]]) -> dict:
    """Medians over the rounds; each ratio is taken within a round (system and bare of the same round).

    Updates per CPU-second of the learner process (all its threads) say what the system costs per update,
    whatever share of the cores the scheduler gave each side. Waiting for data does not show there (a
    waiting learner uses no CPU): that is what `efficiency` catches.
    """
    from core.devices import resolve_device

    return {
        "config": preset, "device": resolve_device(cfg.learner.device), "batch_size": int(cfg.sac.batch_size),
        "critic_actor_ratio": int(cfg.sac.critic_actor_ratio), "prefetch": int(cfg.replay.prefetch),
        **paired_figures(pairs, "updates_per_s", "learner_cpu", "updates", 2),
        **side_medians(pairs, "learner_cpu", 2),
        "system_replay_cpu": round(statistics.median(s["replay_cpu"] for s, _ in pairs), 2),
    }


def run(bench: LearnerBenchConfig) -> dict:
    machine = machine_info()
    print(f"machine: {describe_machine(machine)}")
    print(f"{bench.rounds} rounds of {bench.seconds:.1f} s per side; figures are medians over the rounds")
    print(f"{'config':<18} {'device':>7} | {'critic updates/s':^17} {'effic-':>6} | {'updates/learner-CPU-s':^21} | "
          f"{'learner CPU':^11} | {'replay'}")
    print(f"{'':<18} {'':>7} | {'system':>8} {'bare':>8} {'iency':>6} | {'system':>7} {'bare':>7} {'effic.':>5} | "
          f"{'sys':>5} {'bare':>5} | {'CPU'}")
    rows = []
    for preset in bench.configs:
        row = measure_config(preset, bench)
        rows.append(row)
        print(f"{preset:<18} {row['device']:>7} | "
              f"{row['system_updates_per_s']:>8.1f} {row['bare_updates_per_s']:>8.1f} {row['efficiency']:>6.3f} | "
              f"{row['system_updates_per_cpu_s']:>7.1f} {row['bare_updates_per_cpu_s']:>7.1f} "
              f"{row['cpu_efficiency']:>5.3f} | {row['system_learner_cpu']:>5.2f} {row['bare_learner_cpu']:>5.2f} | "
              f"{row['system_replay_cpu']:.2f}", flush=True)
    machine["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    efficiency = {r["config"]: r["efficiency"] for r in rows}
    return {"benchmark": "learner_throughput", "goal": GOAL, "efficiency": efficiency,
            "goal_met": all(v >= GOAL for v in efficiency.values()), "results": rows, "machine": machine,
            "seconds": bench.seconds, "rounds": bench.rounds}


def main() -> None:
    defaults = LearnerBenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=defaults.configs, help="config presets")
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="measured seconds per side and round")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="system/bare pairs per config")
    add_output_args(parser)
    args, overrides = parser.parse_known_args()
    bench = LearnerBenchConfig(configs=args.configs, seconds=args.seconds, rounds=args.rounds, overrides=overrides)
    emit(run(bench), args)


if __name__ == "__main__":
    main()
