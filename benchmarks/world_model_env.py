"""How fast the world-model env generates: WorldModel-v0 (envs/world_model/vector.py) env steps per second, and
how much of the bare model's speed the env keeps.

    python benchmarks/world_model_env.py [--num-envs 16 64 256] [--model DIR | --tiny] [--flow-steps N]
                                         [--image-size 64] [--seconds S] [--data DIR] [--device auto]
                                         [--threads N] [--json] [--out F]

For each env count B, in alternating rounds (so that a shared machine's changing load hits both alike):

* ``env_steps_per_s``: B x 8 generated env steps per ``chunk_step`` (poses, ``flow_steps`` Euler steps of the
  generator, decoding, the classifier, per-env auto-resets, observations and infos copied to the host as
  numpy), with random actions in [-1, 1];
* ``bare_steps_per_s``: ``WorldModel.predict`` alone on the same batch (the model's work, nothing of the env);
* ``ratio`` = env / bare (goal >= 0.9).

The model is ``--model`` (a saved world model), else one of the default WorldModelConfig sizes (``--tiny``: the
CPU tests' sizes) with random weights: the speed does not depend on what it learned. ``--threads``: torch's
CPU threads (on a shared 2-core machine one thread is faster than two that contend). Start states come from ``--data`` (a trajectory data set), else from
two short episodes of the CALVIN play table recorded at the model's image size.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import describe_machine, machine_info  # noqa: E402
from envs.world_model.config import WorldModelConfig  # noqa: E402
from envs.world_model.model import WorldModel  # noqa: E402
from envs.world_model.vector import WorldModelVectorEnv  # noqa: E402

TINY = dict(image_size=16, ae_widths=[8, 16], latent_channels=4, patch=1, hidden=32, layers=1, heads=2,
            flow_steps=2, pose_hidden=64, classifier_widths=[8, 16])


def record_starts(root: Path, image_size: int) -> Path:
    from envs.calvin.demos import record_trajectories

    record_trajectories(root, ["open_drawer", "turn_on_led"], seed=0, static_size=image_size, only_successes=False,
                        max_steps=2)
    return root


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(env: WorldModelVectorEnv, seconds: float, rounds: int) -> dict:
    b, c, a = env.num_envs, env.chunk, env.single_action_space.shape[0]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (b, c, a)).astype(np.float32)
    device, model = env.device, env.model
    actions_t = torch.as_tensor(actions, device=device)

    def env_side():
        env.chunk_step(actions)

    def bare_side():
        model.predict(env._memory, env._pose, actions_t, env.flow_steps, env._noise)
        _sync(device)

    for fn in (env_side, bare_side):  # warm-up (allocations, kernels)
        fn()
    rates = {"env": [], "bare": []}
    for r in range(rounds):
        order = (("env", env_side), ("bare", bare_side)) if r % 2 == 0 else (("bare", bare_side), ("env", env_side))
        for name, fn in order:
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / (2 * rounds):
                fn()
                n += 1
            rates[name].append(n * b * c / (time.perf_counter() - start))
    env_rate, bare_rate = float(np.median(rates["env"])), float(np.median(rates["bare"]))
    return {"num_envs": b, "env_steps_per_s": env_rate, "bare_steps_per_s": bare_rate, "ratio": env_rate / bare_rate}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-envs", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--flow-steps", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--model", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--data", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        model = WorldModel.from_pretrained(args.model)
        if args.flow_steps:
            model.config.flow_steps = args.flow_steps
        cfg = model.config
    else:
        sizes = dict(TINY) if args.tiny else {}
        if args.image_size:
            sizes["image_size"] = args.image_size
        if args.flow_steps:
            sizes["flow_steps"] = args.flow_steps
        cfg = WorldModelConfig(**sizes)
        torch.manual_seed(0)
        model = WorldModel(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else record_starts(Path(tmp) / "starts", cfg.image_size)
        results = []
        for n in args.num_envs:
            env = WorldModelVectorEnv(n, model, data, held_out_fraction=0.0, device=args.device)
            results.append(measure(env, args.seconds, args.rounds))
            env.close()
    info = machine_info()
    print(f"WorldModel-v0, {cfg.image_size} px, {cfg.flow_steps} flow steps, {sum(p.numel() for p in model.parameters()):,}"
          f" parameters, on {resolve(args.device)}; {describe_machine(info)}")
    print(f"{'envs':>6} {'env steps/s':>12} {'bare steps/s':>13} {'ratio':>6}")
    for r in results:
        print(f"{r['num_envs']:>6} {r['env_steps_per_s']:>12.1f} {r['bare_steps_per_s']:>13.1f} {r['ratio']:>6.2f}")
    out = {"benchmark": "world_model_env", "image_size": cfg.image_size, "flow_steps": cfg.flow_steps,
           "device": resolve(args.device), "machine": info, "results": results}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    if args.json:
        print(json.dumps(out))
    return 0


def resolve(device: str) -> str:
    from core.devices import resolve_device

    return resolve_device(device)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
