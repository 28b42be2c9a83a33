"""Issue 21's must-show 2 on one GPU machine: a world model trained on recorded trajectories, its held-out quality
(PSNR/SSIM of 8-step predictions, the success classifier's accuracy on real frames, the pose error) and the
world-model env's generated env steps/s.

    python scripts/world_model_h200.py [--data DIR ...] [--out DIR] [--episodes 160] [--workers 14]
                                       [--tasks open_drawer,turn_on_led] [model.KEY=VALUE ...] [train.KEY=VALUE ...]

1. Trajectories: ``--data`` (data sets in envs/demos.py's layout, e.g. exported LIBERO-spatial ones), else
   recorded here from the CALVIN play table (pybullet, one process per worker, `--episodes` in all): the
   scripted expert on `--tasks` with action noise cycling over 0, 0, 0.5, 1, 2 (clean episodes succeed, noisy
   ones often fail: the classifier needs both), 16 steps recorded after a success, 64 px static camera.
2. envs/world_model/train.py's training on the GPU (default sizes; model.* / train.* overrides), 10% of the
   episodes held out; the model and metrics.json written to ``--out``.
3. benchmarks/world_model_env.py on the trained model (16, 64, 256 envs).

Everything prints as it goes; the held-out metrics as one JSON object. On the lent H200 (no network; the
project's venv): ``python scripts/world_model_h200.py --out /tmp/wm_run`` (about 6-8 minutes; steps are
overridable: ``train.generator_steps=2000`` for a quicker pass).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NOISE_CYCLE = (0.0, 0.0, 0.5, 1.0, 2.0)


def _record(job: tuple) -> dict:
    root, tasks, noise, seed, image_size = job
    from envs.calvin.demos import record_trajectories

    return record_trajectories(root, tasks, seed, static_size=image_size, only_successes=False, action_noise=noise,
                               steps_after_success=16, max_steps=160)


def record(out: Path, episodes: int, workers: int, tasks: list[str], image_size: int, seed: int) -> list[Path]:
    per = -(-episodes // workers)
    seeds = np.random.SeedSequence(seed).generate_state(workers, np.uint32)
    jobs = []
    for w in range(workers):
        n = min(per, episodes - w * per)
        if n <= 0:
            break
        jobs.append((out / f"trajectories_{w:02d}", [tasks[(w * per + i) % len(tasks)] for i in range(n)],
                     [NOISE_CYCLE[(w * per + i) % len(NOISE_CYCLE)] for i in range(n)], int(seeds[w]), image_size))
    start = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        counts = pool.map(_record, jobs)
    total = {k: sum(c[k] for c in counts) for k in counts[0]}
    print(f"recorded {total['written']} episodes ({total['successes']} successful) in {len(jobs)} processes, "
          f"{time.monotonic() - start:.0f} s")
    return [job[0] for job in jobs]


def main(argv: list[str]) -> int:
    from omegaconf import OmegaConf

    from envs.world_model.config import WorldModelConfig
    from envs.world_model.train import TrainConfig, train_world_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="*", default=None)
    p.add_argument("--out", default="/tmp/wm_run")
    p.add_argument("--episodes", type=int, default=160)
    p.add_argument("--workers", type=int, default=14)
    p.add_argument("--tasks", default="open_drawer", help="comma-separated play-table subtasks")
    p.add_argument("--seed", type=int, default=0)
    args, overrides = p.parse_known_args(argv)
    conf = OmegaConf.merge(OmegaConf.create({"model": dataclasses.asdict(WorldModelConfig()),
                                             "train": dataclasses.asdict(TrainConfig())}),
                           OmegaConf.from_dotlist(overrides))
    model_cfg = WorldModelConfig(**OmegaConf.to_container(conf.model))
    train_cfg = TrainConfig(**OmegaConf.to_container(conf.train))
    from envs.calvin.tasks import TASKS

    tasks = args.tasks.split(",")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        p.error(f"unknown play-table subtask(s) {unknown}; see envs/calvin/tasks.py")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = [Path(d) for d in args.data] if args.data else record(out, args.episodes, args.workers, tasks,
                                                                  model_cfg.image_size, args.seed)
    _, metrics = train_world_model(data, out / "model", model_cfg, train_cfg)
    print(json.dumps({"world_model_metrics": metrics}, indent=2))
    from benchmarks import world_model_env

    return world_model_env.main(["--model", str(out / "model"), "--data", str(data[0]), "--seconds", "8", "--json",
                                 "--out", str(out / "env_speed.json")])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
