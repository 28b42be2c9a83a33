"""The actors' side of weight publication: a subscription that keeps only the newest version."""
from __future__ import annotations

import zmq

from core.net import make_socket
from wire import protocol
from wire.protocol import Kind


class WeightsSubscriber:
    def __init__(self, ctx: zmq.Context, address: str):
        # A small receive queue: an actor that fell behind skips stale versions instead of queueing them.
        self.sock = make_socket(ctx, zmq.SUB, hwm=2, curve="client")
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(address)
        self.policy_version = 0  # of the newest weights received (0: none yet)
        self.updates = 0  # learner updates behind the newest weights
        self.rejected = 0
        self.final = False  # the learner marks the weights it publishes as it stops

    def poll(self, timeout_ms: int = 0) -> dict | None:
        """The newest weights that arrived since the last call, or None. Never blocks longer than timeout_ms."""
        newest = None
        if timeout_ms and not self.sock.poll(timeout_ms):
            return None
        while True:
            try:
                _, msg = protocol.recv(self.sock, flags=zmq.NOBLOCK, kinds={Kind.WEIGHTS})
            except zmq.Again:
                break
            except protocol.ProtocolError:
                self.rejected += 1
                continue
            if msg.policy_version > self.policy_version:
                newest, self.policy_version = msg, msg.policy_version
                self.updates = int(msg.meta.get("updates", 0))
                self.final = bool(msg.meta.get("final", False))
        return None if newest is None else newest.arrays

    def close(self) -> None:
        self.sock.close(0)
