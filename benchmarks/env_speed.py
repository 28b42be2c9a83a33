"""How fast the envs step: the Franka pick-cube envs against MuJoCo's raw physics speed, and (with
``--maniskill``) ManiSkill 3 through the project's vector env against ManiSkill's own bare loop.

    python benchmarks/env_speed.py [--json] [--seconds S] [--control-hz HZ]
    python benchmarks/env_speed.py --maniskill [--num-envs 64 256 1024] [--obs-modes state rgb]
                                   [--task PickCube-v1] [--sim-backend auto|cpu|gpu] [--json] [--out F]

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

With ``--maniskill`` (needs the `maniskill` extra), for each observation mode and env count, in one
process and in alternating rounds (so that a shared machine's load hits both alike):

* ``bare_steps_per_s``: ManiSkill's own loop: the task's env (``gym.make(...).unwrapped``, no
  wrappers; one env of ``num_envs`` on the GPU, ``num_envs`` envs of one on the CPU, where ManiSkill
  holds one env per scene) stepped with pre-drawn random actions (torch, on the sim device), finished
  envs reset as ManiSkill's own vector wrapper does (partial reset of the done rows, unseeded);
  observations stay where ManiSkill leaves them.
* ``zarl_steps_per_s``: the same task, obs mode, controller and actions through
  ``envs.maniskill.ManiSkillVectorEnv`` as the actors use it: actions in [-1, 1], seeded auto-reset,
  final observations, episode statistics and observations copied to the host as numpy arrays.
* ``ratio`` = zarl / bare (goal >= 0.9). Rates are env steps per second (num_envs x vector steps).
  ``cpu_ratio``: the same per CPU-second of this process (all its threads, the renderer's included),
  which holds still when other programs take a changing share of a shared machine's cores.
  RGB: one 224x224 camera (the task's ``base_camera``).

With ``--calvin`` (needs the `calvin` extra): ``CalvinPlayTable-v0`` (scene D) stepped with random
actions in [-1, 1], with both cameras (200x200 static, 84x84 gripper) and without (physics, inverse
kinematics and the scene state only), in one process and in N processes at once (one env each,
started together; the rate is their sum). ``--renderer egl`` for the GPU machine's eglRenderer plugin.

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

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

if "--maniskill" not in sys.argv and "--calvin" not in sys.argv:  # the Franka envs and mujoco only when they are measured
    import envs.franka  # noqa: E402,F401  (registers the ids and picks the GL backend before mujoco loads)
    import mujoco  # noqa: E402



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


class BareManiSkillLoop:
    """ManiSkill's own loop: the unwrapped task env(s), random actions, done rows reset in place."""

    def __init__(self, task: str, num_envs: int, obs_mode: str, sim_backend: str, camera_size: int | None):
        import torch

        from envs.maniskill.vector import DEFAULT_CONTROL_MODE
        kwargs = dict(obs_mode=obs_mode, control_mode=DEFAULT_CONTROL_MODE, reward_mode="dense",
                      sim_backend="physx_cuda" if sim_backend == "gpu" else "physx_cpu")
        if camera_size:
            kwargs["sensor_configs"] = {"width": camera_size, "height": camera_size}
        if obs_mode == "state":
            kwargs["render_mode"] = None
        per_env = num_envs if sim_backend == "gpu" else 1
        self.envs = [gym.make(task, num_envs=per_env, **kwargs).unwrapped
                     for _ in range(1 if sim_backend == "gpu" else num_envs)]
        self.num_envs = num_envs
        self.max_steps = gym.spec(task).max_episode_steps
        device = self.envs[0].device
        generator = torch.Generator().manual_seed(0)
        self.actions = (torch.rand((256, per_env, *self.envs[0].single_action_space.shape), generator=generator)
                        * 2 - 1).to(device)
        for env in self.envs:
            env.reset(seed=0)
        self.steps, self.elapsed, self.t, self.cpu = 0, 0.0, 0, 0.0

    def run(self, seconds: float) -> None:
        import torch
        cpu0 = time.process_time()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            action = self.actions[self.t % len(self.actions)]
            for env in self.envs:
                _, _, terminated, _, _ = env.step(action)
                done = terminated | (env.elapsed_steps >= self.max_steps)
                if bool(done.any()):
                    if len(self.envs) == 1 and env.num_envs > 1:
                        env.reset(options={"env_idx": torch.nonzero(done).flatten()})
                    else:
                        env.reset()
            self.t += 1
            self.steps += self.num_envs
        if self.envs[0].device.type == "cuda":
            torch.cuda.synchronize()
        self.elapsed += time.perf_counter() - start
        self.cpu += time.process_time() - cpu0

    @property
    def rate(self) -> float:
        return self.steps / self.elapsed

    @property
    def cpu_rate(self) -> float:
        return self.steps / max(self.cpu, 1e-9)

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


class ZarlManiSkillLoop(BareManiSkillLoop):
    """The same through envs.maniskill.ManiSkillVectorEnv (what the actors step)."""

    def __init__(self, task: str, num_envs: int, obs_mode: str, sim_backend: str, camera_size: int | None):
        from envs.maniskill import ManiSkillVectorEnv
        self.env = ManiSkillVectorEnv(f"ManiSkill/{task}", num_envs, obs_mode=obs_mode, sim_backend=sim_backend,
                                      camera_size=camera_size)
        rng = np.random.default_rng(0)
        self.actions = rng.uniform(-1, 1, (256, num_envs, *self.env.single_action_space.shape)).astype(np.float32)
        self.env.reset(seed=0)
        self.num_envs = num_envs
        self.steps, self.elapsed, self.t, self.cpu = 0, 0.0, 0, 0.0

    def run(self, seconds: float) -> None:
        cpu0 = time.process_time()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.env.step(self.actions[self.t % len(self.actions)])
            self.t += 1
            self.steps += self.num_envs
        self.elapsed += time.perf_counter() - start
        self.cpu += time.process_time() - cpu0

    def close(self) -> None:
        self.env.close()


def maniskill_main(args) -> int:
    import platform

    import torch

    import envs.maniskill  # noqa: F401  (registers the ids; fails clearly without the extra)
    backend = args.sim_backend
    if backend == "auto":
        backend = "gpu" if torch.cuda.is_available() else "cpu"
    counts = args.num_envs or ([64, 256, 1024] if backend == "gpu" else [1, 2, 4])
    device = torch.cuda.get_device_name(0) if backend == "gpu" else f"{platform.processor() or platform.machine()} " \
        f"({os.cpu_count()} CPUs)"
    figures = []
    print(f"ManiSkill {args.task} env steps/s, sim {backend} on {device}: project vector env vs ManiSkill's "
          f"bare loop ({args.seconds:g} s each, alternating rounds)")
    print(f"  {'obs':<6}{'envs':>6}{'bare':>12}{'zarl':>12}{'ratio':>8}{'per CPU-s':>11}")
    for mode in args.obs_modes:
        camera = args.camera_size if mode == "rgb" else None
        for n in counts:
            bare = BareManiSkillLoop(args.task, n, mode, backend, camera)
            zarl = ZarlManiSkillLoop(args.task, n, mode, backend, camera)
            bare.run(min(0.5, args.seconds / 4))  # warm-up, off the clock
            zarl.run(min(0.5, args.seconds / 4))
            for side in (bare, zarl):
                side.steps, side.elapsed, side.cpu = 0, 0.0, 0.0
            rounds = max(1, round(args.seconds / 1.0))
            for r in range(rounds):
                first, second = (bare, zarl) if r % 2 == 0 else (zarl, bare)
                first.run(args.seconds / rounds)
                second.run(args.seconds / rounds)
            row = {"obs_mode": mode, "num_envs": n, "camera": camera, "bare_steps_per_s": round(bare.rate, 1),
                   "zarl_steps_per_s": round(zarl.rate, 1), "ratio": round(zarl.rate / bare.rate, 3),
                   "cpu_ratio": round(zarl.cpu_rate / bare.cpu_rate, 3)}
            figures.append(row)
            print(f"  {mode:<6}{n:>6}{bare.rate:>12.1f}{zarl.rate:>12.1f}{row['ratio']:>8.2f}{row['cpu_ratio']:>11.2f}")
            bare.close()
            zarl.close()
    import mani_skill
    import sapien
    result = {"maniskill": {"task": args.task, "sim_backend": backend, "device": device,
                            "mani_skill": mani_skill.__version__, "sapien": sapien.__version__,
                            "control_mode": "pd_ee_delta_pose", "seconds": args.seconds, "figures": figures}}
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result))
    return 0


def _calvin_worker(args: tuple) -> tuple[int, float]:
    """Steps of one play-table env in `seconds` (after a warm-up step), from its own process."""
    seconds, cameras, renderer, seed = args
    from envs.calvin.play_table import CalvinPlayTableEnv
    env = CalvinPlayTableEnv(scene="D", cameras=cameras, renderer=renderer)
    actions = np.random.default_rng(seed).uniform(-1, 1, (512, 7)).astype(np.float32)
    env.reset(seed=seed)
    env.step(actions[0])
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions[steps % len(actions)])
        steps += 1
        if steps % 360 == 0:  # CALVIN's subtask length: reset as an evaluation would
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps, elapsed


def calvin_main(args) -> int:
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    rows = []
    for cameras in (True, False):
        for n in args.num_envs or [1, 2]:
            with ctx.Pool(n) as pool:
                results = pool.map(_calvin_worker, [(args.seconds, cameras, args.renderer, i) for i in range(n)])
            rate = sum(steps / elapsed for steps, elapsed in results)
            rows.append({"cameras": cameras, "processes": n, "steps_per_s": rate, "per_process": rate / n})
            print(f"CalvinPlayTable-v0 cameras={cameras!s:5s} processes={n}: {rate:8.1f} env steps/s "
                  f"({rate / n:.1f} per process)", flush=True)
    out = {"env": "CalvinPlayTable-v0", "scene": "D", "renderer": args.renderer, "cpu_count": os.cpu_count(),
           "rows": rows}
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if args.json:
        print(json.dumps(out))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON line last")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement (default 3)")
    parser.add_argument("--control-hz", type=float, default=10.0, help="env control rate (default 10)")
    parser.add_argument("--maniskill", action="store_true", help="measure ManiSkill instead of the Franka envs")
    parser.add_argument("--calvin", action="store_true", help="measure the CALVIN-style play table (pybullet)")
    parser.add_argument("--renderer", default="tiny", choices=["tiny", "egl"], help="play table renderer (--calvin)")
    parser.add_argument("--task", default="PickCube-v1", help="ManiSkill task (default PickCube-v1)")
    parser.add_argument("--num-envs", type=int, nargs="+", help="env counts (default 64 256 1024 on a GPU, 1 2 4 on the CPU)")
    parser.add_argument("--obs-modes", nargs="+", default=["state", "rgb"], choices=["state", "rgb"])
    parser.add_argument("--camera-size", type=int, default=224, help="RGB camera side in pixels (default 224)")
    parser.add_argument("--sim-backend", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--out", help="also write the JSON result to this file (--maniskill)")
    args = parser.parse_args()
    if not args.seconds > 0:
        parser.error("--seconds must be > 0")
    if args.calvin:
        return calvin_main(args)
    if args.maniskill:
        return maniskill_main(args)

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
