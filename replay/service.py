"""The replay service process: ingests actors' chunks, serves batches to the learner.

One thread, one poll loop, two ROUTER sockets:
  actors  -> register / chunk / heartbeat / bye;  <- credit (+ the last accepted sequence number)
  learner -> sample;                               <- batch
Flow control is by credits: an actor may only send a chunk it holds a credit
for. Credits come back when a chunk is stored and the rate limiter allows
more data, so with a paused learner the actors stop instead of filling RAM.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import zmq
from omegaconf import DictConfig

from core.net import endpoint, make_socket
from core.role_runtime import RoleRuntime
from core.roles import ReplayService
from replay.buffer import ChunkError, ReplayBuffer, Spec
from replay.rate_limiter import RateLimiter
from wire import protocol
from wire.protocol import Kind

ACTOR_KINDS = {Kind.REGISTER, Kind.CHUNK, Kind.HEARTBEAT, Kind.BYE}
LEARNER_KINDS = {Kind.SAMPLE, Kind.HEARTBEAT}


@dataclasses.dataclass
class ActorState:
    route: list
    last_seen: float
    last_seq: int = 0  # highest chunk sequence number accepted from this actor (exactly-once)
    owed_credits: int = 0  # credits withheld by the rate limiter, granted when the learner catches up
    chunks: int = 0
    waiting_since: float | None = None


class OffPolicyReplayService(ReplayService):
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.rt = RoleRuntime(cfg, "replay", "replay")
        self.log = self.rt.log
        self.actors_sock = make_socket(self.rt.ctx, zmq.ROUTER, hwm=0, curve="server")
        self.actors_sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.actors_sock.bind(endpoint(cfg, "replay_actors", bind=True))
        self.learner_sock = make_socket(self.rt.ctx, zmq.ROUTER, hwm=0, curve="server")
        self.learner_sock.bind(endpoint(cfg, "replay_learner", bind=True))
        self.buffer: ReplayBuffer | None = None
        self.spec: Spec | None = None
        rl = cfg.replay.rate_limit
        self.limiter = RateLimiter(rl.updates_per_step, cfg.replay.min_size, rl.slack_steps)
        self.actors: dict[str, ActorState] = {}
        self.pending_samples: list[tuple[list, protocol.Message]] = []
        self.rng = np.random.default_rng(cfg.runner.seed + 12345)
        self.episodes: list = []
        self.duplicates = 0
        self.rejected_chunks = 0
        self.started = time.time()

    # -- actors ------------------------------------------------------------------------------------
    def _on_actor_message(self, route: list, msg: protocol.Message) -> None:
        now = time.time()
        actor = self.actors.get(msg.sender)
        if msg.kind == Kind.REGISTER:
            self._register(route, msg)
            return
        if actor is None:
            # An actor we dropped (silent too long) or never saw: tell it to register again.
            protocol.send(self.actors_sock, Kind.CREDIT, sender="replay", meta={"credits": 0, "reregister": True},
                          route=route)
            return
        actor.route, actor.last_seen = route, now
        if msg.kind == Kind.CHUNK:
            self._on_chunk(actor, msg)
        elif msg.kind == Kind.BYE:
            self.log.info(f"{msg.sender} left ({msg.meta.get('reason', 'bye')}) after {actor.chunks} chunks")
            del self.actors[msg.sender]

    def _register(self, route: list, msg: protocol.Message) -> None:
        try:
            spec = Spec.from_meta(msg.meta["spec"])
        except (KeyError, TypeError, ValueError, IndexError) as e:
            self.rt.rejects.reject(protocol.ProtocolError("bad_meta", f"registration without a valid spec: {e}"),
                                   msg.sender)
            return
        if self.spec is None:
            self._create_buffer(spec)
        elif spec != self.spec:
            self.log.error(f"{msg.sender} registered with spec {spec} but the buffer holds {self.spec}; refused")
            protocol.send(self.actors_sock, Kind.CREDIT, sender="replay", route=route,
                          meta={"credits": 0, "refused": "observation/action spec differs from the buffer's"})
            return
        previous = self.actors.get(msg.sender)
        last_seq = previous.last_seq if previous else 0
        self.actors[msg.sender] = ActorState(route=route, last_seen=time.time(), last_seq=last_seq)
        verb = "rejoined" if previous else "joined"
        self.log.info(f"{msg.sender} {verb} (pid {msg.meta.get('pid')}, device {msg.meta.get('device')}); "
                      f"{len(self.actors)} actor(s) connected")
        protocol.send(self.actors_sock, Kind.CREDIT, sender="replay", route=route,
                      meta={"credits": int(self.cfg.actor.credits), "last_seq": last_seq})

    def _create_buffer(self, spec: Spec) -> None:
        cfg = self.cfg.replay
        per = ReplayBuffer.bytes_per_transition(spec, self.cfg.actor.chunk_len)
        capacity = int(cfg.capacity)
        if cfg.capacity_gb > 0:
            capacity = int(cfg.capacity_gb * 1e9 / per)
        self.spec = spec
        self.buffer = ReplayBuffer(spec, capacity, self.cfg.actor.chunk_len)
        self.log.info(f"replay buffer: capacity {capacity:,} transitions, {per:,.0f} bytes per transition "
                      f"(raw observation {spec.obs_bytes():,} bytes, stored once), "
                      f"{self.buffer.nbytes() / 1e9:.2f} GB preallocated")

    def _on_chunk(self, actor: ActorState, msg: protocol.Message) -> None:
        if msg.seq <= actor.last_seq:
            self.duplicates += 1  # a resend after a reconnect: acknowledge, do not store twice
            protocol.send(self.actors_sock, Kind.CREDIT, sender="replay", route=actor.route,
                          meta={"credits": 1, "last_seq": actor.last_seq})
            return
        try:
            n = self.buffer.add_chunk(msg.arrays)
        except ChunkError as e:
            self.rejected_chunks += 1
            self.rt.rejects.reject(protocol.ProtocolError("bad_chunk", str(e)), msg.sender)
            protocol.send(self.actors_sock, Kind.CREDIT, sender="replay", route=actor.route,
                          meta={"credits": 1, "last_seq": actor.last_seq, "rejected_seq": msg.seq})
            return
        actor.last_seq = msg.seq
        actor.chunks += 1
        self.limiter.inserted += n
        self.episodes.extend(msg.meta.get("episodes", []))
        if self.limiter.can_insert():
            protocol.send(self.actors_sock, Kind.CREDIT, sender="replay", route=actor.route,
                          meta={"credits": 1, "last_seq": actor.last_seq})
        else:
            actor.owed_credits += 1
            if actor.waiting_since is None:
                actor.waiting_since = time.time()

    def _grant_owed_credits(self) -> None:
        for name, actor in self.actors.items():
            while actor.owed_credits and self.limiter.can_insert():
                actor.owed_credits -= 1
                actor.waiting_since = None
                protocol.send(self.actors_sock, Kind.CREDIT, sender="replay", route=actor.route,
                              meta={"credits": 1, "last_seq": actor.last_seq})

    def _drop_silent_actors(self) -> None:
        timeout = self.cfg.replay.heartbeat_timeout_s
        now = time.time()
        for name in [n for n, a in self.actors.items() if now - a.last_seen > timeout]:
            self.log.warning(f"{name} left: no heartbeat for {now - self.actors[name].last_seen:.0f} s")
            del self.actors[name]

    # -- learner -----------------------------------------------------------------------------------
    def _serve_samples(self) -> None:
        batch_size = int(self.cfg.sac.batch_size)
        while self.pending_samples and self.buffer is not None and self.limiter.can_sample():
            route, request = self.pending_samples.pop(0)
            batch = self.buffer.sample(int(request.meta.get("batch_size", batch_size)), self.rng)
            self.limiter.updates += 1
            protocol.send(self.learner_sock, Kind.BATCH, batch, sender="replay", seq=request.seq, route=route,
                          meta={"env_steps": self.limiter.inserted, "size": len(self.buffer)})
        self._grant_owed_credits()

    # -- loop --------------------------------------------------------------------------------------
    def serve(self) -> int:
        poller = zmq.Poller()
        poller.register(self.actors_sock, zmq.POLLIN)
        poller.register(self.learner_sock, zmq.POLLIN)
        self.log.info(f"replay service listening for actors on {endpoint(self.cfg, 'replay_actors', True)}")
        last_report = last_wait_log = 0.0
        while not self.rt.should_stop():
            events = dict(poller.poll(100))
            if self.actors_sock in events:
                for _ in range(64):  # drain a burst, then give the learner its turn
                    try:
                        route, msg = protocol.recv(self.actors_sock, route_frames=1, flags=zmq.NOBLOCK,
                                                   kinds=ACTOR_KINDS)
                    except zmq.Again:
                        break
                    except protocol.ProtocolError as e:
                        self.rt.rejects.reject(e, "actor socket")
                        continue
                    self._on_actor_message(route, msg)
            if self.learner_sock in events:
                while True:
                    try:
                        route, msg = protocol.recv(self.learner_sock, route_frames=1, flags=zmq.NOBLOCK,
                                                   kinds=LEARNER_KINDS)
                    except zmq.Again:
                        break
                    except protocol.ProtocolError as e:
                        self.rt.rejects.reject(e, "learner socket")
                        continue
                    if msg.kind == Kind.SAMPLE:
                        self.pending_samples.append((route, msg))
            self._serve_samples()
            now = time.time()
            if now - last_report >= self.cfg.runner.log_every_s:
                self._drop_silent_actors()
                self._report()
                last_report = now
            waiting = [n for n, a in self.actors.items() if a.waiting_since and now - a.waiting_since > 30]
            if waiting and now - last_wait_log > 60:
                self.log.info(f"{', '.join(waiting)} waiting: the learner is behind the update-to-data ratio "
                              f"(debt {self.limiter.debt():.0f} updates)")
                last_wait_log = now
        self.log.info(f"stopping ({self.rt.stop_reason}); stored {self.limiter.inserted:,} env steps")
        self._report()
        self.actors_sock.close(0)
        self.learner_sock.close(0)
        self.rt.close()
        return 0

    def _report(self) -> None:
        episodes, self.episodes = self.episodes, []
        self.rt.report(
            counters={"env_steps": self.limiter.inserted, "updates_served": self.limiter.updates,
                      "duplicates": self.duplicates, "rejected_chunks": self.rejected_chunks},
            scalars={"replay/size": len(self.buffer) if self.buffer else 0,
                     "replay/actors": len(self.actors),
                     "replay/actors_waiting": sum(1 for a in self.actors.values() if a.owed_credits),
                     "replay/mem_gb": self.buffer.nbytes() / 1e9 if self.buffer else 0.0},
            episodes=episodes,
            actors={name: {"chunks": a.chunks, "last_seq": a.last_seq, "waiting": bool(a.owed_credits)}
                    for name, a in self.actors.items()})


def main(run_dir: str) -> int:
    from core.config import read_run_config

    cfg = read_run_config(run_dir)
    return OffPolicyReplayService(cfg).serve()
