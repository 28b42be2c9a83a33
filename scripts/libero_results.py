"""Issue 21's LIBERO-spatial table: each policy's launch/eval_vla.py parts (<dir>/*.libero*.json, tasks split over
parts) pooled into <dir>/libero_spatial.json (success per task, episodes, env steps, the parts' wall times) and a
markdown table of all of them, one column per policy.

    python scripts/libero_results.py docs/results/libero_sft_oft docs/results/libero_grpo_worldmodel \
        --out docs/results/libero_spatial_table.md
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TASKS = ("between the plate and the ramekin", "next to the ramekin", "from table center", "on the cookie box",
         "in the top drawer of the wooden cabinet", "on the ramekin", "next to the cookie box", "on the stove",
         "next to the plate", "on the wooden cabinet")


def pool(folder: Path) -> dict:
    """The folder's evaluation parts as one summary; a task evaluated in two parts is an error."""
    parts = sorted(p for p in folder.glob("*.libero*.json") if p.name != "libero_spatial.json")
    if not parts:
        raise FileNotFoundError(f"no LIBERO evaluation (*.libero*.json, launch/eval_vla.py) in {folder}")
    tasks: dict[str, dict] = {}
    wall, steps, checkpoints, devices = 0.0, 0, set(), set()
    for path in parts:
        part = json.loads(path.read_text())
        for task, row in part["tasks"].items():
            if task in tasks:
                raise ValueError(f"task {task} is evaluated twice in {folder} ({path.name} and an earlier part)")
            tasks[task] = row
        wall += part["wall_s"]
        steps += part["env_steps"]
        checkpoints.add(part["checkpoint"])
        devices.add(part["device"])
    episodes = sum(r["episodes"] for r in tasks.values())
    successes = sum(r["successes"] for r in tasks.values())
    return {"tasks": dict(sorted(tasks.items(), key=lambda kv: int(kv[0]))), "episodes": episodes,
            "successes": successes, "success_rate": successes / episodes, "env_steps": steps,
            "wall_s": wall, "parts": [p.name for p in parts], "checkpoints": sorted(checkpoints),
            "devices": sorted(devices)}


def table(pooled: dict[str, dict]) -> str:
    names = list(pooled)
    lines = ["| task | the bowl ... | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for k, where in enumerate(TASKS):
        cells = []
        for name in names:
            row = pooled[name]["tasks"].get(str(k))
            cells.append(f"{row['success_rate']:.2f} ({row['episodes']})" if row else "-")
        lines.append(f"| {k} | {where} | " + " | ".join(cells) + " |")
    lines.append("| all | | " + " | ".join(f"**{pooled[n]['success_rate']:.3f}** ({pooled[n]['episodes']})"
                                            for n in names) + " |")
    lines.append("| wall time | | " + " | ".join(f"{pooled[n]['wall_s'] / 60:.1f} min" for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    pooled = {}
    for folder in args.folders:
        pooled[folder.name] = pool(folder)
        (folder / "libero_spatial.json").write_text(json.dumps(pooled[folder.name], indent=2) + "\n")
    text = ("Success in the real LIBERO-spatial simulator (episodes per task in brackets: one per LIBERO init "
            "state), launch/eval_vla.py, greedy decoding; wall time: the evaluations' own.\n\n" + table(pooled))
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
