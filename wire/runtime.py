"""What every role process has: a ZeroMQ context, a stop flag fed by signals and the launcher's
control socket, and a stats reporter that pushes counters to the launcher's monitor."""
from __future__ import annotations

import os
import signal
import time

import zmq
from omegaconf import DictConfig

from core import security
from core.log import get_logger
from core.net import endpoint, make_socket
from wire import protocol


class RoleRuntime:
    def __init__(self, cfg: DictConfig, role: str, sender: str):
        self.cfg, self.role, self.sender = cfg, role, sender
        self.log = get_logger(sender)
        self.ctx = zmq.Context.instance()
        security.secure_context(self.ctx, cfg, self.log)  # CurveZMQ on every socket when security.curve=true
        self._stop_reason: str | None = None
        self.final_eval_wanted = True  # False when the run was interrupted: stop now, evaluate nothing more
        self._next_control_check = 0.0
        self.control = make_socket(self.ctx, zmq.SUB, curve="client")
        self.control.setsockopt(zmq.SUBSCRIBE, b"")
        self.control.connect(endpoint(cfg, "control", bind=False))
        self.stats = make_socket(self.ctx, zmq.PUSH, hwm=100, curve="client")
        self.stats.connect(endpoint(cfg, "stats", bind=False))
        self.stats_seq = 0
        self.stats_dropped = 0
        self.rejects = protocol.RejectCounter(self.log, sender)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self._stop_reason = signal.Signals(signum).name
        self.final_eval_wanted = False

    def should_stop(self) -> bool:
        """True once a signal arrived or the launcher broadcast a stop; never blocks.

        The control socket is read at most every 10 ms: hot loops call this once per env step.
        """
        now = time.monotonic()
        if self._stop_reason is not None or now < self._next_control_check:
            return self._stop_reason is not None
        self._next_control_check = now + 0.01
        while self._stop_reason is None:
            try:
                frames = self.control.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                msg = protocol.decode(frames, kinds={protocol.Kind.CONTROL})
            except protocol.ProtocolError as e:
                self.rejects.reject(e, "control")
                continue
            if msg.meta.get("command") == "stop":
                self._stop_reason = msg.meta.get("reason", "launcher asked to stop")
                self.final_eval_wanted = bool(msg.meta.get("final_eval", True))
        return self._stop_reason is not None

    @property
    def stop_reason(self) -> str:
        return self._stop_reason or "running"

    def report(self, counters: dict | None = None, scalars: dict | None = None, episodes: list | None = None,
               **extra) -> None:
        """Push one stats message; if the monitor is not keeping up, drop it and count the drop."""
        meta = {"role": self.role, "pid": os.getpid(), "time": time.time(), "counters": counters or {},
                "scalars": scalars or {}, "episodes": episodes or [], "rejected": dict(self.rejects.counts), **extra}
        self.stats_seq += 1
        try:
            protocol.send(self.stats, protocol.Kind.STATS, sender=self.sender, seq=self.stats_seq, meta=meta,
                          flags=zmq.NOBLOCK)
        except zmq.Again:
            self.stats_dropped += 1

    def close(self) -> None:
        self.control.close(0)
        self.stats.close(linger=2000)  # give the last report a moment to leave
