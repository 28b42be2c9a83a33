"""The training curve of a run (issue 20, scripts/gs_gpu.sh's `curve` part; scripts/maniskill_vla_h200.sh's runs):

    python scripts/gs_results.py RUN_DIR --out docs/results/gs_ppo_pi05_gaussians [--title TEXT]
        [--metric KEY] [--x env_steps|updates]

From RUN_DIR/metrics.jsonl: the rows with the metric KEY, by default the monitor's `env/success_once` (the success
of the last 100 finished training episodes, all actors together, acting with the training sampler), against --x
(env steps; an SFT run, whose rows have no env steps: `--metric sft/ce --x updates`) and wall minutes. Writes into
--out: curve.json (those points, the first and last value and the best: the highest, or for a loss (`--lower`) the
lowest), curve.png, and copies of the run's summary.json and config.yaml.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

KEY = "env/success_once"


def curve(run_dir: Path, key: str = KEY, x: str = "env_steps", lower: bool = False) -> dict:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no metrics.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    points = [{x: int(r.get(x, 0)), "minutes": round(r.get("wall_s", 0.0) / 60, 2),
               "value": float(r[key])} for r in rows if key in r]
    if not points:
        raise ValueError(f"{path} has no {key} row yet" + (" (no training episode finished)" if key == KEY else ""))
    best = min if lower else max
    return {"run": str(run_dir), "metric": key, "x": x, "points": points, "first": points[0]["value"],
            "last": points[-1]["value"], "best": best(p["value"] for p in points)}


def plot(result: dict, out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    x = result["x"]
    for ax, key, label in ((axes[0], x, x.replace("_", " ")), (axes[1], "minutes", "wall-clock minutes")):
        ax.plot([p[key] for p in result["points"]], [p["value"] for p in result["points"]], color="tab:green")
        ax.set_xlabel(label)
        if result["metric"] == KEY:
            ax.set_ylabel("training success (last 100 episodes)")
            ax.set_ylim(-0.02, 1.02)
        else:
            ax.set_ylabel(result["metric"])
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path = out / "curve.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="pi0.5 + Flow-SDE PPO on ZarlGSPutCubeOnPlate-v0")
    parser.add_argument("--metric", default=KEY)
    parser.add_argument("--x", default="env_steps", choices=("env_steps", "updates"))
    parser.add_argument("--lower", action="store_true", help="the metric is a loss: its best is the lowest")
    args = parser.parse_args(argv)
    try:
        result = curve(args.run_dir, args.metric, args.x, args.lower)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curve.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out, args.title)
    for name in ("summary.json", "config.yaml"):
        if (args.run_dir / name).is_file():
            shutil.copy(args.run_dir / name, args.out / name)
    print(json.dumps({k: result[k] for k in ("first", "last", "best")} | {"points": len(result["points"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
