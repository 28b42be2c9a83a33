"""The actor <-> replay session, both ends, as socket-free state machines.

One session serves both families: the off-policy replay buffer and the on-policy rollout store; only
the store behind the service differs. Messages (wire/protocol.py kinds)::

    actor                                   replay role
    REGISTER {spec, pid, device, shm?}  ->  CREDIT {registered, credits, last_seq, durable_seq, shm?, shm_problem?}
                                        <-  CREDIT {refused: why}                  (spec differs, too many actors)
    CHUNK #seq {policy_version, ...}    ->  CREDIT {credits: 1, last_seq, durable_seq, outcome?, rejected_seq?}
    HEARTBEAT                           ->  (nothing)
    anything from an unknown actor      ->  CREDIT {reregister}
    BYE {reason}                        ->

Every reply is a CREDIT message with this one vocabulary:

    credits       chunks the actor may send more (a registration grants actor.credits; each chunk
                  filed, rejected or found a duplicate gives one back, when the store agrees)
    last_seq      the service holds every chunk of this actor through this sequence number
    durable_seq   ... and a snapshot holds every one through this one (= last_seq where there are no
                  snapshots): the actor may drop those from its resend buffer
    registered    the reply to a registration; reregister: the service does not know the sender
                  (it restarted, or dropped a silent actor); refused: registration refused, and why
    rejected_seq  the chunk of that number was malformed and is not stored
    outcome       what the store did with the chunk: accepted, stale, duplicate (on-policy parts)

Exactly once: chunks carry (actor name, sequence number); the service files each number once (a
duplicate is acknowledged, not stored) and counts skipped numbers as lost. The numbers survive an
actor's restart (the registration reply says where its predecessor stopped) and the service's restart
(`ServiceSession.state` goes into the replay snapshot).

`ClientSession` is the actor's end, `ServiceSession` the service's; both take what arrived and return
what to send, and neither touches a socket (actors/replay_writer.py and replay/actor_port.py do).
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Callable

from core import tree
from wire.protocol import Kind
from wire.shared_memory import SlotWriter

REGISTER_RETRY_S = 2.0  # an unregistered actor registers again this often
REREGISTER_REPLIES_S = 1.0  # the replies to messages sent while unknown ask once: register once within this


class SessionRefused(RuntimeError):
    """The service refused this actor's registration; the message says why."""


@dataclasses.dataclass
class Outgoing:
    """A message for the socket wrapper to send."""

    kind: str
    seq: int = 0
    arrays: dict | None = None
    meta: dict = dataclasses.field(default_factory=dict)
    policy_version: int = 0
    resend: bool = False  # a chunk sent again after a re-registration


@dataclasses.dataclass
class Reply:
    """A CREDIT message the service sends to the actor at `route`."""

    route: list
    meta: dict


# --------------------------------------------------------------------------------------------
# The actor's end


@dataclasses.dataclass
class _Kept:
    arrays: dict
    meta: dict
    policy_version: int
    nbytes: int


class ClientSession:
    """Registration, credits, sequence numbers, the resend buffer, shared-memory slots and heartbeats.

    The resend buffer holds every chunk sent that no snapshot holds yet (seq > durable_seq), oldest first:
    after a re-registration the chunks the service does not hold are sent again. Over
    `resend_buffer_bytes` the oldest chunks the service has *stored* are dropped (counted in
    `released_unsnapshotted`); a chunk not yet stored is never dropped (at most `credits` are in flight).
    """

    def __init__(self, name: str, register_meta: dict, *, resend_buffer_bytes: float, heartbeat_s: float,
                 slots: SlotWriter | None = None):
        self.name, self.register_meta = name, dict(register_meta)
        self.resend_buffer_bytes, self.heartbeat_s, self.slots = resend_buffer_bytes, heartbeat_s, slots
        self.registered = False
        self.credits = 0
        self.seq = 0  # sequence number of the last chunk added
        self.stored_seq = 0  # the service holds every chunk through this one
        self.durable_seq = 0  # ... and a snapshot holds every one through this one
        self.resend_buffer: collections.OrderedDict[int, _Kept] = collections.OrderedDict()
        self.resend_buffer_nbytes = 0
        self.resent = 0  # chunks sent again after a re-registration
        self.released_unsnapshotted = 0  # stored chunks dropped from the resend buffer to respect its bound
        self.slots_confirmed: bool | None = None  # whether the service reads our slots (None: not told yet)
        self.shm_problem = ""  # why it does not, as it said
        self.outcomes: collections.Counter = collections.Counter()  # the store's outcomes, rejections included
        self.last_register = self.last_heartbeat = float("-inf")

    # -- what to send ------------------------------------------------------------------------------
    def register(self, now: float) -> list[Outgoing]:
        self.last_register = now
        meta = dict(self.register_meta)
        if self.slots is not None:
            meta["shm"] = {"segment": self.slots.name, "token": self.slots.token}
        return [Outgoing(Kind.REGISTER, meta=meta)]

    def add(self, arrays: dict, meta: dict, policy_version: int, seq: int | None = None) -> list[Outgoing]:
        """The next chunk (it stays in the resend buffer until durable); uses a credit.

        `seq`: send under this sequence number instead of the next one. Only for tests that provoke
        duplicates and gaps on purpose; the session's own numbering continues after the highest used.
        """
        seq = self.seq + 1 if seq is None else int(seq)
        self.seq = max(self.seq, seq)
        nbytes = sum(a.nbytes for a in tree.leaves(arrays))
        old = self.resend_buffer.pop(seq, None)
        self.resend_buffer_nbytes += nbytes - (old.nbytes if old else 0)
        self.resend_buffer[seq] = _Kept(arrays, dict(meta), int(policy_version), nbytes)
        return [self._chunk(seq, self.resend_buffer[seq])]

    def poll(self, now: float) -> list[Outgoing]:
        """What is due: a heartbeat every heartbeat_s; a registration while unregistered, every REGISTER_RETRY_S."""
        out = []
        if now - self.last_heartbeat >= self.heartbeat_s:
            self.last_heartbeat = now
            out.append(Outgoing(Kind.HEARTBEAT))
        if not self.registered and now - self.last_register > REGISTER_RETRY_S:
            out += self.register(now)
        return out

    def bye(self, reason: str) -> Outgoing:
        return Outgoing(Kind.BYE, meta={"reason": reason})

    def _chunk(self, seq: int, kept: _Kept, resend: bool = False) -> Outgoing:
        arrays, meta = kept.arrays, kept.meta
        if self.slots is not None and self.slots_confirmed:
            arrays, placed = self.slots.place(arrays, seq)
            if placed is not None:
                meta = {**meta, "shm": placed}
        self.credits -= 1
        self.resent += resend
        return Outgoing(Kind.CHUNK, seq=seq, arrays=arrays, meta=meta, policy_version=kept.policy_version,
                        resend=resend)

    def send_failed(self, unsent: list[Outgoing]) -> None:
        """The socket could not take these (the service is down and the queue full): no credit until it answers.
        Their chunks stay in the resend buffer and are sent again after the next registration."""
        for out in unsent:
            if out.kind == Kind.CHUNK:
                if "shm" in out.meta and self.slots is not None:
                    self.slots.release(out.seq)
                self.resent -= out.resend
        if any(out.kind in (Kind.CHUNK, Kind.REGISTER) for out in unsent):
            self.credits, self.registered = 0, False

    # -- what arrived ------------------------------------------------------------------------------
    def on_reply(self, meta: dict, now: float) -> list[Outgoing]:
        """Take one CREDIT message's meta; returns what to send (a registration, resends). Raises
        SessionRefused, and KeyError/TypeError/ValueError for a malformed reply."""
        if meta.get("refused"):
            raise SessionRefused(f"the replay role refused {self.name}: {meta['refused']}")
        if meta.get("reregister"):
            # One reply per message sent while the service did not know us: register once, not once each.
            if self.registered or now - self.last_register > REREGISTER_REPLIES_S:
                self.registered = False
                return self.register(now)
            return []
        if meta.get("registered"):
            return self._on_registered(meta)
        if not self.registered:
            return []
        self._on_acks(int(meta["last_seq"]), int(meta["durable_seq"]))
        if "outcome" in meta:
            self.outcomes[str(meta["outcome"])] += 1
        if "rejected_seq" in meta:
            rejected = int(meta["rejected_seq"])
            self.outcomes["rejected"] += 1
            if self.slots is not None:
                self.slots.release(rejected)  # the service will not read that slot again
            self._drop(rejected)  # sent again it would be rejected again
        self.credits += int(meta.get("credits", 0))
        return []

    def _on_registered(self, meta: dict) -> list[Outgoing]:
        stored = int(meta["last_seq"])
        self.registered = True
        self.credits = int(meta["credits"])
        # A replacement process continues its predecessor's sequence; a service restarted from a snapshot
        # may know less than we were told before, so its word replaces ours.
        self.seq = max(self.seq, stored)
        self.stored_seq, self.durable_seq = stored, min(int(meta["durable_seq"]), stored)
        self._release()
        if self.slots is not None:
            self.slots_confirmed = meta.get("shm") is True
            self.shm_problem = "" if self.slots_confirmed else str(meta.get("shm_problem",
                                                                            "the service did not confirm"))
            self.slots.release_through(stored)
        return [self._chunk(seq, kept, resend=True) for seq, kept in self.resend_buffer.items() if seq > stored]

    def _on_acks(self, stored: int, durable: int) -> None:
        self.stored_seq = max(self.stored_seq, stored)
        if self.slots is not None:
            self.slots.release_through(self.stored_seq)
        self.durable_seq = max(self.durable_seq, min(durable, self.stored_seq))
        self._release()

    def _drop(self, seq: int) -> None:
        kept = self.resend_buffer.pop(seq, None)
        if kept is not None:
            self.resend_buffer_nbytes -= kept.nbytes

    def _release(self) -> None:
        """Drop chunks a snapshot holds; then, over the bound, the oldest ones the service has stored."""
        while self.resend_buffer:
            seq = next(iter(self.resend_buffer))
            if seq > self.durable_seq and (self.resend_buffer_nbytes <= self.resend_buffer_bytes
                                           or seq > self.stored_seq):
                break
            self.released_unsnapshotted += seq > self.durable_seq
            self._drop(seq)


# --------------------------------------------------------------------------------------------
# The service's end


@dataclasses.dataclass
class ActorSession:
    """What the service knows of one actor name. Kept after the actor leaves, so that its sequence numbers
    stay valid if it (or a replacement with the same name) comes back."""

    route: list
    last_seen: float
    last_seq: int = 0  # highest sequence number filed from this actor (exactly-once)
    durable_seq: int = 0  # highest sequence number that the newest snapshot holds
    owed_credits: int = 0  # credits withheld (rate limiter), granted when the store agrees again
    chunks: int = 0  # chunks filed (over the whole run, snapshots included)
    lost: int = 0  # sequence numbers skipped: chunks that never arrived
    waiting_since: float | None = None  # since when it has been owed a credit
    connected: bool = True


@dataclasses.dataclass
class Registration:
    reply: Reply
    actor: ActorSession | None  # None: refused
    rejoined: bool = False  # the name was known (a reconnect, or a replacement process)
    forgotten: list = dataclasses.field(default_factory=list)  # departed names forgotten to make room


class ServiceSession:
    """Per-actor sessions of the replay role: registration, exactly-once filing, credits, time-outs.

    `can_grant()` says whether a credit may be given now (the off-policy rate limiter; on-policy always);
    a credit withheld is owed and granted by `grant_owed` once it says yes. With `snapshots`, durable_seq
    follows the snapshots (`snapshot_written`); without, every stored chunk is durable at once.
    """

    def __init__(self, *, credits: int, max_actors: int, heartbeat_timeout_s: float, snapshots: bool,
                 can_grant: Callable[[], bool] = lambda: True):
        self.credits, self.max_actors, self.heartbeat_timeout_s = int(credits), int(max_actors), heartbeat_timeout_s
        self.snapshots, self.can_grant = snapshots, can_grant
        self.actors: dict[str, ActorSession] = {}
        self.duplicates = 0
        self.lost_chunks = 0
        self.rejected_chunks = 0

    def connected(self) -> dict[str, ActorSession]:
        return {name: a for name, a in self.actors.items() if a.connected}

    def acks(self, actor: ActorSession) -> dict:
        """What every reply to a known actor says: the last chunk held, and the last one a snapshot holds."""
        return {"last_seq": actor.last_seq, "durable_seq": actor.durable_seq if self.snapshots else actor.last_seq}

    @staticmethod
    def refusal(route: list, why: str) -> Reply:
        return Reply(route, {"credits": 0, "refused": why})

    # -- membership --------------------------------------------------------------------------------
    def register(self, name: str, route: list, now: float) -> Registration:
        """A registration whose spec the service accepted: admit (within max_actors) and grant credits."""
        previous = self.actors.get(name)
        connected = len(self.connected())
        if (previous is None or not previous.connected) and connected >= self.max_actors:
            return Registration(self.refusal(route, f"{connected} actors are connected "
                                                    f"(replay.max_actors={self.max_actors})"), None)
        actor = ActorSession(route=route, last_seen=now)
        if previous is not None:
            actor.last_seq, actor.durable_seq = previous.last_seq, previous.durable_seq
            actor.chunks, actor.lost = previous.chunks, previous.lost
        self.actors[name] = actor
        forgotten = self._forget_departed()
        reply = Reply(route, {"credits": self.credits, "registered": True, **self.acks(actor)})
        return Registration(reply, actor, rejoined=previous is not None, forgotten=forgotten)

    def _forget_departed(self) -> list[str]:
        """Keep the sequence numbers of at most max_actors departed names (the longest gone forgotten first)."""
        departed = sorted((a.last_seen, n) for n, a in self.actors.items() if not a.connected)
        forgotten = [name for _, name in departed[: max(0, len(departed) - self.max_actors)]]
        for name in forgotten:
            del self.actors[name]
        return forgotten

    def seen(self, name: str, route: list, now: float) -> ActorSession | Reply:
        """A message other than a registration: the sender's session, or the reply asking it to register."""
        actor = self.actors.get(name)
        if actor is None or not actor.connected:
            return Reply(route, {"credits": 0, "reregister": True})
        actor.route, actor.last_seen = route, now
        return actor

    def leave(self, name: str) -> None:
        """The actor said goodbye or fell silent; its sequence numbers are kept."""
        actor = self.actors[name]
        actor.connected, actor.owed_credits, actor.waiting_since = False, 0, None

    def drop_silent(self, now: float) -> list[str]:
        """Names silent past the heartbeat time-out, now left."""
        silent = [n for n, a in self.actors.items() if a.connected and now - a.last_seen > self.heartbeat_timeout_s]
        for name in silent:
            self.leave(name)
        return silent

    # -- chunks ------------------------------------------------------------------------------------
    def duplicate(self, actor: ActorSession, seq: int) -> Reply | None:
        """The acknowledgement of a chunk already filed (a resend after a reconnect), or None for a new one."""
        if seq > actor.last_seq:
            return None
        self.duplicates += 1
        return Reply(actor.route, {"credits": 1, **self.acks(actor), "outcome": "duplicate"})

    def rejected(self, actor: ActorSession, seq: int, reason: str = "") -> Reply:
        self.rejected_chunks += 1
        return Reply(actor.route, {"credits": 1, **self.acks(actor), "rejected_seq": seq,
                                   **({"reason": reason} if reason else {})})

    def filed(self, actor: ActorSession, seq: int, outcome: str | None = None) -> tuple[list[Reply], int]:
        """The store took chunk `seq` (call after `duplicate` said it is new). Returns (replies, chunks skipped
        before it): a credit now if `can_grant`, else one owed."""
        gap = max(0, seq - actor.last_seq - 1)
        actor.lost += gap
        self.lost_chunks += gap
        actor.last_seq = seq
        actor.chunks += 1
        extra = {"outcome": outcome} if outcome else {}
        if self.can_grant():
            return [Reply(actor.route, {"credits": 1, **self.acks(actor), **extra})], gap
        actor.owed_credits += 1
        if actor.waiting_since is None:
            actor.waiting_since = actor.last_seen
        return [], gap

    def grant_owed(self) -> list[Reply]:
        replies = []
        for actor in self.actors.values():
            while actor.owed_credits and self.can_grant():
                actor.owed_credits -= 1
                actor.waiting_since = None
                replies.append(Reply(actor.route, {"credits": 1, **self.acks(actor)}))
        return replies

    # -- snapshots ---------------------------------------------------------------------------------
    def counters(self) -> dict:
        """The session's counters, as the replay role reports them."""
        return {"duplicates": self.duplicates, "lost_chunks": self.lost_chunks, "rejected_chunks": self.rejected_chunks}

    def state(self) -> dict:
        """What a snapshot keeps: the counters and, per actor, the last chunk filed."""
        return {**self.counters(), "actors": {n: {"last_seq": a.last_seq, "chunks": a.chunks, "lost": a.lost}
                                              for n, a in self.actors.items()}}

    def load_state(self, state: dict, now: float) -> None:
        """Restore from a snapshot's state: every actor departed, durable through its snapshotted last chunk."""
        self.duplicates, self.lost_chunks = int(state["duplicates"]), int(state["lost_chunks"])
        self.rejected_chunks = int(state["rejected_chunks"])
        for name, saved in state["actors"].items():
            seq = int(saved["last_seq"])
            self.actors[name] = ActorSession(route=[], last_seen=now, last_seq=seq, durable_seq=seq,
                                             chunks=int(saved["chunks"]), lost=int(saved["lost"]), connected=False)

    def snapshot_written(self, state: dict) -> None:
        """A snapshot of `state` (taken by `state()`) is on disk: the chunks it holds are durable."""
        for name, saved in state["actors"].items():
            if name in self.actors:
                self.actors[name].durable_seq = max(self.actors[name].durable_seq, int(saved["last_seq"]))
