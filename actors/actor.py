"""The actor process: steps a vector of envs with the newest policy and pushes chunks to replay.

Its loop never blocks on the learner: new weights are picked up when they have
arrived (a non-blocking drain of the weights subscription). It blocks only
when it holds no credit from the replay service, which is the back-pressure
that keeps memory bounded when the learner falls behind.
"""
from __future__ import annotations

import collections
import os
import time

import numpy as np
import zmq
from omegaconf import DictConfig

from actors.chunk import ChunkBuilder
from actors.weights import WeightsSubscriber
from core.devices import resolve_device
from core.net import endpoint, make_socket
from core.role_runtime import RoleRuntime
from core.roles import Actor
from envs import make_vector_env
from policies.build import build_policy
from replay.buffer import Spec, flatten
from wire import protocol
from wire.protocol import Kind


def observation_spec(obs_space, action_space) -> Spec:
    import gymnasium as gym

    if isinstance(obs_space, gym.spaces.Dict):
        obs = {k: (tuple(s.shape), str(s.dtype)) for k, s in flatten(dict(obs_space.spaces), "").items()}
    else:
        obs = {"": (tuple(obs_space.shape), str(obs_space.dtype))}
    if isinstance(action_space, gym.spaces.Discrete):
        action = ((), "int64")
    else:
        action = (tuple(action_space.shape), "float32")
    return Spec(obs=obs, action=action)


class ChunkedActor(Actor):
    def __init__(self, cfg: DictConfig, index: int):
        self.cfg, self.index = cfg, index
        self.name = f"actor-{index}"
        self.rt = RoleRuntime(cfg, "actor", self.name)
        self.log = self.rt.log
        devices = list(cfg.actor.devices)
        self.device = resolve_device(devices[index % len(devices)] if devices else cfg.actor.device)
        self.env = make_vector_env(cfg.env)
        self.spec = observation_spec(self.env.single_observation_space, self.env.single_action_space)
        self.policy = build_policy(cfg, self.env.single_observation_space, self.env.single_action_space,
                                   self.device, seed=cfg.runner.seed + index)
        self.weights = WeightsSubscriber(self.rt.ctx, endpoint(cfg, "weights", bind=False))
        self.replay = make_socket(self.rt.ctx, zmq.DEALER, curve="client")
        self.replay.connect(endpoint(cfg, "replay_actors", bind=False))
        self.rng = np.random.default_rng(cfg.runner.seed * 1000 + index)
        self.credits = 0
        self.seq = 0  # sequence number of the last chunk sent
        self.unacked: collections.OrderedDict[int, tuple[dict, dict]] = collections.OrderedDict()
        self.env_steps = 0
        self.registered = False

    # -- talking to the replay service -------------------------------------------------------------
    def _register(self) -> None:
        protocol.send(self.replay, Kind.REGISTER, sender=self.name,
                      meta={"spec": self.spec.to_meta(), "pid": os.getpid(), "device": self.device})
        self._last_register = time.time()

    def _handle_replay_messages(self, timeout_ms: int) -> None:
        if not self.replay.poll(timeout_ms):
            return
        while True:
            try:
                _, msg = protocol.recv(self.replay, flags=zmq.NOBLOCK, kinds={Kind.CREDIT})
            except zmq.Again:
                return
            except protocol.ProtocolError as e:
                self.rt.rejects.reject(e, "replay")
                continue
            if msg.meta.get("refused"):
                raise RuntimeError(f"replay service refused {self.name}: {msg.meta['refused']}")
            if msg.meta.get("reregister"):
                self.log.info("replay service does not know this actor (it restarted?): registering again")
                self.registered = False
                self._register()
                continue
            if "last_seq" in msg.meta:
                acked = int(msg.meta["last_seq"])
                for s in [s for s in self.unacked if s <= acked]:
                    del self.unacked[s]
            if not self.registered:
                # The reply to a registration: start from a clean slate of credits and resend what was lost.
                self.registered = True
                self.credits = int(msg.meta.get("credits", 0))
                for seq, (arrays, meta) in list(self.unacked.items()):
                    self._send_chunk(seq, arrays, meta)
                continue
            self.credits += int(msg.meta.get("credits", 0))

    def _send_chunk(self, seq: int, arrays: dict, meta: dict) -> None:
        protocol.send(self.replay, Kind.CHUNK, arrays, sender=self.name, seq=seq,
                      policy_version=meta["policy_version"], meta=meta)
        self.credits -= 1

    def _wait_for_credit(self) -> None:
        waited_since = time.time()
        said = False
        while self.credits <= 0 and not self.rt.should_stop():
            self._handle_replay_messages(100)
            self._housekeeping()
            if not said and time.time() - waited_since > 30:
                self.log.info("waiting for the replay service (no credit: learner behind or replay down)")
                said = True
            if not self.registered and time.time() - self._last_register > 2:
                self._register()

    def _housekeeping(self) -> None:
        now = time.time()
        if now - self._last_heartbeat >= self.cfg.actor.heartbeat_s:
            protocol.send(self.replay, Kind.HEARTBEAT, sender=self.name, flags=zmq.NOBLOCK)
            self._last_heartbeat = now
        if now - self._last_report >= self.cfg.runner.log_every_s:
            self.rt.report(counters={"actor_env_steps": self.env_steps},
                           scalars={"actor/policy_version": self.weights.version})
            self._last_report = now

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        cfg = self.cfg
        self._last_heartbeat = self._last_report = 0.0
        self._register()
        self.log.info(f"{cfg.env.num_envs} x {cfg.env.id} on {self.device}; chunks of {cfg.actor.chunk_len} steps")
        obs = self.env.reset(seed=cfg.runner.seed * 1000 + 100 * self.index)
        chunk = ChunkBuilder(self.env.num_envs, cfg.actor.chunk_len, self.spec.action[0], self.spec.action[1])
        chunk.start(obs)
        episodes: list = []
        while not self.rt.should_stop():
            new = self.weights.poll()
            if new is not None:
                self.policy.load_weights(new)
            if self.env_steps < cfg.actor.random_steps or self.weights.version == 0:
                action = np.stack([self.env.single_action_space.sample() for _ in range(self.env.num_envs)])
            else:
                action = self.policy.act(obs)
            obs, reward, terminated, truncated, info = self.env.step(action)
            self.env_steps += self.env.num_envs
            for b in np.flatnonzero(info["done"]):
                episodes.append([float(info["episode_return"][b]), int(info["episode_length"][b]),
                                 bool(info["episode_success"][b])])
            if chunk.add(action, reward, terminated, truncated, obs, info["final_obs"]):
                self._wait_for_credit()
                if self.rt.should_stop():
                    break
                self.seq += 1
                meta = {"policy_version": self.weights.version, "episodes": episodes}
                arrays = chunk.finish()
                self.unacked[self.seq] = (arrays, meta)
                self._send_chunk(self.seq, arrays, meta)
                episodes = []
                chunk.start(obs)
            self._handle_replay_messages(0)
            self._housekeeping()
        self.log.info(f"stopping ({self.rt.stop_reason}) after {self.env_steps:,} env steps")
        protocol.send(self.replay, Kind.BYE, sender=self.name, meta={"reason": self.rt.stop_reason},
                      flags=zmq.NOBLOCK)
        self.replay.close(linger=500)
        self.weights.close()
        self.env.close()
        self.rt.close()
        return 0
