"""The off-policy learner process: SAC updates on prefetched batches, weights published as it goes.

Reliability: the learner checkpoints its whole state (networks, targets, optimisers, temperature, step
counters, RNG states) every runner.checkpoint_every_updates updates and when it stops (learner/checkpoint.py).
It resumes from the newest intact checkpoint when runner.resume=true, and also when the launcher restarts
it after a crash within the same launch (the checkpoint's run id is this launch's). Weights that are not
finite are never published or checkpointed: a NaN that got into the networks stays in this process.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from core import seeding
from core.atomic_dir import CorruptError
from core.config import RunConfig
from core.devices import prepare_learner_device
from core.net import curve_side, endpoint
from core.roles import Learner
from envs import env_spaces
from learner.batch_fetcher import BatchFetcher
from learner.checkpoint import (
    CheckpointError,
    checkpoint_meta,
    list_checkpoints,
    load_latest_checkpoint,
    save_checkpoint,
)
from learner.configs import SACConfig
from learner.device_replay import DeviceReplay, resolved_batch_source
from learner.sac import SAC
from learner.weights_publisher import WeightsPublisher
from policies.sac_agent import SACAgent
from wire.runtime import RoleRuntime


class OffPolicyLearner(Learner):
    def __init__(self, cfg: RunConfig, sac_cfg: SACConfig):
        self.cfg = cfg
        self.rt = RoleRuntime(cfg, "learner", "learner")
        self.seed = seeding.seed_of(cfg.runner.seed, "learner")
        self.log = self.rt.log
        self.device = prepare_learner_device(cfg.learner, self.seed)
        obs_space, act_space = env_spaces(cfg.env)
        self.sac_cfg = sac_cfg
        action_dim = int(np.prod(act_space.shape))
        self.agent = SACAgent(obs_space, action_dim, cfg.policy, self.sac_cfg.num_q, seed=self.seed).to(self.device)
        if cfg.learner.compile:
            compiled = self.agent.compile_networks()
            self.log.info(f"torch.compile: {', '.join(compiled)} (compiled during the first updates)")
        self.sac = SAC(self.agent, action_dim, self.sac_cfg, self.device, amp=cfg.learner.amp)
        self.updates = 0  # critic updates (= batches consumed)
        self.learner_steps = 0  # one actor update each, after sac.critic_actor_ratio critic updates
        self.checkpoint_dir = Path(cfg.runner.run_dir) / "checkpoints"
        self.checkpoint_failures = 0  # checkpoints that could not be written (a full disk)
        self.nonfinite_weights = 0  # publications and checkpoints refused because a weight was NaN/Inf
        resumed_version = self._resume() if self._should_resume() else 0
        self.publisher = WeightsPublisher(self.rt.ctx, endpoint(cfg, "weights", bind=True))
        self.publisher.policy_version = resumed_version
        source = resolved_batch_source(cfg.learner.batch_source, self.device)
        # The maps live in the learner's copy of the buffer; where batch_source=auto picks the service's batches
        # (a CPU learner) the frames are kept and shifted afresh each time instead (the config check refuses an
        # explicit batch_source=service).
        stored = sac_cfg.stored_features and source == "device"
        if sac_cfg.stored_features and not stored:
            self.log.info(f"sac.stored_features is off here: on {self.device} the batches come from the replay "
                          "service, which keeps frames")
        encoder = self.agent.encoder if stored else None
        shifts = sac_cfg.stored_shifts if encoder is not None and sac_cfg.augment_pad > 0 else 1
        self.copy = DeviceReplay(self.device, seeding.seed_of(cfg.runner.seed, "replay_sample"), encoder=encoder,
                                 shift_pad=sac_cfg.augment_pad if encoder is not None else 0, shifts=shifts) \
            if source == "device" else None
        where = "by the replay service" if self.copy is None else f"on {self.device}, from a copy of the buffer" + \
            (f" that keeps the frozen backbone's feature maps of {shifts} cop{'y' if shifts == 1 else 'ies'} of each "
             "frame" if encoder is not None else "")
        self.log.info(f"training batches are sampled {where}")
        self.fetcher = BatchFetcher(self.rt.ctx, endpoint(cfg, "replay_learner", bind=False), self.sac_cfg.batch_size,
                                    cfg.replay.prefetch, self.device,
                                    curve=curve_side(cfg, "replay_learner", "client"), copy=self.copy).start()

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
        self.learner_steps += 1
        return metrics

    def _finite_weights(self, weights: dict[str, np.ndarray], what: str) -> bool:
        bad = [k for k, v in weights.items() if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()]
        if bad:
            self.nonfinite_weights += 1
            if self.nonfinite_weights <= 10 or self.nonfinite_weights % 1000 == 0:
                self.log.error(f"not {what}: weights {bad[:5]} hold NaN or Inf (#{self.nonfinite_weights})")
        return not bad

    def _publish(self, final: bool = False) -> None:
        weights = self.weights()
        if not self._finite_weights(weights, "publishing"):
            return  # the actors keep the last finite weights
        self.publisher.publish(weights, {"updates": self.updates, "learner_steps": self.learner_steps, "final": final,
                                         "env_steps": self.fetcher.env_steps})

    # -- checkpoints -------------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        if not self._finite_weights({k: v.detach().cpu().numpy() for k, v in self.agent.state_dict().items()},
                                    "checkpointing"):
            return  # keep the previous (finite) checkpoints
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {"sac": self.sac.state_dict(), "updates": self.updates, "learner_steps": self.learner_steps,
                 "env_steps": self.fetcher.env_steps, "policy_version": self.publisher.policy_version, "rng": rng,
                 "config": dataclasses.asdict(self.cfg)}
        meta = {"run_id": self.cfg.runner.run_id, "updates": self.updates, "learner_steps": self.learner_steps}
        t0 = time.time()
        try:
            path = save_checkpoint(state, self.checkpoint_dir, keep=self.cfg.runner.keep_checkpoints,
                                   label=f"u{self.updates}", meta=meta)
        except OSError as e:  # a full disk: the previous checkpoints are untouched (written whole or not at all)
            self.checkpoint_failures += 1
            self.log.error(f"checkpoint not written ({e.strerror or e}): the previous checkpoint stays the newest")
            return
        self.log.info(f"checkpoint written: {path} ({self.updates:,} updates, {time.time() - t0:.2f} s)")

    def _should_resume(self) -> bool:
        """Resume when asked to, or when this process replaces a learner of the same launch that crashed."""
        if self.cfg.runner.resume:
            return True
        newest = list_checkpoints(self.checkpoint_dir)
        if not newest or not self.cfg.runner.run_id:
            return False
        try:
            same_launch = checkpoint_meta(newest[0]).get("run_id") == self.cfg.runner.run_id
        except CorruptError:  # a damaged manifest: load_latest_checkpoint reports it and uses the previous one
            same_launch = True
        if same_launch:
            self.log.info("a checkpoint of this launch exists: this learner replaces one that crashed; resuming")
        return same_launch

    def _resume(self) -> int:
        """Load the newest intact checkpoint; returns the policy version to continue from (0: none)."""
        found = load_latest_checkpoint(self.checkpoint_dir, self.log)  # raises CheckpointError: none intact
        if found is None:
            damaged = sorted(p.name for p in self.checkpoint_dir.glob("ckpt-*.corrupt")) \
                if self.checkpoint_dir.is_dir() else []
            if damaged:  # an earlier attempt found them damaged and set them aside: still nothing to resume from
                raise CheckpointError(f"no intact checkpoint in {self.checkpoint_dir}: only damaged ones "
                                      f"({', '.join(damaged)})")
            if self.cfg.runner.resume:
                raise CheckpointError(f"runner.resume=true, but {self.checkpoint_dir} holds no checkpoint")
            self.log.info(f"no checkpoint in {self.checkpoint_dir}: starting fresh")
            return 0
        state, path = found
        self.sac.load_state_dict(state["sac"])
        # Checkpoints written before the renames said "steps" and "weights_version".
        self.updates, self.learner_steps = int(state["updates"]), int(state.get("learner_steps", state.get("steps")))
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        # Actors that outlived a crashed learner hold weights it published after this checkpoint, and they
        # ignore versions they have seen. Skip past every version it can have published since: one per
        # publish_every learner steps over a checkpoint interval, plus its first and last.
        steps_per_interval = self.cfg.runner.checkpoint_every_updates / max(1, self.sac_cfg.critic_actor_ratio)
        skip = int(np.ceil(steps_per_interval / max(1, self.cfg.learner.publish_every))) + 3
        version = int(state.get("policy_version", state.get("weights_version"))) + skip
        self.log.info(f"resumed from {path}: {self.updates:,} updates, {self.learner_steps:,} learner steps, "
                      f"policy version {version}")
        return version

    def _counters(self) -> dict:
        return {"updates": self.updates, "learner_steps": self.learner_steps,
                "policy_version": self.publisher.policy_version,
                "skipped_updates": self.sac.skipped_updates, "nonfinite_weights": self.nonfinite_weights,
                "checkpoint_failures": self.checkpoint_failures,
                **({} if self.copy is None else {"copy_transitions": len(self.copy), "copy_resets": self.copy.resets})}

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
                if self.learner_steps % cfg.learner.publish_every == 0:
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
                self.rt.report(counters=self._counters(), scalars=scalars)
                interval_metrics, busy, updates_at_report, last_report = [], 0.0, self.updates, now
        self.log.info(f"stopping ({self.rt.stop_reason}) after {self.updates:,} updates")
        self.fetcher.stop()
        self._publish(final=True)
        self._checkpoint()
        self.rt.report(counters=self._counters())
        self.publisher.close()
        self.rt.close()
        return 0
