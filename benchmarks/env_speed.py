"""How fast the Franka pick-cube envs step, compared with MuJoCo's raw physics speed.

    python benchmarks/env_speed.py [--json] [--seconds S] [--control-hz HZ]

Measures, in one process and one run:

* ``mj_step_per_s``: raw physics steps per second of the same model and the same kind of
  trajectory (random actions), in C (``mj_step`` with ``nstep``), with only the physics timed.
  It alternates with the state-env measurement in half-second rounds, so that a shared machine's
  changing load hits both.
* ``state_steps_per_s``: ``PandaPickCube-v0`` steps per second through ``gymnasium.make`` (time
  limit wrapper and resets included), random actions.
* ``state_efficiency`` = state_steps_per_s / (mj_step_per_s / substeps_per_env_step): the share of
  the physics-only speed the env keeps after its Python overhead (goal: >= 0.7).
* ``vision_steps_per_s``: ``PandaPickCubeVision-v0``, two 128x128 cameras rendered per step
  (``null`` when no headless GL library can be loaded; the reason is printed in the table).

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

import envs.franka  # noqa: E402,F401  (registers the ids and picks the GL backend before mujoco loads)
import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402



def random_actions(count: int = 4096) -> np.ndarray:
    """Random actions drawn up front, so that drawing them is not on the clock."""
    return np.random.default_rng(0).uniform(-1.0, 1.0, size=(count, 4)).astype(np.float32)


class EnvTimer:
    """Steps one env with the fixed random actions; keeps its episode going between ``run`` calls."""

    def __init__(self, env_id: str, **kwargs):
        self.env = gym.make(env_id, **kwargs)
        self.actions = random_actions()
        self.env.reset(seed=0)
        self.env.step(self.actions[-1])  # first step outside the clock (lazy allocations)
        self.env.reset(seed=0)
        self.steps, self.elapsed = 0, 0.0

    def run(self, seconds: float) -> None:
        env, actions = self.env, self.actions
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            _, _, terminated, truncated, _ = env.step(actions[self.steps % len(actions)])
            self.steps += 1
            if terminated or truncated:
                env.reset()
        self.elapsed += time.perf_counter() - start

    @property
    def rate(self) -> float:
        return self.steps / self.elapsed


class RawPhysicsTimer(EnvTimer):
    """The same env, actions and resets as ``EnvTimer``, but only the ``mj_step`` calls are timed.

    So the physics sees the same kind of states and contacts as in the env measurement, while
    observation, reward and Python overhead stay off the clock. ``rate`` is in physics steps/s.
    """

    def run(self, seconds: float) -> None:
        env, pick_cube, actions = self.env, self.env.unwrapped, self.actions
        model, data, substeps = pick_cube.model, pick_cube.data, pick_cube.substeps
        episode_steps = env.spec.max_episode_steps
        physics_time = 0.0
        while physics_time < seconds:
            pick_cube.apply_action(actions[self.steps % len(actions)])
            start = time.perf_counter()
            mujoco.mj_step(model, data, nstep=substeps)
            physics_time += time.perf_counter() - start
            self.steps += 1
            if self.steps % episode_steps == 0:
                env.reset()
        self.elapsed += physics_time

    @property
    def rate(self) -> float:
        return self.steps * self.env.unwrapped.substeps / self.elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON line last")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement (default 3)")
    parser.add_argument("--control-hz", type=float, default=10.0, help="env control rate (default 10)")
    args = parser.parse_args()
    if not args.seconds > 0:
        parser.error("--seconds must be > 0")

    # Physics-only and full-env timing alternate in short rounds, so that a shared machine's
    # changing load affects both figures alike and their ratio stays meaningful.
    raw_timer = RawPhysicsTimer("PandaPickCube-v0", control_hz=args.control_hz)
    state_timer = EnvTimer("PandaPickCube-v0", control_hz=args.control_hz)
    rounds = max(1, round(args.seconds / 0.5))
    for _ in range(rounds):
        raw_timer.run(args.seconds / rounds / 2)
        state_timer.run(args.seconds / rounds)
    raw, state, substeps = raw_timer.rate, state_timer.rate, raw_timer.env.unwrapped.substeps
    raw_timer.env.close()
    state_timer.env.close()
    try:
        vision_timer = EnvTimer("PandaPickCubeVision-v0", control_hz=args.control_hz)
    except RuntimeError as error:  # no headless GL library: still report the state figures
        vision, vision_note = None, f"not measured: {error}"
    else:
        vision_timer.run(args.seconds)
        vision, vision_note = vision_timer.rate, "2 cameras, 128x128, fast rendering"
        vision_timer.env.close()
    physics_bound = raw / substeps

    result = {
        "state_steps_per_s": round(state, 1),
        "vision_steps_per_s": None if vision is None else round(vision, 1),
        "mj_step_per_s": round(raw, 1),
        "substeps_per_env_step": substeps,
        "state_efficiency": round(state / physics_bound, 3),
        "render_backend": os.environ.get("MUJOCO_GL", ""),
        "control_hz": args.control_hz,
    }
    print(f"Franka pick-cube env speed ({args.control_hz:g} Hz control, {substeps} substeps, "
          f"MUJOCO_GL={result['render_backend']}, {args.seconds:g} s per figure)")
    print(f"  raw mj_step/s                {raw:10.0f}  (same trajectories, physics only)")
    print(f"  physics-only env steps/s     {physics_bound:10.1f}  (= mj_step/s / substeps)")
    efficiency = result["state_efficiency"]
    print(f"  state env steps/s            {state:10.1f}  (efficiency {efficiency:.2f}, goal >= 0.7)")
    print(f"  vision env steps/s           {vision or float('nan'):10.1f}  ({vision_note})")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
