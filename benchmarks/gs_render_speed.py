"""How fast ZarlGSPutCubeOnPlate-v0 renders and steps: the Gaussian renderer's back ends against each
other and the env with its images against its physics alone.

    python benchmarks/gs_render_speed.py --assets DIR [--num-envs 1 8 32] [--size 224]
                                          [--backends torch gsplat] [--env-steps 20] [--device auto] [--json] [--out F]

Measures, in one process:

* ``renders_per_s`` per back end and batch size B: scene images per second, each the task's camera
  seeing one sub-scene's posed parts (random poses near the capture's) composited over the cached
  background, as the env renders every step; torch and gsplat measured in alternating rounds, so that
  a shared machine's changing load hits both. ``gsplat_vs_torch`` = gsplat's rate / torch's.
* ``env_steps_per_s``: the task through the project's vector env (``envs.maniskill.ManiSkillVectorEnv``,
  random actions in [-1, 1], auto-reset) with Gaussian-rendered RGB observations (``gaussian_backend`` =
  the fastest back end measured), and ``state_steps_per_s`` with state observations only (physics and
  bookkeeping); ``render_share`` = 1 - rgb/state, the part of a step spent rendering.

``--assets`` is a directory from ``python -m launch.build_gs_assets``; a back end that cannot run here
(gsplat without CUDA or without its build) is reported with its reason, not measured.
Prints a table, then (with ``--json``) one JSON line last.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.harness import describe_machine, machine_info  # noqa: E402


def _rate(fn, seconds: float) -> float:
    fn()  # warm up (gsplat's first call, caches)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def render_rates(assets: str, sizes: list[int], batches: list[int], backends: list[str], device: str,
                 seconds: float, rounds: int) -> tuple[list[dict], dict]:
    from envs.gaussians.assets import load_assets
    from envs.gaussians.rasterize_gsplat import GsplatUnavailable, load_gsplat
    from envs.gaussians.scene import GaussianScene
    from envs.maniskill.put_cube_on_plate import BACKGROUND_COLOUR, observation_camera

    _, parts = load_assets(assets)
    moving = {n: c for n, (e, c) in parts.items() if e.kind != "background"}
    background = next((c for e, c in parts.values() if e.kind == "background"), None)
    unavailable = {}
    if "gsplat" in backends:
        try:
            load_gsplat()
        except GsplatUnavailable as e:
            unavailable["gsplat"] = str(e)
    usable = [b for b in backends if b not in unavailable]
    scenes = {b: GaussianScene(moving, background, BACKGROUND_COLOUR, backend=b, device=device) for b in usable}
    g = torch.Generator().manual_seed(0)
    rows = []
    for size in sizes:
        camera = observation_camera(size)
        for batch in batches:
            # poses: every part at the identity plus a few centimetres and a small turn (the capture pose is
            # the identity for the background only; this is a load test, not a picture)
            p = 0.03 * torch.randn(batch, len(moving), 3, generator=g)
            q = torch.nn.functional.normalize(torch.tensor([1.0, 0, 0, 0]) + 0.05 * torch.randn(batch, len(moving), 4,
                                                                                                generator=g), dim=-1)
            rates = {b: [] for b in usable}
            for _ in range(rounds):
                for b in usable:
                    def once(b=b):
                        scenes[b].render(p, q, camera)
                        if device.startswith("cuda"):
                            torch.cuda.synchronize()
                    rates[b].append(batch * _rate(once, seconds))
            row = {"size": size, "num_envs": batch, "gaussians_per_env": len(scenes[usable[0]].parts)}
            for b in usable:
                row[f"{b}_renders_per_s"] = round(float(np.median(rates[b])), 2)
            if "torch" in usable and "gsplat" in usable:
                row["gsplat_vs_torch"] = round(row["gsplat_renders_per_s"] / row["torch_renders_per_s"], 1)
            rows.append(row)
    return rows, unavailable


def env_rates(assets: str, batches: list[int], size: int, backend: str, steps: int) -> list[dict]:
    from envs.maniskill import ManiSkillVectorEnv
    from envs.maniskill.put_cube_on_plate import ENV_ID

    rows = []
    for batch in batches:
        row = {"num_envs": batch, "gaussian_backend": backend}
        for mode in ("state", "rgb"):
            extra = {"camera_size": size, "gaussian_assets": assets, "gaussian_backend": backend} if mode == "rgb" else {}
            env = ManiSkillVectorEnv(ENV_ID, batch, obs_mode=mode, **extra)
            try:
                env.reset(seed=0)
                actions = np.random.default_rng(0).uniform(-1, 1, (steps, batch, 7)).astype(np.float32)
                env.step(actions[0])
                start = time.perf_counter()
                for t in range(1, steps):
                    env.step(actions[t])
                row[f"{mode}_steps_per_s"] = round(batch * (steps - 1) / (time.perf_counter() - start), 2)
                row["sim_backend"] = env.sim_backend
            finally:
                env.close()
        row["render_share"] = round(1 - row["rgb_steps_per_s"] / row["state_steps_per_s"], 3)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assets", required=True)
    ap.add_argument("--num-envs", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--size", type=int, nargs="+", default=[224])
    ap.add_argument("--backends", nargs="+", default=["torch", "gsplat"], choices=["torch", "gsplat"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--env-steps", type=int, default=20)
    ap.add_argument("--env-num-envs", type=int, nargs="+", default=None, help="env counts for the env measurement")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    rows, unavailable = render_rates(args.assets, args.size, args.num_envs, args.backends, device, args.seconds,
                                     args.rounds)
    for b, why in unavailable.items():
        print(f"{b}: not measured ({why})")
    print(f"{'size':>5} {'envs':>5} {'gaussians':>9} " + " ".join(f"{b + ' renders/s':>18}" for b in args.backends
                                                                     if b not in unavailable) + "  gsplat/torch")
    for r in rows:
        rates = " ".join(f"{r[b + '_renders_per_s']:>18}" for b in args.backends if b not in unavailable)
        print(f"{r['size']:>5} {r['num_envs']:>5} {r['gaussians_per_env']:>9} {rates}  {r.get('gsplat_vs_torch', '-')}")
    fastest = "gsplat" if "gsplat" in args.backends and "gsplat" not in unavailable else "torch"
    env_rows = env_rates(args.assets, args.env_num_envs or args.num_envs, args.size[0], fastest, args.env_steps)
    print(f"{'envs':>5} {'sim':>4} {'state steps/s':>14} {'rgb steps/s':>12} {'render share':>12}  ({fastest} renders)")
    for r in env_rows:
        print(f"{r['num_envs']:>5} {r['sim_backend']:>4} {r['state_steps_per_s']:>14} {r['rgb_steps_per_s']:>12} "
              f"{r['render_share']:>12}")
    info = machine_info()
    print(describe_machine(info))
    result = {"benchmark": "gs_render_speed", "device": device, "render": rows, "env": env_rows,
              "unavailable": unavailable, "machine": info}
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
