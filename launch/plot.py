"""Plot a run's evaluation curve: `python -m launch.plot RUN_DIR [OUT.png]`.

Eval success rate (when the env reports success) and eval return against
wall-clock minutes and env steps, from RUN_DIR/metrics.jsonl.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def load_evals(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "eval/return_mean" in r]


def plot_run(run_dir: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    evals = load_evals(run_dir)
    if not evals:
        raise ValueError(f"{run_dir}/metrics.jsonl has no evaluation rows yet")
    minutes = [r["wall_s"] / 60 for r in evals]
    has_success = any("eval/success_rate" in r for r in evals)
    fig, axes = plt.subplots(1, 2 if has_success else 1, figsize=(10 if has_success else 5, 3.6), squeeze=False)
    ax = axes[0][0]
    ax.plot(minutes, [r["eval/return_mean"] for r in evals], marker="o")
    ax.set_xlabel("wall-clock minutes")
    ax.set_ylabel("eval return (mean)")
    ax.grid(alpha=0.3)
    if has_success:
        ax = axes[0][1]
        ax.plot(minutes, [r.get("eval/success_rate", 0.0) for r in evals], marker="o", color="tab:green")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("wall-clock minutes")
        ax.set_ylabel("eval success rate")
        ax.grid(alpha=0.3)
        top = ax.secondary_xaxis("top", functions=(lambda m: m, lambda m: m))
        top.set_xticks(minutes[:: max(1, len(minutes) // 4)])
        top.set_xticklabels([f"{r['env_steps'] / 1000:.0f}k" for r in evals][:: max(1, len(minutes) // 4)])
        top.set_xlabel("env steps")
    fig.suptitle(title or run_dir.name)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(plot_run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
