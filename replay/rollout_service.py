"""The replay role of an on-policy run: a versioned rollout store behind the same two sockets.

The process, its sockets and its poll loop are replay/role.py's, the session with each actor
wire/session.py's (each part's reply says its outcome: accepted, stale or duplicate):
  actors  -> register / chunk / heartbeat / bye;  <- credit
  learner -> sample (policy_version = the version it wants);  <- batch (that version's whole rollout)

The round trip of one version v:
  learner publishes weights v and asks for rollout v -> every actor acts with v for rollout_len
  steps and sends its rollout (in parts, each tagged with v) -> when all expected actors are in (or
  the time-out passed) the store sends the learner the concatenated rollout -> the learner updates
  and publishes v + 1. The store's bookkeeping of versions, stale chunks and actors that come and
  go is in replay/rollout_store.py.
Credits flow as in the off-policy service: a registration grants actor.credits, and each part filed
(whatever its outcome) gives one back at once, so an actor has at most that many parts in flight.
"""
from __future__ import annotations

import time

from core.config import RunConfig
from replay.role import ReplayRole
from replay.rollout_store import RolloutError, RolloutStore
from wire import protocol
from wire.protocol import Kind
from wire.schema import Spec
from wire.session import ActorSession, Reply

LOG_FIRST = 10  # stale chunks and short versions are logged one by one; after that, one in LOG_EVERY
LOG_EVERY = 100


class RolloutService(ReplayRole):
    what = "rollout store"

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg, snapshots=False, policy_version=lambda: self.store.version)
        self.store = RolloutStore(timeout_s=cfg.replay.rollout_timeout_s)
        self.spec: Spec | None = None
        self.request: tuple[list, int, int] | None = None  # the learner's pending (route, seq, version)
        self.episodes: list = []

    # -- actors (the session is replay/actor_port.py's; these are the store's parts of it) -------------
    def spec_problem(self, spec: Spec) -> str | None:
        if self.spec is not None and spec != self.spec:
            return f"observation/action spec {spec} differs from the other actors' {self.spec}"
        self.spec = spec
        return None

    def on_registered(self, name: str, meta: dict) -> dict:
        self.store.register(name)
        return {}

    def on_left(self, name: str) -> None:
        self.store.leave(name)

    def on_chunk(self, actor: ActorSession, msg: protocol.Message) -> list[Reply]:
        meta = msg.meta
        try:
            outcome = self.store.add_chunk(msg.sender, msg.policy_version, meta.get("part"), meta.get("parts"),
                                           msg.arrays, meta, time.time())
        except RolloutError as e:
            self.rt.rejects.reject(protocol.ProtocolError("bad_chunk", str(e)), msg.sender)
            return [self.sessions.rejected(actor, msg.seq, reason=str(e))]
        if outcome == "stale":
            n = self.store.stale_chunks
            if n <= LOG_FIRST or n % LOG_EVERY == 0:
                self.log.warning(f"dropped a stale chunk from {msg.sender}: policy version {msg.policy_version}, "
                                 f"the store is at {self.store.version}"
                                 f"{' (handed out)' if self.store.closed else ''}; {n} stale chunk(s) so far")
        replies, _ = self.sessions.filed(actor, msg.seq, outcome)
        return replies

    # -- learner -----------------------------------------------------------------------------------
    def on_sample(self, route: list, msg: protocol.Message) -> None:
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
            self.report()  # at once: the monitor's stop condition reads env_steps from this report

    def tick(self) -> None:
        """Hand the learner the rollout it asked for, once the store has it."""
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
                "missing": taken.missing, "stale_chunks": self.store.stale_chunks,
                # for the learner's no-success alarm (learner/alarms.py); an episode is [return, length, success]
                "episodes_done": len(taken.episodes), "episodes_succeeded": sum(bool(e[2]) for e in taken.episodes)}
        protocol.send(self.learner_sock, Kind.BATCH, taken.rollout, sender="replay", route=route, seq=seq,
                      policy_version=taken.version, meta=meta)
        self.episodes.extend(taken.episodes)

    def finish(self) -> None:
        self.log.info(f"stopping ({self.rt.stop_reason}); handed out {self.store.versions_served} rollouts, "
                      f"{self.store.env_steps_served:,} env steps; dropped {self.store.stale_chunks} stale chunk(s)")

    def report(self) -> None:
        episodes, self.episodes = self.episodes, []
        store = self.store
        self.rt.report(
            # duplicates: resent sequence numbers (the session's) and parts the store already held
            counters={"env_steps": store.env_steps, "env_steps_served": store.env_steps_served,
                      "rollouts_served": store.versions_served,
                      "stale_chunks": store.stale_chunks, "stale_env_steps": store.stale_env_steps,
                      **self.sessions.counters(), "rollout_timeouts": store.timeouts,
                      "duplicates": self.sessions.duplicates + store.duplicate_chunks},
            scalars={"replay/actors": len(self.sessions.connected()), "replay/policy_version": store.version,
                     "replay/rollouts_pending": len(store.missing()) if not store.closed else 0},
            episodes=episodes)
