"""The replay role's process, whichever store it holds: two ROUTER sockets and one poll loop.

    actors  -> register / chunk / heartbeat / bye;  <- credit        (replay/actor_port.py, wire/session.py)
    learner -> sample;                               <- batch

A subclass is the store's side: the ActorPort's Store methods (spec_problem, on_registered, on_chunk,
on_left), `on_sample` for each learner request, `tick` once per loop turn (serve what is ready, take
snapshots), `report`, and `finish` before the sockets close.
"""
from __future__ import annotations

import abc
import time

import zmq

from core.config import RunConfig
from core.net import endpoint, make_socket
from core.roles import ReplayService
from replay.actor_port import ActorPort
from wire import protocol
from wire.protocol import Kind
from wire.runtime import RoleRuntime
from wire.session import ServiceSession

LEARNER_KINDS = {Kind.SAMPLE, Kind.HEARTBEAT}


class ReplayRole(ReplayService):
    what = "replay service"  # for the log

    def __init__(self, cfg: RunConfig, *, snapshots: bool, can_grant=lambda: True, policy_version=lambda: 0):
        self.cfg = cfg
        self.rt = RoleRuntime(cfg, "replay", "replay")
        self.log = self.rt.log
        self.sessions = ServiceSession(credits=cfg.actor.credits, max_actors=cfg.replay.max_actors,
                                       heartbeat_timeout_s=cfg.replay.heartbeat_timeout_s, snapshots=snapshots,
                                       can_grant=can_grant)
        self.actors = ActorPort(self.rt, cfg, self.sessions, self, policy_version=policy_version)
        self.learner_sock = make_socket(self.rt.ctx, zmq.ROUTER, hwm=0, curve="server")
        self.learner_sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_HEADER_BYTES)  # sample requests are headers only
        self.learner_sock.bind(endpoint(cfg, "replay_learner", bind=True))

    @abc.abstractmethod
    def on_sample(self, route: list, msg: protocol.Message) -> None: ...

    @abc.abstractmethod
    def tick(self) -> None: ...

    @abc.abstractmethod
    def report(self) -> None: ...

    def finish(self) -> None:
        """The run stops: last words before the final report."""

    def serve(self) -> int:
        poller = zmq.Poller()
        poller.register(self.actors.sock, zmq.POLLIN)
        poller.register(self.learner_sock, zmq.POLLIN)
        self.log.info(f"{self.what} listening for actors on {self.actors.address}")
        last_report = 0.0
        while not self.rt.should_stop():
            events = dict(poller.poll(100))
            if self.actors.sock in events:
                self.actors.drain()  # a burst, then the learner's turn
            if self.learner_sock in events:
                for route, msg in protocol.recv_ready(self.learner_sock, self.rt.rejects, "learner socket",
                                                      route_frames=1, kinds=LEARNER_KINDS):
                    if msg.kind == Kind.SAMPLE:
                        self.on_sample(route, msg)
            self.tick()
            if time.time() - last_report >= self.cfg.runner.log_every_s:
                self.actors.drop_silent()
                self.report()
                last_report = time.time()
        self.finish()
        self.report()
        self.actors.close()
        self.learner_sock.close(0)
        self.rt.close()
        return 0
