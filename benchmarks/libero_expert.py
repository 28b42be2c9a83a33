"""LIBERO-spatial's scripted expert (envs/libero/expert.py): success per task over seeded trials, without cameras
(the expert reads privileged state), and the env's steps per second with and without its two cameras.

    .venv-libero/bin/python benchmarks/libero_expert.py [--trials 5] [--noise 0.0] [--camera-steps 40] [--out F.json]

Trial t of task k starts from init state t of the task's 50 when --trials <= 50 is given with --fixed, else from
a seeded draw (``generator(seed, "libero_expert", k, t)``). ``--noise`` adds Gaussian action noise of that std
(the world-model data's failures). The camera timing steps one env with agent-view and wrist cameras at
--camera-size px through the expert's first --camera-steps steps of task 0.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from core import seeding  # noqa: E402
from envs.libero.config import INIT_STATES_PER_TASK, NUM_TASKS  # noqa: E402
from envs.libero.demos import run_episode  # noqa: E402
from envs.libero.env import LiberoSpatialEnv  # noqa: E402
from envs.libero.expert import ScriptedExpert  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--tasks", default="all", help="'all' or comma-separated task indices")
    ap.add_argument("--fixed", action="store_true", help="trial t uses init state t (else a seeded draw)")
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--camera-steps", type=int, default=40)
    ap.add_argument("--camera-size", type=int, default=128)
    ap.add_argument("--out", default=None)
    ap.add_argument("--machine", default="2-core CPU VM", help="recorded with the figures")
    args = ap.parse_args()
    tasks = range(NUM_TASKS) if args.tasks == "all" else [int(t) for t in args.tasks.split(",")]
    env = LiberoSpatialEnv(cameras=False, max_scenes=1)
    expert = ScriptedExpert()
    per_task, steps, step_s, t0 = {}, 0, 0.0, time.time()
    for k in tasks:
        wins, lengths = 0, []
        for t in range(args.trials):
            rng = seeding.generator(args.seed, "libero_expert", k, t)
            init = t if args.fixed else int(rng.integers(INIT_STATES_PER_TASK))
            start = time.perf_counter()
            ep = run_episode(env, expert, rng, options={"task": k, "init_state": init}, noise=args.noise,
                             record=False)
            step_s += time.perf_counter() - start
            steps += ep["steps"]
            wins += ep["success"]
            lengths.append(ep["steps"])
        per_task[k] = {"success": wins / args.trials, "mean_steps": sum(lengths) / len(lengths)}
        print(f"task {k}: success {per_task[k]['success']:.2f}, {per_task[k]['mean_steps']:.0f} steps", flush=True)
    env.close()
    timing = {"steps_per_s_no_cameras": steps / step_s}  # resets and settling included
    if args.camera_steps:
        env = LiberoSpatialEnv(camera_size=args.camera_size, max_scenes=1)
        env.reset(options={"task": 0, "init_state": 0})
        expert.start(env.privileged_state())
        start = time.perf_counter()
        for _ in range(args.camera_steps):
            env.step(expert.act(env.privileged_state()))
        timing[f"steps_per_s_cameras_{args.camera_size}px"] = args.camera_steps / (time.perf_counter() - start)
        env.close()
    out = {"trials_per_task": args.trials, "noise": args.noise, "fixed_init_states": args.fixed,
           "per_task": per_task, "mean_success": sum(v["success"] for v in per_task.values()) / len(per_task),
           **timing, "seconds": time.time() - t0, "machine": args.machine}
    print(json.dumps({k: v for k, v in out.items() if k != "per_task"}))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
