"""The on-policy learner process (PPO, GRPO): one update per rollout, in lock step with the actors.

    publish weights v -> ask the rollout store for rollout v -> update on it -> publish v + 1 -> ...

While it waits for a rollout it republishes the newest weights now and then, so that an actor
that joins late (or lost a message) still gets version v and can deliver its part of rollout v.

With learner.world_size W > 1 this process is rank 0 of W (learner/distributed.py): it starts the other
ranks, broadcasts each rollout to them and trains on it with them; it alone publishes, reports and checkpoints.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import zmq

from core import seeding, tree
from core.config import RunConfig
from core.net import curve_side, endpoint, make_socket
from core.roles import Learner
from learner.alarms import DeadSignalAlarms
from learner.checkpoint import load_latest_checkpoint, save_checkpoint
from learner.distributed import RankGroup
from learner.ppo import OnPolicyAlgorithm
from learner.weights_publisher import WeightsPublisher
from wire import protocol
from wire.protocol import Kind
from wire.runtime import RoleRuntime

REPUBLISH_WHILE_WAITING_S = 1.0


class OnPolicyLearner(Learner):
    def __init__(self, cfg: RunConfig, make_algorithm: Callable[..., OnPolicyAlgorithm],
                 spaces: Callable[[], tuple]):
        """`make_algorithm(obs_space, action_space, device, seed)`: the update (PPO, GRPO) with its model on device;
        `spaces()`: the (obs_space, action_space) it is called with (the pipeline's learner_spaces)."""
        self.cfg = cfg
        self.rt = RoleRuntime(cfg, "learner", "learner")
        self.seed = seeding.seed_of(cfg.runner.seed, "learner")
        self.log = self.rt.log
        obs_space, action_space = spaces()
        # The other ranks start first: they build their algorithm while this process builds its own.
        self.ranks = RankGroup(cfg.learner, make_algorithm, obs_space, action_space, self.seed, self.log)
        self.device = self.ranks.device
        self.algorithm = make_algorithm(obs_space, action_space, self.device, self.seed)
        self.ranks.connect(self.algorithm)  # every rank from this rank's weights
        self.model = self.algorithm.model
        self.alarms = DeadSignalAlarms(self.algorithm.cfg.dead_signal_after, self.log)
        self.learner_steps = 0  # rollouts trained on (one update of algorithm.cfg.epochs passes each)
        self.env_steps = 0  # the store's count of env steps handed out
        self.checkpoint_dir = Path(cfg.runner.run_dir) / "checkpoints"
        self.publisher = WeightsPublisher(self.rt.ctx, endpoint(cfg, "weights", bind=True))
        if cfg.runner.resume:
            self._resume()
        self.replay = make_socket(self.rt.ctx, zmq.DEALER, curve=curve_side(cfg, "replay_learner", "client"))
        self.replay.connect(endpoint(cfg, "replay_learner", bind=False))
        self.wait_s = 0.0  # time spent waiting for the last rollout

    @property
    def updates(self) -> int:
        """Gradient steps (one per minibatch): what eval.every_updates and checkpoint_every_updates count, as SAC's
        critic updates there; learner_steps counts rollouts."""
        return self.algorithm.gradient_steps

    def weights(self) -> dict[str, np.ndarray]:
        # A copy: the optimiser changes parameters in place while ZeroMQ may still be sending the buffers.
        return {k: v.detach().to("cpu", copy=True).numpy() for k, v in self.algorithm.acting_weights().items()}

    def _publish(self, final: bool = False) -> None:
        self.publisher.publish(self.weights(), {"updates": self.updates, "learner_steps": self.learner_steps,
                                                "final": final, "env_steps": self.env_steps})

    def fetch_rollout(self) -> protocol.Message | None:
        """Ask for the rollout of the newest published version and wait for it; None if the run stops first."""
        version = self.publisher.policy_version
        protocol.send(self.replay, Kind.SAMPLE, sender="learner", seq=version, policy_version=version)
        t0 = time.time()
        while not self.rt.should_stop():
            self.publisher.republish_if_stale(REPUBLISH_WHILE_WAITING_S)
            if not self.replay.poll(100):
                continue
            try:
                _, msg = protocol.recv(self.replay, kinds={Kind.BATCH})
            except protocol.ProtocolError as e:
                self.rt.rejects.reject(e, "replay")
                continue
            if msg.meta.get("error"):
                raise RuntimeError(f"the rollout store could not serve version {version}: {msg.meta['error']}")
            if msg.policy_version != version:
                self.log.warning(f"ignored a rollout of version {msg.policy_version}; waiting for {version}")
                continue
            self.wait_s = time.time() - t0
            return msg
        return None

    def step(self) -> dict[str, float]:
        """One rollout, one update; {} if the run stopped while waiting."""
        msg = self.fetch_rollout()
        if msg is None:
            return {}
        self.env_steps = int(msg.meta.get("env_steps", self.env_steps))
        t0 = time.time()
        # The fraction of the run done before this rollout: the first update gets the full learning rate.
        before = self.env_steps - int(msg.meta.get("rollout_env_steps", 0))
        progress = before / max(1, self.cfg.runner.max_env_steps)
        # torch.tensor copies: the received arrays are read-only views of the message's frames.
        rollout = tree.map(lambda a: torch.tensor(np.asarray(a), device=self.device), msg.arrays)
        with self.ranks.guard():
            self.ranks.send("train", {"progress": progress}, rollout)
            metrics = self.algorithm.train(rollout, progress)
        self.learner_steps += 1
        metrics.update(self.alarms.observe(metrics, int(msg.meta.get("episodes_done", 0)),
                                           int(msg.meta.get("episodes_succeeded", 0))))
        metrics.update({"learner/update_s": time.time() - t0, "learner/rollout_wait_s": self.wait_s,
                        "learner/rollout_actors": len(msg.meta.get("actors", [])),
                        "learner/rollout_missing_actors": len(msg.meta.get("missing", []))})
        return metrics

    def _checkpoint(self) -> None:
        state = {"algorithm": self.algorithm.state_dict(), "policy_version": self.publisher.policy_version,
                 "learner_steps": self.learner_steps, "env_steps": self.env_steps, "torch_rng": torch.get_rng_state(),
                 "config": dataclasses.asdict(self.cfg)}
        path = save_checkpoint(state, self.checkpoint_dir, keep=self.cfg.runner.keep_checkpoints,
                               label=f"u{self.updates}",
                               meta={"run_id": self.cfg.runner.run_id, "updates": self.updates})
        self.log.info(f"checkpoint written: {path} (version {self.publisher.policy_version}, {self.updates:,} updates)")

    def _resume(self) -> None:
        found = load_latest_checkpoint(self.checkpoint_dir, self.log)  # the newest intact one
        if found is None:
            self.log.info(f"no checkpoint in {self.checkpoint_dir}: starting fresh")
            return
        state, path = found
        self.algorithm.load_state_dict(state["algorithm"])
        # Checkpoints written before the renames said "steps" and "version".
        self.learner_steps = int(state.get("learner_steps", state.get("steps")))
        self.env_steps = int(state["env_steps"])
        self.publisher.policy_version = int(state.get("policy_version", state.get("version")))  # keeps growing
        torch.set_rng_state(state["torch_rng"])
        self.ranks.send("load", {"path": str(path)})
        self.log.info(f"resumed from {path}: version {self.publisher.policy_version}, {self.updates:,} updates")

    def run(self) -> int:
        cfg = self.cfg
        self.log.info(f"{cfg.algo} on {self.device}: {sum(p.numel() for p in self.model.parameters()):,} parameters")
        self._publish()
        last_ckpt = self.updates
        while not self.rt.should_stop():
            metrics = self.step()
            if not metrics:
                continue
            self._publish()
            self.rt.report(counters={"updates": self.updates, "learner_steps": self.learner_steps,
                                     "policy_version": self.publisher.policy_version}, scalars=metrics)
            if self.updates - last_ckpt >= cfg.runner.checkpoint_every_updates:
                self._checkpoint()
                last_ckpt = self.updates
        self.log.info(f"stopping ({self.rt.stop_reason}) after {self.learner_steps} rollouts, {self.updates:,} updates")
        self._publish(final=True)
        self._checkpoint()
        self.ranks.stop()
        self.rt.report(counters={"updates": self.updates, "learner_steps": self.learner_steps,
                                 "policy_version": self.publisher.policy_version})
        self.replay.close(0)
        self.publisher.close()
        self.rt.close()
        return 0
