"""The actor's replay client: `add(arrays, meta)`, `poll()`, `close()` over a DEALER socket.

The session itself (registration, credits, resend buffer, slots, heartbeats) is wire/session.py's
ClientSession; this wrapper only moves its messages. Every send is non-blocking: while the service is
down ZeroMQ queues messages up to the socket's high-water mark, and a blocking send past that would
hang the actor (and its shutdown) for good; a send that does not fit tells the session, which stops
producing until the service answers a registration again.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import zmq

from core.net import make_socket
from wire import protocol
from wire.protocol import Kind
from wire.session import ClientSession, Outgoing

LOG_FIRST = 5  # stale / rejected chunks logged one by one; after that, silently counted
WAIT_SAID_S = 30.0


class ReplayWriter:
    def __init__(self, ctx: zmq.Context, address: str, session: ClientSession, log: logging.Logger,
                 rejects: protocol.RejectCounter | None = None, should_stop: Callable[[], bool] = lambda: False,
                 idle: Callable[[], None] = lambda: None, curve: str | None = "client"):
        """`idle` runs while `add` waits for a credit (the caller's reports); `should_stop` ends the wait."""
        self.session, self.log, self.should_stop, self.idle = session, log, should_stop, idle
        self.rejects = rejects or protocol.RejectCounter(log, session.name)
        self.sock = make_socket(ctx, zmq.DEALER, curve=curve)
        self.sock.connect(address)

    @property
    def name(self) -> str:
        return self.session.name

    def send(self, messages: list[Outgoing]) -> bool:
        """Send in order; at the first that does not fit, tell the session about the rest. False then."""
        for i, out in enumerate(messages):
            try:
                protocol.send(self.sock, out.kind, out.arrays, sender=self.name, seq=out.seq, meta=out.meta,
                              policy_version=out.policy_version, flags=zmq.NOBLOCK)
            except zmq.Again:
                self.session.send_failed(messages[i:])
                return False
        return True

    def register(self) -> None:
        self.send(self.session.register(time.monotonic()))

    def add(self, arrays: dict, meta: dict, policy_version: int = 0) -> bool:
        """Wait for a credit, then send one chunk (kept for resending until a snapshot holds it).
        False, and nothing sent, if `should_stop` said so while waiting."""
        waited_since, said = time.monotonic(), False
        while self.session.credits <= 0:
            if self.should_stop():
                return False
            self.poll(100)
            self.idle()
            if not said and time.monotonic() - waited_since > WAIT_SAID_S:
                self.log.info("waiting for the replay role (no credit: learner behind or replay down)")
                said = True
        self.send(self.session.add(arrays, meta, policy_version))
        return True

    def poll(self, timeout_ms: int = 0) -> list[dict]:
        """Handle the replies that came (waiting up to timeout_ms for the first), send what is due; returns the
        replies' meta. Raises SessionRefused when the service refused this actor."""
        handled = []
        if self.sock.poll(timeout_ms):
            for _, msg in protocol.recv_ready(self.sock, self.rejects, "replay", kinds={Kind.CREDIT}):
                handled.append(msg.meta)
                self.handle(msg)
        self.send(self.session.poll(time.monotonic()))
        return handled

    def handle(self, msg: protocol.Message) -> None:
        """Take one CREDIT message (poll does this for every reply) and send what follows from it."""
        session, meta = self.session, msg.meta
        confirmed, registered = session.slots_confirmed, session.registered
        try:
            out = session.on_reply(meta, time.monotonic())
        except (KeyError, TypeError, ValueError) as e:
            self.rejects.reject(protocol.ProtocolError("bad_meta", f"credit message: {e}"), "replay")
            return
        if meta.get("reregister") and out:
            self.log.info("the replay role does not know this actor (it restarted, or dropped it): registering again")
        resends = [o for o in out if o.resend]
        if resends:
            self.log.info(f"registered; resending {len(resends)} chunk(s) the replay role does not hold "
                          f"(#{resends[0].seq}..#{resends[-1].seq})")
        if session.slots is not None and session.registered and not registered \
                and session.slots_confirmed != confirmed:
            self.log.info("chunks go through shared memory (/dev/shm)" if session.slots_confirmed
                          else f"chunks go through the socket: {session.shm_problem}")
        outcome = "rejected" if "rejected_seq" in meta else meta.get("outcome")
        if outcome in ("stale", "rejected") and session.outcomes[outcome] <= LOG_FIRST:
            self.log.warning(f"the replay role {'dropped' if outcome == 'stale' else 'rejected'} a chunk "
                             f"({outcome}{': ' + str(meta['reason']) if 'reason' in meta else ''}; store at "
                             f"policy version {msg.policy_version})")
        self.send(out)

    def close(self, reason: str) -> None:
        self.send([self.session.bye(reason)])
        self.sock.close(linger=500)
        if self.session.slots is not None:
            self.session.slots.close()
