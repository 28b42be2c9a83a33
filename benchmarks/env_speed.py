"""How fast the Franka pick-cube envs step, compared with MuJoCo's raw physics speed.

    python benchmarks/env_speed.py [--json] [--seconds S] [--control-hz HZ]

Measures, in one process and one run:

* ``mj_step_per_s``: raw physics steps per second of the same model and the same kind of
  trajectory (random actions), in C (``mj_step`` with ``nstep``), with only the physics timed.
  Measured before and after the env figures and averaged, so that drift in a shared machine's
  speed hits both.
* ``state_steps_per_s``: ``PandaPickCube-v0`` steps per second through ``gymnasium.make`` (time
  limit wrapper and resets included), random actions.
* ``state_efficiency`` = state_steps_per_s / (mj_step_per_s / substeps_per_env_step): the share of
  the physics-only speed the env keeps after its Python overhead (goal: >= 0.7).
* ``vision_steps_per_s``: ``PandaPickCubeVision-v0``, two 128x128 cameras rendered per step.

Prints a table, then (with ``--json``) one JSON line last.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import envs.franka  # noqa: E402  (registers the ids and picks the GL backend before mujoco loads)
import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402



def random_actions(count: int = 4096) -> np.ndarray:
    """Random actions drawn up front, so that drawing them is not on the clock."""
    return np.random.default_rng(0).uniform(-1.0, 1.0, size=(count, 4)).astype(np.float32)


def raw_mj_steps_per_second(control_hz: float, seconds: float) -> tuple[float, int]:
    """Physics steps/s of the pick-cube model alone, and the substeps per env step.

    Drives the env exactly as ``env_steps_per_second`` does (same random actions, a reset every
    ``max_episode_steps``), so the physics sees the same kind of states and contacts, but only the
    ``mj_step`` calls are on the clock: observation, reward and Python overhead are not.
    """
    env = gym.make("PandaPickCube-v0", control_hz=control_hz)
    pick_cube = env.unwrapped
    model, data = pick_cube.model, pick_cube.data
    episode_steps = env.spec.max_episode_steps
    actions = random_actions()
    env.reset(seed=0)
    physics_steps, elapsed = 0, 0.0
    while elapsed < seconds:
        pick_cube.apply_action(actions[(physics_steps // pick_cube.substeps) % len(actions)])
        start = time.perf_counter()
        mujoco.mj_step(model, data, nstep=pick_cube.substeps)
        elapsed += time.perf_counter() - start
        physics_steps += pick_cube.substeps
        if (physics_steps // pick_cube.substeps) % episode_steps == 0:
            env.reset()
    env.close()
    return physics_steps / elapsed, pick_cube.substeps


def env_steps_per_second(env_id: str, seconds: float, **kwargs) -> float:
    env = gym.make(env_id, **kwargs)
    actions = random_actions()
    env.reset(seed=0)
    env.step(actions[-1])  # first step outside the clock (lazy allocations)
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(actions[steps % len(actions)])
        steps += 1
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON line last")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement (default 3)")
    parser.add_argument("--control-hz", type=float, default=10.0, help="env control rate (default 10)")
    args = parser.parse_args()
    if not args.seconds > 0:
        parser.error("--seconds must be > 0")

    raw_before, substeps = raw_mj_steps_per_second(args.control_hz, args.seconds / 2)
    state = env_steps_per_second("PandaPickCube-v0", args.seconds, control_hz=args.control_hz)
    raw_after, _ = raw_mj_steps_per_second(args.control_hz, args.seconds / 2)
    vision = env_steps_per_second("PandaPickCubeVision-v0", args.seconds, control_hz=args.control_hz)
    raw = (raw_before + raw_after) / 2
    physics_bound = raw / substeps

    result = {
        "state_steps_per_s": round(state, 1),
        "vision_steps_per_s": round(vision, 1),
        "mj_step_per_s": round(raw, 1),
        "substeps_per_env_step": substeps,
        "state_efficiency": round(state / physics_bound, 3),
        "render_backend": os.environ.get("MUJOCO_GL", ""),
        "control_hz": args.control_hz,
    }
    print(f"Franka pick-cube env speed ({args.control_hz:g} Hz control, {substeps} substeps, "
          f"MUJOCO_GL={result['render_backend']}, {args.seconds:g} s per figure)")
    print(f"  raw mj_step/s                {raw:10.0f}  (before {raw_before:.0f}, after {raw_after:.0f})")
    print(f"  physics-only env steps/s     {physics_bound:10.1f}  (= mj_step/s / substeps)")
    print(f"  state env steps/s            {state:10.1f}  (efficiency {result['state_efficiency']:.2f}, goal >= 0.7)")
    print(f"  vision env steps/s           {vision:10.1f}  (2 cameras, 128x128, fast rendering)")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
