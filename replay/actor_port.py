"""The replay role's actor socket: one ROUTER speaking the session (wire/session.py) for either store.

It decodes what actors send, keeps their sessions (ServiceSession) and hands the store what only the
store can judge, through a `Store` (the off-policy service, the on-policy rollout service):

    spec_problem(spec)          why this spec cannot be served (None: fine)
    on_registered(name, meta)   a registration was admitted; returns extra reply meta (shared memory)
    on_chunk(actor, msg)        file a new (not duplicate) chunk; returns the replies
    on_left(name)               the actor said goodbye or fell silent
"""
from __future__ import annotations

import time
from typing import Callable, Protocol

import zmq

from core.net import endpoint, make_socket
from wire import protocol
from wire.protocol import Kind
from wire.runtime import RoleRuntime
from wire.schema import Spec
from wire.session import ActorSession, Reply, ServiceSession

ACTOR_KINDS = {Kind.REGISTER, Kind.CHUNK, Kind.HEARTBEAT, Kind.BYE}


class Store(Protocol):
    def spec_problem(self, spec: Spec) -> str | None: ...

    def on_registered(self, name: str, meta: dict) -> dict: ...

    def on_chunk(self, actor: ActorSession, msg: protocol.Message) -> list[Reply]: ...

    def on_left(self, name: str) -> None: ...


class ActorPort:
    def __init__(self, rt: RoleRuntime, cfg, session: ServiceSession, store: Store,
                 policy_version: Callable[[], int] = lambda: 0):
        """`policy_version()`: what replies carry in their header (the on-policy store's version)."""
        self.rt, self.log, self.session, self.store, self.policy_version = rt, rt.log, session, store, policy_version
        # Bounded queues: ZeroMQ's default high-water mark (1000 messages per peer), and a size cap per message
        # so that no peer can make this process buffer more than that before a message is even checked.
        self.sock = make_socket(rt.ctx, zmq.ROUTER, hwm=0, curve="server")
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
        self.address = endpoint(cfg, "replay_actors", bind=True)
        self.sock.bind(self.address)

    def send(self, replies: list[Reply]) -> None:
        for reply in replies:
            protocol.send(self.sock, Kind.CREDIT, sender="replay", route=reply.route, meta=reply.meta,
                          policy_version=self.policy_version())

    def drain(self, limit: int = 64) -> None:
        """Handle a burst of waiting messages (at most `limit`, then the learner gets its turn)."""
        for route, msg in protocol.recv_ready(self.sock, self.rt.rejects, "actor socket", route_frames=1,
                                              kinds=ACTOR_KINDS, limit=limit):
            self._on_message(route, msg)

    def _on_message(self, route: list, msg: protocol.Message) -> None:
        if msg.kind == Kind.REGISTER:
            self._register(route, msg)
            return
        actor = self.session.seen(msg.sender, route, time.time())
        if isinstance(actor, Reply):  # dropped as silent, never seen, or this service restarted
            self.send([actor])
            return
        if msg.kind == Kind.CHUNK:
            duplicate = self.session.duplicate(actor, msg.seq)
            self.send([duplicate] if duplicate else self.store.on_chunk(actor, msg))
        elif msg.kind == Kind.BYE:
            self.log.info(f"{msg.sender} left ({msg.meta.get('reason', 'bye')}) after {actor.chunks} chunks")
            self.session.leave(msg.sender)
            self.store.on_left(msg.sender)

    def _refuse(self, route: list, sender: str, reason: str, why: str) -> None:
        self.rt.rejects.reject(protocol.ProtocolError(reason, f"registration refused: {why}"), sender)
        self.send([self.session.refusal(route, why)])

    def _register(self, route: list, msg: protocol.Message) -> None:
        try:
            spec = Spec.from_meta(msg.meta["spec"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            self.rt.rejects.reject(protocol.ProtocolError("bad_meta", f"registration without a valid spec: {e}"),
                                   msg.sender)
            return
        problem = self.store.spec_problem(spec)
        if problem:
            self._refuse(route, msg.sender, "bad_spec", problem)
            return
        registration = self.session.register(msg.sender, route, time.time())
        if registration.actor is None:
            self._refuse(route, msg.sender, "too_many_actors", registration.reply.meta["refused"])
            return
        for name in registration.forgotten:
            self.store.on_left(name)
        registration.reply.meta.update(self.store.on_registered(msg.sender, msg.meta))
        self.log.info(f"{msg.sender} {'rejoined' if registration.rejoined else 'joined'} (pid {msg.meta.get('pid')}, "
                      f"device {msg.meta.get('device')}); {len(self.session.connected())} actor(s) connected"
                      + (f"; its chunks continue after #{registration.actor.last_seq}" if registration.rejoined
                         else "") + (f"; store at policy version {v}" if (v := self.policy_version()) else ""))
        self.send([registration.reply])

    def drop_silent(self) -> None:
        now = time.time()
        for name in self.session.drop_silent(now):
            self.log.warning(f"{name} left: no message for {now - self.session.actors[name].last_seen:.0f} s")
            self.store.on_left(name)

    def close(self) -> None:
        self.sock.close(0)
