"""Issue 19's table from the GPU runs' folders: CALVIN D->D average chain length and success at lengths 1..5 of
each run's saved policy, with the training and evaluation wall times (scripts/calvin_h200.sh writes the folders).

    python scripts/calvin_results.py docs/results --out docs/results/calvin_pi0_table.md

Per run folder docs/results/<config>/ (calvin_sft_pi0, calvin_ppo_pi0_sde, ...): its summary.json (the training run's
wall time and device) and its chain evaluation's parts (eval_part*.json, launch/eval_vla.py's output, each over its
own chains, vla_eval.first_chain on): the parts' chain lengths are pooled (envs/calvin/chains.py's summarise) into
eval_D.json there; the evaluation's wall time is the longest part's (they run side by side). A run without
evaluation parts is left out of the table and named.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from envs.calvin.chains import summarise  # noqa: E402

ROWS = (("pi0", "SFT base", "calvin_sft_pi0"), ("pi0", "+ Flow-SDE", "calvin_ppo_pi0_sde"),
        ("pi0", "+ Flow-Noise", "calvin_ppo_pi0_noise"), ("pi0.5", "SFT base", "calvin_sft_pi05"),
        ("pi0.5", "+ Flow-SDE", "calvin_ppo_pi05_sde"), ("pi0.5", "+ Flow-Noise", "calvin_ppo_pi05_noise"))


def pooled(folder: Path) -> dict | None:
    parts = sorted(folder.glob("eval_part*.json"))
    if not parts:
        return None
    results = [json.loads(p.read_text()) for p in parts]
    starts = sorted((r.get("first_chain", 0), len(r["chains"]["lengths"])) for r in results)
    for (a, n), (b, _) in zip(starts, starts[1:]):
        if a + n != b:
            raise ValueError(f"{folder}: the evaluation parts' chains overlap or leave a gap at chain {a + n}")
    lengths = [n for r in sorted(results, key=lambda r: r.get("first_chain", 0)) for n in r["chains"]["lengths"]]
    out = {**summarise(lengths), "lengths": lengths, "parts": len(parts),
           "eval_wall_s": max(r["wall_s"] for r in results), "device": results[0].get("device")}
    (folder / "eval_D.json").write_text(json.dumps(out, indent=1))
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    lines = ["| policy | run | avg len | 1 | 2 | 3 | 4 | 5 | chains | train wall (min) | eval wall (min) | device |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    missing = []
    for policy, run, config in ROWS:
        folder = args.results / config
        ev = pooled(folder) if folder.is_dir() else None
        if ev is None:
            missing.append(config)
            continue
        summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
        train = summary.get("wall_s")
        lines.append(f"| {policy} | {run} | {ev['avg_len']:.2f} | "
                     + " | ".join(f"{ev[f'success_{k}']:.3f}" for k in range(1, 6))
                     + f" | {ev['chains']} | {'' if train is None else f'{train / 60:.1f}'} | "
                       f"{ev['eval_wall_s'] / 60:.1f} | {ev['device']} |")
    if missing:
        lines.append(f"\nNot evaluated yet: {', '.join(missing)}.")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
