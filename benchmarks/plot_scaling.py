"""Draws what benchmarks/actor_throughput.py measured over chunk lengths and actor counts.

    python benchmarks/plot_scaling.py RESULT.json [--out FIGURE.png]

Left: env steps/s of the system (solid) and of the bare loops (dotted) against the chunk length,
one colour per (config, N). Right: the efficiencies (system / bare), wall-clock (solid) and per
actor CPU-second (dashed), with the goal line.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def plot(result: dict, out: Path) -> None:
    rows = result["results"]
    series: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        series.setdefault((row["config"], row["num_actors"]), []).append(row)
    fig, (speed, ratio) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, ((config, n), points) in enumerate(sorted(series.items())):
        points.sort(key=lambda r: r["chunk_len"])
        chunks = [r["chunk_len"] for r in points]
        color = f"C{i}"
        label = f"{config}, N={n}"
        speed.plot(chunks, [r["system_env_steps_per_s"] for r in points], "o-", color=color, label=f"{label} system")
        speed.plot(chunks, [r["bare_env_steps_per_s"] for r in points], "s:", color=color, label=f"{label} bare")
        ratio.plot(chunks, [r["efficiency"] for r in points], "o-", color=color, label=f"{label} wall-clock")
        ratio.plot(chunks, [r["cpu_efficiency"] for r in points], "^--", color=color, label=f"{label} per CPU-s")
    ratio.axhline(result.get("goal", 0.9), color="grey", lw=0.8, ls=":")
    for ax in (speed, ratio):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("actor.chunk_len (env steps per chunk)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    speed.set_ylabel("env steps/s (all actors)")
    ratio.set_ylabel("system / bare")
    machine = result.get("machine", {})
    fig.suptitle(f"Actor throughput through the system vs bare loops - {machine.get('cpu', '?')}, "
                 f"{machine.get('cores', '?')} cores, load avg {machine.get('load_avg_1min', '?')}", fontsize=10)
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
