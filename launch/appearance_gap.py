"""The appearance gap of ZarlGSPutCubeOnPlate-v0, both ways: saved policies evaluated on the same episodes of the
same task rendered by Gaussians and by the simulator (SAPIEN), one env id with ``render_backend`` gaussians or
simulator, so the physics, the episodes and the camera are the same and only the pixels differ.

    python launch/appearance_gap.py CONFIG --trained gaussians=DIR [--trained simulator=DIR] \
        [--episodes 64] [--num-envs 8] [--out docs/results/gs_appearance_gap] [key=value ...]

CONFIG is the VLA config the checkpoints were trained with (gs_ppo_pi05 or gs_sft_pi05: it builds the base model
and the env); each ``--trained RENDERING=DIR`` names a checkpoint (an SFT or VLA learner checkpoint, or the run
directory holding it, the newest) and the rendering it was trained on. Every policy acts deterministically (pi0:
the ODE sampler; token VLAs: greedy) on the same `--episodes` episode seeds (from runner.seed) under each rendering.

Writes into --out: appearance_gap.json (per trained-on x evaluated-on cell: success rate, successes, episodes, env
steps; per trained-on rendering the gap = success on its own rendering minus on the other; checkpoints, seeds,
device, wall time) and appearance_gap.md (the same as a table).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

RENDERINGS = ("gaussians", "simulator")  # ZarlGSPutCubeOnPlate-v0's render_backend values


def parse_trained(items: list[str]) -> dict[str, str]:
    trained: dict[str, str] = {}
    for item in items:
        rendering, sep, path = item.partition("=")
        if not sep or rendering not in RENDERINGS or not path:
            raise ValueError(f"--trained {item!r}: give RENDERING=DIR with RENDERING one of {', '.join(RENDERINGS)}")
        if rendering in trained:
            raise ValueError(f"--trained names the {rendering} policy twice")
        trained[rendering] = path
    if not trained:
        raise ValueError("nothing to evaluate: give --trained gaussians=DIR and/or --trained simulator=DIR")
    return trained


def rendering_env_config(cfg, rendering: str):
    """The run's env with the observation camera rendered by `rendering`."""
    return dataclasses.replace(cfg.env, kwargs={**dict(cfg.env.kwargs or {}), "render_backend": rendering})


def evaluate_gap(cfg, trained: dict[str, str], episodes: int, num_envs: int, log) -> dict:
    """Each trained policy on `episodes` seeded episodes under each rendering (one env per rendering, shared by
    the policies); the result as described in the module docstring."""
    import torch

    from actors.vla_evaluator import run_seeded_episodes
    from core import seeding
    from core.devices import actor_device
    from envs.maniskill import make_maniskill_vector_env
    from envs.maniskill.put_cube_on_plate import ENV_ID
    from learner.vla_checkpoint import build_policy, resolve

    if cfg.env.id != ENV_ID:
        raise ValueError(f"the appearance gap is measured on {ENV_ID} (one id, two renderings); env.id is {cfg.env.id}")
    checkpoints = {r: resolve(path) for r, path in trained.items()}
    seeds = seeding.seeds(cfg.runner.seed, "appearance_gap", count=episodes)
    device = actor_device(cfg.actor, 0)
    t_start = time.time()
    cells: list[dict] = []
    for rendering in RENDERINGS:
        env = make_maniskill_vector_env(rendering_env_config(cfg, rendering), num_envs=num_envs)
        try:
            for trained_on, checkpoint in checkpoints.items():
                vla = dataclasses.replace(cfg.vla, init_from=str(checkpoint))
                policy = build_policy(vla, device, seeding.seed_of(cfg.runner.seed, "evaluator_policy"),
                                      merge_lora=True, obs_space=env.single_observation_space)
                policy.model.eval()
                t0 = time.time()
                with torch.no_grad():
                    result = run_seeded_episodes(env, lambda obs: policy.act(obs, deterministic=True), seeds)
                cell = {"trained_on": trained_on, "evaluated_on": rendering, "success_rate": result["success_rate"],
                        "successes": result["successes"], "episodes": result["episodes"],
                        "env_steps": result["env_steps"], "wall_s": round(time.time() - t0, 2)}
                cells.append(cell)
                log(f"trained on {trained_on}, evaluated on {rendering}: success {cell['success_rate']:.3f} "
                    f"({cell['successes']}/{cell['episodes']}), {cell['env_steps']:,} env steps, {cell['wall_s']:.0f} s")
        finally:
            env.close()
    rate = {(c["trained_on"], c["evaluated_on"]): c["success_rate"] for c in cells}
    gap = {t: rate[(t, t)] - rate[(t, other)] for t in checkpoints for other in RENDERINGS if other != t}
    device_name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"
    return {"env": ENV_ID, "config": cfg.name, "checkpoints": {r: str(c) for r, c in checkpoints.items()},
            "episodes": episodes, "num_envs": num_envs, "seeds": [int(s) for s in seeds], "cells": cells,
            "gap": gap, "deterministic": True, "device": device_name, "wall_s": round(time.time() - t_start, 1),
            "camera_size": int(dict(cfg.env.kwargs or {}).get("camera_size", 224)),
            "gaussian_assets": dict(cfg.env.kwargs or {}).get("gaussian_assets")}


def markdown(result: dict) -> str:
    rate = {(c["trained_on"], c["evaluated_on"]): c for c in result["cells"]}
    lines = [f"Appearance gap on {result['env']} ({result['episodes']} episodes per cell, the same seeds in every cell, "
             f"deterministic actions; {result['device']}):", "",
             "| trained on | evaluated on gaussians | evaluated on simulator | gap (own - other) |",
             "|---|---|---|---|"]
    for trained_on in result["checkpoints"]:
        row = [trained_on]
        for rendering in RENDERINGS:
            c = rate[(trained_on, rendering)]
            row.append(f"{c['success_rate']:.3f} ({c['successes']}/{c['episodes']})")
        row.append(f"{result['gap'][trained_on]:+.3f}")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Checkpoints: " + ", ".join(f"{r}: `{p}`" for r, p in result["checkpoints"].items()), ""]
    return "\n".join(lines)


def write(result: dict, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "appearance_gap.json", out / "appearance_gap.md"
    js.write_text(json.dumps(result, indent=2) + "\n")
    md.write_text(markdown(result))
    return js, md


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="the VLA config of the checkpoints (gs_ppo_pi05, gs_sft_pi05) or a YAML path")
    parser.add_argument("--trained", action="append", default=[], metavar="RENDERING=DIR",
                        help="a checkpoint and the rendering it was trained on (gaussians or simulator)")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--out", default="docs/results/gs_appearance_gap")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides (env.kwargs.gaussian_assets=DIR, ...)")
    args = parser.parse_intermixed_args(argv)  # the overrides may come before or after the options
    from core.config import ConfigError
    from launch.run_config import load_config, typed

    try:
        trained = parse_trained(args.trained)
        if args.episodes < 1 or args.num_envs < 1:
            raise ValueError("--episodes and --num-envs must be >= 1")
        raw = load_config(args.config, args.overrides)
        if "vla" not in raw:
            raise ConfigError(f"config '{args.config}' uses algo={raw.algo}, not a VLA pipeline")
        cfg = typed(raw)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = evaluate_gap(cfg, trained, args.episodes, args.num_envs, log=print)
    js, md = write(result, args.out)
    print(json.dumps({"gap": result["gap"], "json": str(js), "markdown": str(md), "wall_s": result["wall_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
