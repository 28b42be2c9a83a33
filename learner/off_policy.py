"""The off-policy learner process: SAC updates on prefetched batches, weights published as it goes."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import zmq
from omegaconf import DictConfig, OmegaConf

from core.devices import learner_cpu_threads, resolve_device
from core.net import endpoint, make_socket
from core.role_runtime import RoleRuntime
from core.roles import Learner
from envs import make_vector_env
from learner.batch_fetcher import BatchFetcher
from learner.checkpoint import load_checkpoint, save_checkpoint
from learner.sac import SAC, SACConfig
from learner.weights_publisher import WeightsPublisher
from policies.sac_agent import SACAgent
from wire import protocol
from wire.protocol import Kind


class OffPolicyLearner(Learner):
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.rt = RoleRuntime(cfg, "learner", "learner")
        self.log = self.rt.log
        self.device = torch.device(resolve_device(cfg.learner.device))
        torch.manual_seed(cfg.runner.seed)
        if self.device.type == "cpu":
            torch.set_num_threads(learner_cpu_threads(cfg.learner.num_threads))
        probe = make_vector_env(cfg.env, num_envs=1)  # only to read the spaces
        obs_space, act_space = probe.single_observation_space, probe.single_action_space
        probe.close()
        self.sac_cfg = SACConfig(**OmegaConf.to_container(cfg.sac, resolve=True))
        action_dim = int(np.prod(act_space.shape))
        self.agent = SACAgent(obs_space, action_dim, cfg.policy, self.sac_cfg.num_q, seed=cfg.runner.seed).to(self.device)
        self.sac = SAC(self.agent, action_dim, self.sac_cfg, self.device, amp=cfg.learner.amp)
        self.updates = 0  # critic updates (= batches consumed)
        self.steps = 0  # learner steps (one actor update each)
        self.checkpoint_dir = Path(cfg.runner.run_dir) / "checkpoints"
        if cfg.runner.resume:
            self._resume()
        self.publisher = WeightsPublisher(self.rt.ctx, endpoint(cfg, "weights", bind=True))
        self.fetcher = BatchFetcher(self.rt.ctx, endpoint(cfg, "replay_learner", bind=False), self.sac_cfg.batch_size,
                                    cfg.replay.prefetch, self.device).start()

    def weights(self) -> dict[str, np.ndarray]:
        # A copy: the optimiser changes parameters in place while ZeroMQ may still be sending the buffers.
        return {k: v.detach().to("cpu", copy=True).numpy() for k, v in self.agent.acting_weights().items()}

    def step(self) -> dict[str, float]:
        batches = []
        while len(batches) < self.sac_cfg.critic_actor_ratio:
            batch = self.fetcher.get(timeout=0.1)
            if batch is None:
                return {}
            batches.append(batch)
        metrics = self.sac.update(batches)
        self.updates += len(batches)
        self.steps += 1
        return metrics

    def _publish(self, final: bool = False) -> None:
        self.publisher.publish(self.weights(), {"updates": self.updates, "steps": self.steps, "final": final,
                                                "env_steps": self.fetcher.env_steps})

    def _checkpoint(self) -> None:
        state = {"sac": self.sac.state_dict(), "updates": self.updates, "steps": self.steps,
                 "env_steps": self.fetcher.env_steps, "torch_rng": torch.get_rng_state(),
                 "config": OmegaConf.to_container(self.cfg, resolve=True)}
        path = save_checkpoint(state, self.checkpoint_dir)
        self.log.info(f"checkpoint written: {path} ({self.updates:,} updates)")

    def _resume(self) -> None:
        path = self.checkpoint_dir / "learner.pt"
        if not path.exists():
            self.log.info(f"no checkpoint at {path}: starting fresh")
            return
        state = load_checkpoint(path)
        self.sac.load_state_dict(state["sac"])
        self.updates, self.steps = int(state["updates"]), int(state["steps"])
        torch.set_rng_state(state["torch_rng"])
        self.log.info(f"resumed from {path}: {self.updates:,} updates, {self.steps:,} learner steps")

    def run(self) -> int:
        cfg = self.cfg
        self._publish()  # version 1: actors can act with the initial policy right away
        last_report = time.time()
        interval_metrics: list[dict] = []
        busy = 0.0
        updates_at_report = self.updates
        last_ckpt = self.updates
        while not self.rt.should_stop():
            t0 = time.perf_counter()
            metrics = self.step()
            if metrics:
                busy += time.perf_counter() - t0
                interval_metrics.append(metrics)
                if self.steps % cfg.learner.publish_every == 0:
                    self._publish()
                if self.updates - last_ckpt >= cfg.runner.checkpoint_every_updates:
                    self._checkpoint()
                    last_ckpt = self.updates
            self.publisher.republish_if_stale()
            now = time.time()
            if now - last_report >= cfg.runner.log_every_s:
                scalars = {k: float(np.nanmean([m[k] for m in interval_metrics])) for k in
                           (interval_metrics[0] if interval_metrics else {})}
                scalars["learner/updates_per_s"] = (self.updates - updates_at_report) / (now - last_report)
                scalars["learner/busy_fraction"] = busy / (now - last_report)
                self.rt.report(counters={"updates": self.updates, "learner_steps": self.steps}, scalars=scalars)
                interval_metrics, busy, updates_at_report, last_report = [], 0.0, self.updates, now
        self.log.info(f"stopping ({self.rt.stop_reason}) after {self.updates:,} updates")
        self.fetcher.stop()
        self._publish(final=True)
        self._checkpoint()
        self.rt.report(counters={"updates": self.updates, "learner_steps": self.steps})
        self.publisher.close()
        self.rt.close()
        return 0
