"""The play table's scripted experts: success per subtask over seeded trials and the average completed
length over evaluation chains (envs/calvin/chains.py), on one scene, without cameras (the experts read
privileged state; pixels would only cost time).

    python benchmarks/calvin_expert.py [--scene D] [--trials 10] [--chains 100] [--out F.json]

Trial t of subtask k starts from ``start_for(task, generator(seed, "calvin_chains", 10**6 + k, t))``;
the chains are the protocol's first ``--chains``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from core import seeding
from envs.calvin.chains import evaluate, make_chains, run_subtask, start_for
from envs.calvin.expert import ScriptedExpert
from envs.calvin.play_table import CalvinPlayTableEnv
from envs.calvin.tasks import TASKS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scene", default="D")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--chains", type=int, default=100)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    env = CalvinPlayTableEnv(scene=args.scene, cameras=False)
    expert = ScriptedExpert(env)
    t0 = time.time()
    per_task = {}
    for k, task in enumerate(sorted(TASKS) if args.trials else []):
        wins = 0
        for t in range(args.trials):
            rng = seeding.generator(0, "calvin_chains", 10 ** 6 + k, t)
            spec, prefix = start_for(task, rng)
            ok, _ = run_subtask(env, expert, task, spec, prefix, seed=int(rng.integers(2 ** 63)))
            wins += ok
        per_task[task] = wins / args.trials
        print(f"{task:28s} {per_task[task]:.2f}", flush=True)
    subtask_s = time.time() - t0
    chains = evaluate(env, make_chains(args.chains), lambda obs, task: expert.act(), expert.start) \
        if args.chains else {}
    out = {"scene": args.scene, "trials_per_subtask": args.trials, "subtask_success": per_task,
           "subtasks_at_least_0.9": sum(v >= 0.9 for v in per_task.values()),
           "mean_subtask_success": sum(per_task.values()) / max(len(per_task), 1), "chains": chains,
           "seconds": {"subtasks": subtask_s, "total": time.time() - t0}, "machine": "2-core CPU VM"}
    print(json.dumps({k: v for k, v in out.items() if k != "subtask_success"}))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
