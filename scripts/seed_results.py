"""Time to a success rate over several seeds' run directories, and their success-vs-time curve.

    python scripts/seed_results.py docs/results/frankasim_sac_cnn/seed0 docs/results/frankasim_sac_cnn/seed1 \
        --out docs/results/frankasim_sac_cnn [--threshold 0.8] [--hold-min 5]

For each run directory (its metrics.jsonl and summary.json): the wall-clock time from the launcher's start
(metrics.jsonl's ``wall_s``, compilation included) of the first eval with ``eval/success_rate >= threshold``,
the env steps and learner updates then, and whether every later eval within ``hold-min`` minutes stayed at
or above the threshold (with how many of those minutes the run lasted). Writes ``results.json`` (per seed
and the median over seeds) and ``curve.png`` (success rate against minutes, one line per seed) into --out.
Add a seed by adding its run directory to the command.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def seed_result(run_dir: Path, threshold: float, hold_s: float) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    # A run whose machine was lost before it ended has no summary.json: what it measured until then still counts,
    # with its totals taken from its last metrics row.
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {
        "wall_s": rows[-1].get("wall_s"), "env_steps": rows[-1].get("env_steps"),
        "learner_updates": rows[-1].get("updates"), "stop_reason": "no summary: the run did not end (machine lost)"}
    evals = [r for r in rows if "eval/success_rate" in r]
    first = next((r for r in evals if r["eval/success_rate"] >= threshold), None)
    out = {"run": run_dir.name, "device": summary.get("device"), "wall_s": summary.get("wall_s"),
           "env_steps": summary.get("env_steps"), "learner_updates": summary.get("learner_updates"),
           "updates_per_s": summary.get("updates_per_s"), "env_steps_per_s": summary.get("env_steps_per_s"),
           "final_success_rate": summary.get("eval/success_rate"), "stop_reason": summary.get("stop_reason"),
           "evals": [(round(r["wall_s"], 1), r["eval/success_rate"]) for r in evals]}
    if first is None:
        out["time_to_threshold_s"] = None
        return out
    t = first["wall_s"]
    later = [r for r in evals if t < r["wall_s"] <= t + hold_s]
    out.update({"time_to_threshold_s": round(t, 1), "time_to_threshold_min": round(t / 60, 2),
                "env_steps_at_threshold": first.get("env_steps"), "updates_at_threshold": first.get("updates"),
                "held_min_success": min((r["eval/success_rate"] for r in later), default=None),
                "held": all(r["eval/success_rate"] >= threshold for r in later),
                "hold_observed_min": round((min(evals[-1]["wall_s"], t + hold_s) - t) / 60, 2)})
    return out


def plot(results: list[dict], threshold: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for r in results:
        minutes = [w / 60 for w, _ in r["evals"]]
        label = r["run"] + (f" ({r['time_to_threshold_min']:.1f} min)" if r.get("time_to_threshold_s") else "")
        ax.plot(minutes, [s for _, s in r["evals"]], marker="o", markersize=3, label=label)
    ax.axhline(threshold, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("minutes from the launcher's start")
    ax.set_ylabel("eval success rate (20 episodes)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    device = next((r["device"] for r in results if r.get("device")), "")
    ax.set_title(f"{device}: first eval >= {threshold}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--hold-min", type=float, default=5.0)
    args = parser.parse_args()
    results = [seed_result(Path(r), args.threshold, args.hold_min * 60) for r in args.runs]
    times = [r["time_to_threshold_s"] for r in results if r["time_to_threshold_s"] is not None]
    doc = {"threshold": args.threshold, "hold_min": args.hold_min, "seeds": len(results),
           "seeds_reaching_threshold": len(times),
           "median_time_to_threshold_s": statistics.median(times) if len(times) == len(results) else None,
           "runs": results}
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    plot(results, args.threshold, out / "curve.png")
    for r in results:
        print(f"{r['run']}: {r.get('time_to_threshold_min')} min to {args.threshold} "
              f"({r.get('updates_at_threshold')} updates, {r.get('env_steps_at_threshold')} env steps); "
              f"held: {r.get('held')} over {r.get('hold_observed_min')} min observed; {r.get('updates_per_s')} updates/s")
    print(f"median over {len(results)} seeds: {doc['median_time_to_threshold_s']} s")


if __name__ == "__main__":
    main()
