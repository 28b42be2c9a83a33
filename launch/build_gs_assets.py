"""Build the Gaussian assets of ZarlGSPutCubeOnPlate-v0 ("Real2Sim" from the simulator):
`python -m launch.build_gs_assets [key=value ...]`, e.g. `out=assets/gs device=cuda fit.backend=gsplat`.

1. Capture: every rigid part (the Panda's links, the cube, the plate) photographed alone by SAPIEN from
   `views_per_part` poses around it, and the background (table and floor) from `background_views` poses
   around the task's camera (envs/maniskill/gs_capture.py), at `capture_size` pixels.
2. Fit: each part's Gaussians initialised at its back-projected depth points and fitted (envs/gaussians/fit.py;
   `fit.steps=0` keeps the initialisation) on all views but every `heldout_every`-th, which measure the
   held-out PSNR.
3. Save: one .ply per part and manifest.json in `out` (envs/gaussians/assets.py), and report.json with the
   per-part held-out PSNR and the scene PSNR: the Gaussian render of whole scenes against SAPIEN's render
   of the task's own camera, in `scene_checks` episodes the scripted expert plays (other states than
   the capture's).

Seeds: one SeedSequence(seed) gives each part's initialisation and fit its own seed.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from envs.gaussians.fit import FitConfig  # noqa: E402


@dataclass
class BuildConfig:
    out: str = "assets/gs_put_cube_on_plate"
    seed: int = 0
    device: str = "cpu"
    capture_size: int = 128
    views_per_part: int = 48
    background_views: int = 32
    heldout_every: int = 8
    max_points: int = 4000
    background_max_points: int = 20000
    sh_degree: int = 1
    camera_size: int = 224
    scene_checks: int = 4
    scene_check_steps: int = 30
    render_backend: str = "torch"  # for the scene check: torch or gsplat
    fit: FitConfig = field(default_factory=FitConfig)


def load_build_config(overrides: list[str]) -> BuildConfig:
    base = OmegaConf.structured(BuildConfig)
    try:
        cfg = OmegaConf.merge(base, OmegaConf.from_dotlist(overrides))
    except Exception as e:  # noqa: BLE001  (OmegaConf names the bad key or value)
        raise SystemExit(f"build_gs_assets: bad override ({e}); settings: {', '.join(OmegaConf.to_container(base))}")
    return OmegaConf.to_object(cfg)


def build(cfg: BuildConfig, log=print) -> dict:
    import gymnasium as gym

    import envs.maniskill  # noqa: F401  (registers the task)
    from envs.gaussians.assets import PartEntry, load_assets, save_assets
    from envs.gaussians.fit import evaluate, fit
    from envs.gaussians.losses import psnr
    from envs.gaussians.scene import GaussianScene
    from envs.maniskill.expert import ScriptedExpert, privileged_state
    from envs.maniskill.gs_capture import capture_scene, initial_cloud
    from envs.maniskill.put_cube_on_plate import BACKGROUND_COLOUR, ENV_ID, observation_camera

    dev = torch.device(cfg.device)
    seeds = np.random.SeedSequence(cfg.seed).generate_state(64)
    env = gym.make(ENV_ID, num_envs=1, obs_mode="rgb", render_backend="simulator", camera_size=cfg.camera_size,
                   sim_backend="physx_cpu").unwrapped
    report: dict = {"config": OmegaConf.to_container(OmegaConf.structured(cfg)), "parts": {}}
    try:
        env.reset(seed=int(seeds[0]))
        t0 = time.time()
        captures = capture_scene(env, cfg.capture_size, cfg.views_per_part, cfg.background_views, int(seeds[1]))
        report["capture_s"] = round(time.time() - t0, 1)
        log(f"captured {len(captures)} parts in {report['capture_s']} s")
        parts = {}
        for i, part in enumerate(captures):
            t0 = time.time()
            limit = cfg.background_max_points if part.kind == "background" else cfg.max_points
            init = initial_cloud(part, limit, int(seeds[2 + i]), cfg.sh_degree).to(dev)
            train, held = part.views.split(cfg.heldout_every)
            cloud = init
            if cfg.fit.steps > 0:
                cloud, _ = fit(init, train, cfg.fit, seed=int(seeds[2 + i]))
            score = evaluate(cloud, held, backend=cfg.fit.backend)
            parts[part.name] = (PartEntry(part.kind, part.source, "world" if part.kind == "background" else "part",
                                          f"{part.name}.ply", len(cloud), round(score, 2)), cloud.to("cpu"))
            initial = evaluate(init, held, backend=cfg.fit.backend) if cfg.fit.steps > 0 else score
            report["parts"][part.name] = {"gaussians": len(cloud), "heldout_psnr": round(score, 2),
                                          "initial_psnr": round(initial, 2), "fit_s": round(time.time() - t0, 1)}
            log(f"{part.name}: {len(cloud)} Gaussians, held-out PSNR {score:.2f} dB ({report['parts'][part.name]['fit_s']} s)")
        save_assets(cfg.out, ENV_ID, parts)

        # the scene check: Gaussian renders of whole scenes against SAPIEN's, at the task's camera
        _, assets = load_assets(cfg.out)
        moving = [name for name in env.rigid_parts()]
        scene = GaussianScene({n: assets[n][1] for n in moving},
                              next(c for e, c in assets.values() if e.kind == "background"), BACKGROUND_COLOUR,
                              backend=cfg.render_backend, device=dev)
        camera = observation_camera(cfg.camera_size)
        expert = ScriptedExpert(ENV_ID, 1)
        low, high = (torch.as_tensor(b) for b in (env.single_action_space.low, env.single_action_space.high))
        scores = []
        for k in range(cfg.scene_checks):
            obs, _ = env.reset(seed=int(seeds[40 + k]))
            for step in range(cfg.scene_check_steps):
                if step % 10 == 0:
                    sim = obs["sensor_data"]["base_camera"]["rgb"].float() / 255
                    gs = scene.render(*env.part_poses(), camera).cpu()
                    scores.append(psnr(gs, sim))
                action = low + (expert.act(privileged_state(env)).clamp(-1, 1) + 1) * 0.5 * (high - low)
                obs, *_ = env.step(action)
        report["scene_psnr"] = round(float(np.mean(scores)), 2) if scores else None
        report["scene_frames"] = len(scores)
        log(f"scene PSNR against SAPIEN at the task's camera ({len(scores)} frames): {report['scene_psnr']} dB")
    finally:
        env.close()
    Path(cfg.out, "report.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    build(load_build_config(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
