"""Time the SAC-CNN vision encoder: frozen backbone features, the trainable head, a full pass.

    .venv/bin/python -m benchmarks.encoder_speed --batch 32
    .venv/bin/python -m benchmarks.encoder_speed --batch 32 --pretrained none efficientnet_lite0 --rounds 3
    .venv/bin/python -m benchmarks.encoder_speed --device cuda --batch 256 --compile [--channels-last] [--bf16]

Prints milliseconds per call and images per second for each backbone that
``--pretrained`` names (policy.encoder.pretrained: "none" is the random
ResNet-10, "efficientnet_lite0" the ImageNet EfficientNet-Lite0); with several,
the rounds alternate between them so that a shared machine's load falls on all
alike, and each figure is the median of its rounds. The learner calls
``precompute`` once per batch and the head several times (critic, actor,
target), so both numbers matter.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time

import gymnasium
import numpy as np
import torch

from policies.config import EncoderConfig
from policies.vision_encoder import VisionEncoder


def _time(fn, device: torch.device, repeats: int) -> float:
    """Median seconds per call of ``fn`` after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=128, help="camera height and width")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:i or auto")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbones and heads")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--pretrained", nargs="+", default=["none"], choices=["none", "efficientnet_lite0"],
                        help="policy.encoder.pretrained values to time (none: random ResNet-10)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds alternating between the --pretrained values")
    parser.add_argument("--skip-trainable", action="store_true", help="time the frozen backbone and head only")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    cameras = ("front", "wrist")
    obs_space = gymnasium.spaces.Dict({
        **{cam: gymnasium.spaces.Box(0, 255, (args.size, args.size, 3), np.uint8) for cam in cameras},
        "state": gymnasium.spaces.Box(-np.inf, np.inf, (7,), np.float32),
    })
    g = torch.Generator().manual_seed(0)
    obs = {cam: torch.randint(0, 256, (args.batch, args.size, args.size, 3), dtype=torch.uint8, generator=g)
           for cam in cameras}
    obs["state"] = torch.randn(args.batch, 7, generator=g)
    obs = {k: v.to(device) for k, v in obs.items()}
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext())

    def build(pretrained: str) -> dict:
        """The measurements for one backbone, as name -> function to time."""
        cfg = EncoderConfig(pretrained=pretrained, channels_last=args.channels_last)
        frozen = VisionEncoder(obs_space, cfg).to(device)
        trainable = (None if args.skip_trainable else
                     VisionEncoder(obs_space, dataclasses.replace(cfg, trainable=True)).to(device))
        if args.compile:
            # Module.compile() compiles in place, so parameter names stay as they are. Fixed
            # shapes (dynamic=False): the frozen backbone sees 2x the batch (both cameras).
            frozen.backbone.compile(dynamic=False)
            for module in frozen.image_heads.values():
                module.compile(dynamic=False)
            if trainable is not None:
                for module in (*trainable.backbones.values(), *trainable.image_heads.values()):
                    module.compile(dynamic=False)
        with autocast:
            precomputed = frozen.precompute(obs)

        def run_precompute():
            with autocast:
                frozen.precompute(obs)

        def head_forward_backward():
            with autocast:
                frozen(obs, precomputed).sum().backward()

        def trainable_forward_backward():
            with autocast:
                trainable(obs).sum().backward()

        head = frozen.image_heads[cameras[0]]
        sizes = (f"backbone {sum(p.numel() for p in frozen.backbone_params()):,} parameters (frozen, shared), "
                 f"head {sum(p.numel() for p in head.parameters()):,} per camera, map "
                 f"{tuple(precomputed[cameras[0]].shape[1:])}")
        timed = {
            "frozen backbone, precompute (both cameras)": run_precompute,
            "head forward+backward on precomputed maps": head_forward_backward,
        }
        if trainable is not None:
            timed["trainable backbone, forward+backward"] = trainable_forward_backward
        return {"sizes": sizes, "timed": timed}

    backbones = {name: build(name) for name in args.pretrained}
    seconds = {name: {what: [] for what in b["timed"]} for name, b in backbones.items()}
    for _ in range(args.rounds):
        for name, b in backbones.items():
            for what, fn in b["timed"].items():
                seconds[name][what].append(_time(fn, device, args.repeats))

    images = args.batch * len(cameras)
    print(f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, threads={torch.get_num_threads()}, batch={args.batch}, "
          f"{args.size}x{args.size}, cameras={len(cameras)}, channels_last={args.channels_last}, bf16={args.bf16}, "
          f"compile={args.compile}, rounds={args.rounds} x {args.repeats} repeats")
    for name, b in backbones.items():
        print(f"pretrained={name}: {b['sizes']}")
        for what, per_round in seconds[name].items():
            t = float(np.median(per_round))
            spread = f"  (rounds {', '.join(f'{x * 1e3:.1f}' for x in per_round)})" if len(per_round) > 1 else ""
            print(f"  {what:45s} {t * 1e3:9.1f} ms   {images / t:9.0f} images/s{spread}")


if __name__ == "__main__":
    main()
