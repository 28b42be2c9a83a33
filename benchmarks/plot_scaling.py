"""Draws what benchmarks/actor_throughput.py measured over chunk lengths and actor counts.

    python benchmarks/plot_scaling.py RESULT.json [--out FIGURE.png]

One row per config. Left: env steps/s of the system (solid) and of the bare loops (dotted) against
the chunk length, one colour per actor count N. Right: the efficiencies (system / bare), wall-clock
(solid) and per actor CPU-second (dashed), with the goal line.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


def plot(result: dict, out: Path) -> None:
    """One row per config: env steps/s (left) and the efficiencies (right) against the chunk length."""
    configs = sorted({row["config"] for row in result["results"]})
    fig, axes = plt.subplots(len(configs), 2, figsize=(11, 3.6 * len(configs)), squeeze=False)
    for (speed, ratio), config in zip(axes, configs):
        rows = [row for row in result["results"] if row["config"] == config]
        for i, n in enumerate(sorted({row["num_actors"] for row in rows})):
            points = sorted((row for row in rows if row["num_actors"] == n), key=lambda row: row["chunk_len"])
            chunks = [row["chunk_len"] for row in points]
            color = f"C{i}"
            speed.plot(chunks, [r["system_env_steps_per_s"] for r in points], "o-", color=color, label=f"N={n} system")
            speed.plot(chunks, [r["bare_env_steps_per_s"] for r in points], "s:", color=color, label=f"N={n} bare")
            ratio.plot(chunks, [r["efficiency"] for r in points], "o-", color=color, label=f"N={n} wall-clock")
            ratio.plot(chunks, [r["cpu_efficiency"] for r in points], "^--", color=color,
                       label=f"N={n} per actor CPU-s")
        ratio.axhline(result.get("goal", 0.9), color="grey", lw=0.8, ls=":")
        ratio.set_ylim(0, max(1.2, *(r["efficiency"] for r in rows)) * 1.05)
        speed.set_ylim(bottom=0)
        speed.set_ylabel("env steps/s (all actors)")
        ratio.set_ylabel("system / bare")
        speed.set_title(config, fontsize=10)
        ratio.set_title(f"{config}: efficiency (goal {result.get('goal', 0.9)})", fontsize=10)
        for ax in (speed, ratio):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({row["chunk_len"] for row in rows}))
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.set_xlabel("actor.chunk_len (env steps per chunk)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
    machine = result.get("machine", {})
    fig.suptitle(f"Actors through the system vs bare loops: {machine.get('cpu', '?')}, {machine.get('cores', '?')} "
                 f"cores, load average {machine.get('load_avg_1min', '?')}-{machine.get('load_avg_1min_end', '?')}",
                 fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", type=Path, help="JSON written by actor_throughput.py --out")
    parser.add_argument("--out", type=Path, help="PNG to write (default: RESULT with .png)")
    args = parser.parse_args()
    result = json.loads(args.result.read_text())
    if result.get("benchmark") != "actor_throughput":
        raise SystemExit(f"{args.result} is not an actor_throughput.py result (benchmark={result.get('benchmark')!r})")
    out = args.out or args.result.with_suffix(".png")
    plot(result, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
