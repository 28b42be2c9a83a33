"""The training success curve of a PPO run on ZarlGSPutCubeOnPlate-v0 (issue 20, scripts/gs_gpu.sh's `curve` part):

    python scripts/gs_results.py RUN_DIR --out docs/results/gs_ppo_pi05_gaussians [--title TEXT]

From RUN_DIR/metrics.jsonl: the rows with the monitor's `env/success_once` (the success of the last 100 finished
training episodes, all actors together, acting with the Flow-SDE sampler) against env steps and wall minutes. Writes
into --out: curve.json (those points, the first and last success and the best), curve.png, and copies of the run's
summary.json and config.yaml.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

KEY = "env/success_once"


def curve(run_dir: Path) -> dict:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no metrics.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    points = [{"env_steps": int(r.get("env_steps", 0)), "minutes": round(r.get("wall_s", 0.0) / 60, 2),
               "success": float(r[KEY])} for r in rows if KEY in r]
    if not points:
        raise ValueError(f"{path} has no {KEY} row yet (no training episode finished)")
    return {"run": str(run_dir), "metric": KEY, "points": points, "first": points[0]["success"],
            "last": points[-1]["success"], "best": max(p["success"] for p in points)}


def plot(result: dict, out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in ((axes[0], "env_steps", "env steps"), (axes[1], "minutes", "wall-clock minutes")):
        ax.plot([p[key] for p in result["points"]], [p["success"] for p in result["points"]], color="tab:green")
        ax.set_xlabel(label)
        ax.set_ylabel("training success (last 100 episodes)")
        ax.set_ylim(-0.02, 1.02)
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
    args = parser.parse_args(argv)
    try:
        result = curve(args.run_dir)
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
