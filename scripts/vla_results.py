"""The GPU scripts' results tables from their runs' folders (scripts/calvin_h200.sh, scripts/maniskill_vla_h200.sh
write the folders docs/results/<config>/):

    python scripts/vla_results.py docs/results --table calvin --out docs/results/calvin_pi0_table.md
    python scripts/vla_results.py docs/results --table maniskill_vla --out docs/results/maniskill_vla_table.md

Each run folder holds its summary.json (the training run's wall time, env steps and device) and its evaluation
parts (eval_part*.json, launch/eval_vla.py's output, each over its own share of the episodes; they run side by side,
so the evaluation's wall time is the longest part's). A run without evaluation parts is left out and named.

- calvin (issue 19): CALVIN D->D average chain length and success at lengths 1..5 of each run's saved policy; the
  parts' chains (vla_eval.first_chain) are pooled (envs/calvin/chains.py's summarise) into eval_D.json there.
- maniskill_vla (issue 17, seed 001's table): success of each run's saved policy on ZarlPutOnPlate-v1's `train`
  split and the three OOD splits (vision, semantic, execution; a part per split), their OOD mean, the episodes per
  split, and the training's wall time and env steps (for PPO / GRPO: of the RL alone; the SFT base's: its SFT);
  pooled into eval_splits.json there.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

CALVIN_ROWS = (("pi0", "SFT base", "calvin_sft_pi0"), ("pi0", "+ Flow-SDE", "calvin_ppo_pi0_sde"),
               ("pi0", "+ Flow-Noise", "calvin_ppo_pi0_noise"), ("pi0.5", "SFT base", "calvin_sft_pi05"),
               ("pi0.5", "+ Flow-SDE", "calvin_ppo_pi05_sde"), ("pi0.5", "+ Flow-Noise", "calvin_ppo_pi05_noise"))
MANISKILL_ROWS = (("OpenVLA", "SFT base", "maniskill_sft_openvla"), ("OpenVLA", "+ PPO", "maniskill_ppo_openvla"),
                  ("OpenVLA", "+ GRPO", "maniskill_grpo_openvla"), ("OpenVLA-OFT", "SFT base", "maniskill_sft_oft"),
                  ("OpenVLA-OFT", "+ PPO", "maniskill_ppo_oft"), ("OpenVLA-OFT", "+ GRPO", "maniskill_grpo_oft"))
OOD = ("vision", "semantic", "execution")


def eval_parts(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("eval_part*.json"))]


def pooled_chains(folder: Path) -> dict | None:
    from envs.calvin.chains import summarise

    results = eval_parts(folder)
    if not results:
        return None
    starts = sorted((r.get("first_chain", 0), len(r["chains"]["lengths"])) for r in results)
    for (a, n), (b, _) in zip(starts, starts[1:]):
        if a + n != b:
            raise ValueError(f"{folder}: the evaluation parts' chains overlap or leave a gap at chain {a + n}")
    lengths = [n for r in sorted(results, key=lambda r: r.get("first_chain", 0)) for n in r["chains"]["lengths"]]
    out = {**summarise(lengths), "lengths": lengths, "parts": len(results),
           "eval_wall_s": max(r["wall_s"] for r in results), "device": results[0].get("device")}
    (folder / "eval_D.json").write_text(json.dumps(out, indent=1))
    return out


def pooled_splits(folder: Path) -> dict | None:
    results = eval_parts(folder)
    if not results:
        return None
    splits: dict[str, dict] = {}
    for r in results:
        for split, s in r["splits"].items():
            if split in splits:
                raise ValueError(f"{folder}: split {split} is in two evaluation parts")
            splits[split] = s
    out = {"success_rate": {k: s["success_rate"] for k, s in splits.items()},
           "episodes": {k: s["episodes"] for k, s in splits.items()}, "parts": len(results),
           "env_steps": sum(s["env_steps"] for s in splits.values()),
           "eval_wall_s": max(r["wall_s"] for r in results), "device": results[0].get("device"),
           "greedy": results[0].get("greedy"), "merged_lora": results[0].get("merged_lora")}
    (folder / "eval_splits.json").write_text(json.dumps(out, indent=1))
    return out


def minutes(seconds) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f}"


def calvin_line(policy: str, run: str, ev: dict, summary: dict) -> str:
    return (f"| {policy} | {run} | {ev['avg_len']:.2f} | "
            + " | ".join(f"{ev[f'success_{k}']:.3f}" for k in range(1, 6))
            + f" | {ev['chains']} | {minutes(summary.get('wall_s'))} | {minutes(ev['eval_wall_s'])} | {ev['device']} |")


def maniskill_line(policy: str, run: str, ev: dict, summary: dict) -> str:
    rate = ev["success_rate"]
    cells = [f"{100 * rate[s]:.1f}" if s in rate else "" for s in ("train", *OOD)]
    ood = [rate[s] for s in OOD if s in rate]
    cells.append(f"{100 * sum(ood) / len(ood):.1f}" if ood else "")
    # RL runs count env steps; an SFT run's are its demonstrations' frames (the expert's env steps)
    steps = summary.get("env_steps", summary.get("frames"))
    cells += ["/".join(map(str, sorted(set(ev["episodes"].values())))), minutes(summary.get("wall_s")),
              "" if steps is None else f"{steps:,}", minutes(ev["eval_wall_s"]), str(ev["device"])]
    return f"| {policy} | {run} | " + " | ".join(cells) + " |"


TABLES = {
    "calvin": (CALVIN_ROWS, pooled_chains, calvin_line,
               ["| policy | run | avg len | 1 | 2 | 3 | 4 | 5 | chains | train wall (min) | eval wall (min) | device |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]),
    "maniskill_vla": (MANISKILL_ROWS, pooled_splits, maniskill_line,
                      ["| policy | run | train (%) | vision (%) | semantic (%) | execution (%) | OOD mean (%) | "
                       "episodes per split | train wall (min) | train env steps | eval wall (min) | device |",
                       "|---|---|---|---|---|---|---|---|---|---|---|---|"]),
}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--table", choices=sorted(TABLES), required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    rows, pooled, line, lines = TABLES[args.table]
    lines = list(lines)
    missing = []
    for policy, run, config in rows:
        folder = args.results / config
        ev = pooled(folder) if folder.is_dir() else None
        if ev is None:
            missing.append(config)
            continue
        summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
        lines.append(line(policy, run, ev, summary))
    if missing:
        lines.append(f"\nNot evaluated yet: {', '.join(missing)}.")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
