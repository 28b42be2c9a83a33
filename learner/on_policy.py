"""The on-policy learner process (PPO, GRPO): one update per rollout, in lock step with the actors.

    publish weights v -> ask the rollout store for rollout v -> update on it -> publish v + 1 -> ...

While it waits for a rollout it republishes the newest weights now and then, so that an actor
that joins late (or lost a message) still gets version v and can deliver its part of rollout v.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import zmq
from omegaconf import DictConfig, OmegaConf

from core import seeding
from core.devices import prepare_learner_device
from core.net import endpoint, make_socket
from core.role_runtime import RoleRuntime
from core.roles import Learner
from envs import env_spaces
from learner.checkpoint import load_latest_checkpoint, save_checkpoint
from learner.grpo import GRPO, GRPOConfig
from learner.ppo import PPO, PPOConfig
from learner.weights_publisher import WeightsPublisher
from policies.actor_critic import ActorCritic
from wire import protocol
from wire.protocol import Kind

REPUBLISH_WHILE_WAITING_S = 1.0


def to_tensors(tree, device: torch.device):
    """Received (read-only) arrays -> tensors on `device` (one copy)."""
    if isinstance(tree, dict):
        return {k: to_tensors(v, device) for k, v in tree.items()}
    return torch.tensor(np.asarray(tree), device=device)


class OnPolicyLearner(Learner):
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.rt = RoleRuntime(cfg, "learner", "learner")
        self.seed = seeding.seed_of(cfg.runner.seed, "learner")
        self.log = self.rt.log
        self.device = prepare_learner_device(cfg.learner, self.seed)
        obs_space, action_space = env_spaces(cfg.env)
        if cfg.algo == "ppo":
            model = ActorCritic(obs_space, action_space, cfg.policy, with_critic=True, seed=self.seed)
            self.algorithm = PPO(model.to(self.device), PPOConfig(**OmegaConf.to_container(cfg.ppo, resolve=True)),
                                 seed=self.seed)
        elif cfg.algo == "grpo":
            model = ActorCritic(obs_space, action_space, cfg.policy, with_critic=False, seed=self.seed)
            self.algorithm = GRPO(model.to(self.device), GRPOConfig(**OmegaConf.to_container(cfg.grpo, resolve=True)),
                                  seed=self.seed)
        else:
            raise ValueError(f"the on-policy learner runs algo ppo or grpo, not '{cfg.algo}'")
        self.model = model
        self.steps = 0  # rollouts trained on
        self.env_steps = 0  # the store's count of env steps handed out
        self.checkpoint_dir = Path(cfg.runner.run_dir) / "checkpoints"
        self.publisher = WeightsPublisher(self.rt.ctx, endpoint(cfg, "weights", bind=True))
        if cfg.runner.resume:
            self._resume()
        self.replay = make_socket(self.rt.ctx, zmq.DEALER, curve="client")
        self.replay.connect(endpoint(cfg, "replay_learner", bind=False))
        self.wait_s = 0.0  # time spent waiting for the last rollout

    @property
    def updates(self) -> int:
        return self.algorithm.gradient_steps

    def weights(self) -> dict[str, np.ndarray]:
        # A copy: the optimiser changes parameters in place while ZeroMQ may still be sending the buffers.
        return {k: v.detach().to("cpu", copy=True).numpy() for k, v in self.model.acting_weights().items()}

    def _publish(self, final: bool = False) -> None:
        self.publisher.publish(self.weights(), {"updates": self.updates, "steps": self.steps, "final": final,
                                                "env_steps": self.env_steps})

    def fetch_rollout(self) -> protocol.Message | None:
        """Ask for the rollout of the newest published version and wait for it; None if the run stops first."""
        version = self.publisher.version
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
        metrics = self.algorithm.train(to_tensors(msg.arrays, self.device), progress)
        self.steps += 1
        metrics.update({"learner/update_s": time.time() - t0, "learner/rollout_wait_s": self.wait_s,
                        "learner/rollout_actors": len(msg.meta.get("actors", [])),
                        "learner/rollout_missing_actors": len(msg.meta.get("missing", []))})
        return metrics

    def _checkpoint(self) -> None:
        state = {"algorithm": self.algorithm.state_dict(), "version": self.publisher.version, "steps": self.steps,
                 "env_steps": self.env_steps, "torch_rng": torch.get_rng_state(),
                 "config": OmegaConf.to_container(self.cfg, resolve=True)}
        path = save_checkpoint(state, self.checkpoint_dir, keep=self.cfg.runner.keep_checkpoints,
                               label=f"u{self.updates}",
                               meta={"run_id": self.cfg.runner.run_id, "updates": self.updates})
        self.log.info(f"checkpoint written: {path} (version {self.publisher.version}, {self.updates:,} updates)")

    def _resume(self) -> None:
        found = load_latest_checkpoint(self.checkpoint_dir, self.log)  # the newest intact one
        if found is None:
            self.log.info(f"no checkpoint in {self.checkpoint_dir}: starting fresh")
            return
        state, path = found
        self.algorithm.load_state_dict(state["algorithm"])
        self.steps, self.env_steps = int(state["steps"]), int(state["env_steps"])
        self.publisher.version = int(state["version"])  # versions keep growing across the restart
        torch.set_rng_state(state["torch_rng"])
        self.log.info(f"resumed from {path}: version {self.publisher.version}, {self.updates:,} updates")

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
            self.rt.report(counters={"updates": self.updates, "learner_steps": self.steps,
                                     "policy_version": self.publisher.version}, scalars=metrics)
            if self.updates - last_ckpt >= cfg.runner.checkpoint_every_updates:
                self._checkpoint()
                last_ckpt = self.updates
        self.log.info(f"stopping ({self.rt.stop_reason}) after {self.steps} rollouts, {self.updates:,} updates")
        self._publish(final=True)
        self._checkpoint()
        self.rt.report(counters={"updates": self.updates, "learner_steps": self.steps,
                                 "policy_version": self.publisher.version})
        self.replay.close(0)
        self.publisher.close()
        self.rt.close()
        return 0
