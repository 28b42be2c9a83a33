"""SAC learner-step speed in a bare loop (no processes, no sockets), for a config's networks.

    python benchmarks/sac_update_speed.py frankasim_sac_cnn [--seconds 20] [--json] [key=value ...]

Builds the config's agent on the learner device, feeds it random batches of the
right shapes already on the device, and prints learner steps/s and critic
updates/s for fp32 and (on a GPU) bf16 autocast. This is the ceiling the
learner process can reach; benchmarks/learner_throughput.py compares the two.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from core.devices import learner_cpu_threads, resolve_device  # noqa: E402
from envs import make_vector_env  # noqa: E402
from launch.run_config import load_config  # noqa: E402
from learner.sac import SAC  # noqa: E402
from policies.sac_agent import SACAgent  # noqa: E402


def random_batch(space, action_dim: int, batch_size: int, device: torch.device) -> dict:
    def sample_obs():
        if hasattr(space, "spaces"):
            return {k: (torch.randint(0, 256, (batch_size, *s.shape), dtype=torch.uint8, device=device)
                        if s.dtype == np.uint8 else torch.randn(batch_size, *s.shape, device=device))
                    for k, s in space.spaces.items()}
        return torch.randn(batch_size, *space.shape, device=device)

    return {"obs": sample_obs(), "next_obs": sample_obs(),
            "action": torch.rand(batch_size, action_dim, device=device) * 2 - 1,
            "reward": torch.randn(batch_size, device=device),
            "terminated": torch.zeros(batch_size, dtype=torch.bool, device=device)}


def build_update(cfg, amp: str, seed: int = 0) -> tuple[SAC, list[dict], torch.device]:
    """The learner process's SAC update for `cfg` (agent, config, device, CPU threads, compile), with random
    batches already on the device, warmed up; returns (sac, batches, device)."""
    device = torch.device(resolve_device(cfg.learner.device))
    if device.type == "cpu":
        torch.set_num_threads(learner_cpu_threads(cfg.learner.num_threads))
    env = make_vector_env(cfg.env, num_envs=1)
    space, action_dim = env.single_observation_space, int(np.prod(env.single_action_space.shape))
    env.close()
    sac_cfg, policy_cfg = OmegaConf.to_object(cfg.sac), OmegaConf.to_object(cfg.policy)
    agent = SACAgent(space, action_dim, policy_cfg, sac_cfg.num_q, seed=seed).to(device)
    if cfg.learner.compile:  # as the learner process does
        agent.compile_networks()
    sac = SAC(agent, action_dim, sac_cfg, device, amp=amp)
    batches = [random_batch(space, action_dim, sac_cfg.batch_size, device) for _ in range(sac_cfg.critic_actor_ratio)]
    for _ in range(3):
        sac.update(batches)
    return sac, batches, device


def measure(cfg, amp: str, seconds: float) -> dict:
    sac, batches, device = build_update(cfg, amp)
    ratio = len(batches)
    if device.type == "cuda":
        torch.cuda.synchronize()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sac.update(batches)
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"amp": amp, "device": str(device), "learner_steps_per_s": steps / dt,
            "critic_updates_per_s": steps * ratio / dt}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args, overrides = parser.parse_known_args()
    cfg = load_config(args.config, overrides)
    rows = [measure(cfg, "none", args.seconds)]
    if torch.cuda.is_available():
        rows.append(measure(cfg, "bf16", args.seconds))
    for r in rows:
        print(f"{r['device']:>8s} amp={r['amp']:<5s} {r['learner_steps_per_s']:8.2f} learner steps/s "
              f"{r['critic_updates_per_s']:8.2f} critic updates/s")
    if args.json:
        print(json.dumps({"config": args.config, "results": rows}))


if __name__ == "__main__":
    main()
