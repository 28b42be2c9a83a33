"""The replay role of an on-policy run: a versioned rollout store behind the same two sockets.

One thread, one poll loop, two ROUTER sockets (the endpoints of the off-policy service):
  actors  -> register / chunk / heartbeat / bye;  <- ack (registered, refused, chunk accepted or stale)
  learner -> sample (policy_version = the version it wants);  <- batch (that version's whole rollout)

The round trip of one version v:
  learner publishes weights v and asks for rollout v -> every actor acts with v for rollout_len
  steps and sends its rollout (in parts, each tagged with v) -> when all expected actors are in (or
  the time-out passed) the store sends the learner the concatenated rollout -> the learner updates
  and publishes v + 1. The store's bookkeeping of versions, stale chunks and actors that come and
  go is in replay/rollout_store.py.
No credits are needed: an actor sends one rollout per version and then waits for new weights, so
what is in flight is bounded by one rollout per actor.
"""
from __future__ import annotations

import time

import zmq

from core.config import RunConfig
from core.net import endpoint, make_socket
from core.role_runtime import RoleRuntime
from core.roles import ReplayService
from replay.buffer import Spec
from replay.rollout_store import RolloutError, RolloutStore
from wire import protocol
from wire.protocol import Kind

ACTOR_KINDS = {Kind.REGISTER, Kind.CHUNK, Kind.HEARTBEAT, Kind.BYE}
LEARNER_KINDS = {Kind.SAMPLE, Kind.HEARTBEAT}
LOG_FIRST = 10  # stale chunks and short versions are logged one by one; after that, one in LOG_EVERY
LOG_EVERY = 100


class RolloutService(ReplayService):
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.rt = RoleRuntime(cfg, "replay", "replay")
        self.log = self.rt.log
        self.actors_sock = make_socket(self.rt.ctx, zmq.ROUTER, curve="server")
        self.actors_sock.bind(endpoint(cfg, "replay_actors", bind=True))
        self.learner_sock = make_socket(self.rt.ctx, zmq.ROUTER, curve="server")
        self.learner_sock.bind(endpoint(cfg, "replay_learner", bind=True))
        self.store = RolloutStore(timeout_s=cfg.replay.rollout_timeout_s)
        self.spec: Spec | None = None
        self.routes: dict[str, list] = {}  # actor name -> its routing identity
        self.last_seen: dict[str, float] = {}
        self.request: tuple[list, int, int] | None = None  # the learner's pending (route, seq, version)
        self.episodes: list = []
        self.rejected_chunks = 0

    # -- actors ------------------------------------------------------------------------------------
    def _reply(self, route: list, **meta) -> None:
        protocol.send(self.actors_sock, Kind.ACK, sender="replay", route=route, policy_version=self.store.version,
                      meta=meta)

    def _on_actor_message(self, route: list, msg: protocol.Message) -> None:
        if msg.kind == Kind.REGISTER:
            self._register(route, msg)
            return
        if msg.sender not in self.routes:
            self._reply(route, reregister=True)  # dropped as silent, or this service restarted
            return
        self.routes[msg.sender], self.last_seen[msg.sender] = route, time.time()
        if msg.kind == Kind.CHUNK:
            self._on_chunk(route, msg)
        elif msg.kind == Kind.BYE:
            self.log.info(f"{msg.sender} left ({msg.meta.get('reason', 'bye')})")
            self._forget(msg.sender)

    def _register(self, route: list, msg: protocol.Message) -> None:
        try:
            spec = Spec.from_meta(msg.meta["spec"])
        except (KeyError, TypeError, ValueError, IndexError) as e:
            self.rt.rejects.reject(protocol.ProtocolError("bad_meta", f"registration without a valid spec: {e}"),
                                   msg.sender)
            return
        if self.spec is not None and spec != self.spec:
            self.log.error(f"{msg.sender} registered with spec {spec}, the run's is {self.spec}; refused")
            self._reply(route, refused="observation/action spec differs from the other actors'")
            return
        self.spec = spec
        rejoined = msg.sender in self.routes
        self.routes[msg.sender], self.last_seen[msg.sender] = route, time.time()
        self.store.register(msg.sender)
        self.log.info(f"{msg.sender} {'rejoined' if rejoined else 'joined'} (pid {msg.meta.get('pid')}); "
                      f"{len(self.routes)} actor(s); store at version {self.store.version}")
        self._reply(route, registered=True)

    def _forget(self, name: str) -> None:
        self.routes.pop(name, None)
        self.last_seen.pop(name, None)
        self.store.leave(name)

    def _on_chunk(self, route: list, msg: protocol.Message) -> None:
        meta = msg.meta
        try:
            outcome = self.store.add_chunk(msg.sender, msg.policy_version, meta.get("part"), meta.get("parts"),
                                           msg.arrays, meta, time.time())
        except RolloutError as e:
            self.rejected_chunks += 1
            self.rt.rejects.reject(protocol.ProtocolError("bad_chunk", str(e)), msg.sender)
            self._reply(route, seq=msg.seq, outcome="rejected", reason=str(e))
            return
        if outcome == "stale":
            n = self.store.stale_chunks
            if n <= LOG_FIRST or n % LOG_EVERY == 0:
                self.log.warning(f"dropped a stale chunk from {msg.sender}: policy version {msg.policy_version}, "
                                 f"the store is at {self.store.version}"
                                 f"{' (handed out)' if self.store.closed else ''}; {n} stale chunk(s) so far")
        self._reply(route, seq=msg.seq, outcome=outcome)

    def _drop_silent_actors(self) -> None:
        now = time.time()
        for name in [n for n, t in self.last_seen.items() if now - t > self.cfg.replay.heartbeat_timeout_s]:
            self.log.warning(f"{name} left: no message for {now - self.last_seen[name]:.0f} s")
            self._forget(name)

    # -- learner -----------------------------------------------------------------------------------
    def _on_learner_message(self, route: list, msg: protocol.Message) -> None:
        if msg.kind != Kind.SAMPLE:
            return
        trained = self.store.env_steps
        try:
            self.store.request(msg.policy_version)
        except RolloutError as e:
            self.log.error(str(e))
            protocol.send(self.learner_sock, Kind.BATCH, sender="replay", route=route, seq=msg.seq,
                          policy_version=self.store.version, meta={"error": str(e)})
            return
        self.request = (route, msg.seq, msg.policy_version)
        if self.store.env_steps != trained:
            self._report()  # at once: the monitor's stop condition reads env_steps from this report

    def _serve_rollout(self) -> None:
        if self.request is None:
            return
        route, seq, version = self.request
        if self.store.version != version:  # a chunk of a newer version came: the learner must have restarted
            self.request = None
            protocol.send(self.learner_sock, Kind.BATCH, sender="replay", route=route, seq=seq,
                          policy_version=self.store.version,
                          meta={"error": f"the store moved on to version {self.store.version} (actors hold it)"})
            return
        if not self.store.ready(time.time()):
            return
        taken = self.store.take()
        self.request = None
        if taken.missing and (self.store.timeouts <= LOG_FIRST or self.store.timeouts % LOG_EVERY == 0):
            self.log.warning(f"version {taken.version}: no rollout from {', '.join(taken.missing)} within "
                             f"{self.store.timeout_s:.0f} s; training on {len(taken.actors)} actor(s)' rollouts "
                             f"({self.store.timeouts} version(s) short so far)")
        meta = {"env_steps": self.store.env_steps_served, "rollout_env_steps": taken.env_steps, "actors": taken.actors,
                "missing": taken.missing, "stale_chunks": self.store.stale_chunks}
        protocol.send(self.learner_sock, Kind.BATCH, taken.rollout, sender="replay", route=route, seq=seq,
                      policy_version=taken.version, meta=meta)
        self.episodes.extend(taken.episodes)

    # -- loop --------------------------------------------------------------------------------------
    def _drain(self, sock: zmq.Socket, kinds: set, handle, where: str, limit: int = 64) -> None:
        for _ in range(limit):
            try:
                route, msg = protocol.recv(sock, route_frames=1, flags=zmq.NOBLOCK, kinds=kinds)
            except zmq.Again:
                return
            except protocol.ProtocolError as e:
                self.rt.rejects.reject(e, where)
                continue
            handle(route, msg)

    def serve(self) -> int:
        poller = zmq.Poller()
        poller.register(self.actors_sock, zmq.POLLIN)
        poller.register(self.learner_sock, zmq.POLLIN)
        self.log.info(f"rollout store listening for actors on {endpoint(self.cfg, 'replay_actors', True)}")
        last_report = 0.0
        while not self.rt.should_stop():
            events = dict(poller.poll(100))
            if self.actors_sock in events:
                self._drain(self.actors_sock, ACTOR_KINDS, self._on_actor_message, "actor socket")
            if self.learner_sock in events:
                self._drain(self.learner_sock, LEARNER_KINDS, self._on_learner_message, "learner socket")
            self._serve_rollout()
            if time.time() - last_report >= self.cfg.runner.log_every_s:
                self._drop_silent_actors()
                self._report()
                last_report = time.time()
        self.log.info(f"stopping ({self.rt.stop_reason}); handed out {self.store.versions_served} rollouts, "
                      f"{self.store.env_steps_served:,} env steps; dropped {self.store.stale_chunks} stale chunk(s)")
        self._report()
        self.actors_sock.close(0)
        self.learner_sock.close(0)
        self.rt.close()
        return 0

    def _report(self) -> None:
        episodes, self.episodes = self.episodes, []
        store = self.store
        self.rt.report(
            counters={"env_steps": store.env_steps, "env_steps_served": store.env_steps_served,
                      "rollouts_served": store.versions_served,
                      "stale_chunks": store.stale_chunks, "stale_env_steps": store.stale_env_steps,
                      "duplicate_chunks": store.duplicate_chunks, "rejected_chunks": self.rejected_chunks,
                      "rollout_timeouts": store.timeouts},
            scalars={"replay/actors": len(self.routes), "replay/policy_version": store.version,
                     "replay/rollouts_pending": len(store.missing()) if not store.closed else 0},
            episodes=episodes)
