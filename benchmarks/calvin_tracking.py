"""The play table's controller: how closely a step's tcp motion follows the motion its action asks for
(envs/calvin/tracking.py: a seeded walk through waypoints in free space above the desk, without cameras).

    python benchmarks/calvin_tracking.py [--waypoints 40] [--scene D] [--json] [--out F.json]

Prints the mean distance between the asked and the achieved tcp position after a step, its 95th
percentile, the achieved share of the asked motion (``ratio``: 1 is exact) and the orientation error.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from envs.calvin.play_table import CalvinPlayTableEnv
from envs.calvin.tracking import tracking_walk

FIGURES = ("steps", "asked_mm", "error_mm", "error_p95_mm", "ratio", "ratio_p5", "orn_error_mrad")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--waypoints", type=int, default=40)
    ap.add_argument("--scene", default="D")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--machine", default="2-core CPU VM", help="recorded with the figures")
    args = ap.parse_args()
    env = CalvinPlayTableEnv(scene=args.scene, cameras=False)
    try:
        result = tracking_walk(env, args.waypoints)
    finally:
        env.close()
    out = {"scene": args.scene, "waypoints": args.waypoints, **{k: result[k] for k in FIGURES},
           "machine": args.machine}
    for k in FIGURES:
        print(f"{k:16s} {out[k]:.3f}" if isinstance(out[k], float) else f"{k:16s} {out[k]}")
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
