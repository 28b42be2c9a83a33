"""What every actor process has, whichever kind: its name, runtime and device, the weights subscription,
the replay writer (actors/replay_writer.py), and the periodic report of its counters."""
from __future__ import annotations

import os
import time

from actors.replay_writer import ReplayWriter
from actors.weights import WeightsSubscriber
from core.config import RunConfig
from core.devices import actor_device
from core.net import endpoint
from core.roles import Actor
from wire.runtime import RoleRuntime
from wire.schema import Spec
from wire.session import ClientSession
from wire.shared_memory import SlotWriter


class ActorProcess(Actor):
    def __init__(self, cfg: RunConfig, index: int):
        self.cfg, self.index = cfg, index
        self.name = f"actor-{index}"
        self.rt = RoleRuntime(cfg, "actor", self.name)
        self.log = self.rt.log
        self.device = actor_device(cfg.actor, index)
        self.log_every_s = float(cfg.runner.log_every_s)  # config lookups cost ~10 us: not in the step loop
        self.env_steps = 0
        self._last_report = 0.0
        self._weights_rejected_logged = 0

    def connect(self, spec: Spec, slots: SlotWriter | None = None, limits: dict | None = None) -> None:
        """Subscribe to the weights and open the session with the replay role (once the policy exists)."""
        cfg = self.cfg
        self.weights = WeightsSubscriber(self.rt.ctx, endpoint(cfg, "weights", bind=False))
        session = ClientSession(self.name, {"spec": spec.to_meta(), "pid": os.getpid(), "device": self.device,
                                             **(limits or {})},
                                resend_buffer_bytes=cfg.actor.resend_buffer_mb * 2**20,
                                heartbeat_s=float(cfg.actor.heartbeat_s), slots=slots)
        self.writer = ReplayWriter(self.rt.ctx, endpoint(cfg, "replay_actors", bind=False), session, self.log,
                                   self.rt.rejects, should_stop=self.rt.should_stop, idle=self.report)

    def counters(self) -> dict:
        """The actor kind's own counters, added to the report."""
        return {}

    def report(self, force: bool = False) -> None:
        """Every runner.log_every_s (or now, with `force`): the counters to the launcher's monitor."""
        now = time.time()
        if not force and now - self._last_report < self.log_every_s:
            return
        self._last_report = now
        if self.weights.rejected > self._weights_rejected_logged:
            self.log.warning(f"rejected {self.weights.rejected - self._weights_rejected_logged} malformed "
                             f"weights message(s) ({self.weights.rejected} in all)")
            self._weights_rejected_logged = self.weights.rejected
        session = self.writer.session
        self.rt.report(counters={"actor_env_steps": self.env_steps, "chunks_sent": session.seq,
                                 "chunks_resent": session.resent, "weights_rejected": self.weights.rejected,
                                 "released_unsnapshotted": session.released_unsnapshotted,
                                 "chunks_shared_memory": session.slots.placed if session.slots else 0,
                                 **self.counters()},
                       scalars={"actor/policy_version": self.weights.policy_version,
                                "actor/resend_buffer_mb": session.resend_buffer_nbytes / 2**20,
                                "actor/resend_buffer_chunks": len(session.resend_buffer)})

    def close(self, done: str) -> int:
        """Say goodbye to the replay role and close everything; `done` says what this process did."""
        self.log.info(f"stopping ({self.rt.stop_reason}) after {done}")
        self.report(force=True)  # the final counters: what happened since the last periodic report is not lost
        self.writer.close(self.rt.stop_reason)
        self.weights.close()
        self.rt.close()
        return 0
