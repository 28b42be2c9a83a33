"""The learner's side of weight publication: versioned weights on a PUB socket."""
from __future__ import annotations

import time

import zmq

from core.net import make_socket
from wire import protocol
from wire.protocol import Kind


class WeightsPublisher:
    """PUB socket for versioned weights; republishes the newest now and then for actors that join late."""

    def __init__(self, ctx: zmq.Context, address: str):
        self.sock = make_socket(ctx, zmq.PUB, hwm=2, curve="server")
        self.sock.bind(address)
        self.policy_version = 0  # of the newest weights published; the first publication is version 1
        self._last: tuple[dict, dict] | None = None
        self._last_time = 0.0

    def publish(self, weights: dict, meta: dict) -> None:
        self.policy_version += 1
        self._last = (weights, meta)
        self._send()

    def republish_if_stale(self, every_s: float = 2.0) -> None:
        if self._last is not None and time.time() - self._last_time > every_s:
            self._send()

    def _send(self) -> None:
        weights, meta = self._last
        protocol.send(self.sock, Kind.WEIGHTS, weights, sender="learner", policy_version=self.policy_version, meta=meta)
        self._last_time = time.time()

    def close(self) -> None:
        self.sock.close(linger=1000)
