"""CurveZMQ: an authorised actor pushes experience; a client with a wrong key (or none) cannot, and the run goes on.

Real processes and sockets: a replay service and an actor started with the role command, the monitor in
this process on a secured context, and impostors made here.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from core import security
from core.config import save_config
from core.net import endpoint, make_socket
from launch.keys import ensure_run_keys, generate_keys
from launch.launcher import prepare_run
from launch.monitor import Monitor
from launch.placement import local_env, plan
from launch.processes import RoleProcess, role_command
from launch_helpers import SHORT_RUN
from wire import protocol
from wire.protocol import Kind

pytestmark = pytest.mark.timeout(90)


class CurveSystem:
    """replay + actor-0 with security.curve=true; the monitor here, on its own secured context."""

    def __init__(self, run_dir: Path):
        # No learner here, so no rate limit: the actor pushes for as long as the test watches.
        overrides = [*SHORT_RUN, f"runner.run_dir={run_dir}", "security.curve=true",
                     "replay.rate_limit.updates_per_step=0"]
        self.cfg = prepare_run("pendulum_sac_mlp", overrides)
        ensure_run_keys(self.cfg)
        save_config(self.cfg, run_dir / "config.yaml")
        self.ctx = zmq.Context()
        security.secure_context(self.ctx, self.cfg)
        self.monitor = Monitor(self.cfg, self.ctx)
        places = {p.name: p for p in plan(self.cfg)}
        self.procs = {name: RoleProcess(name, role_command(places[name].role, str(run_dir), places[name].index),
                                        local_env(self.cfg, places[name]), run_dir / "logs", echo=False)
                      for name in ("replay", "actor-0")}

    def wait_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.monitor.poll(100)
            if predicate():
                return
            for name, p in self.procs.items():
                assert p.poll() is None, f"{name} died with {p.poll()}:\n{''.join(p.tail)}"
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def replay_actors(self) -> dict:
        return self.monitor.reports.get("replay", {}).get("actors", {})

    def close(self) -> None:
        self.monitor.broadcast_stop("test finished")
        deadline = time.time() + 10
        while time.time() < deadline and any(p.poll() is None for p in self.procs.values()):
            self.monitor.poll(50)
        for p in self.procs.values():
            p.signal(9)
            p.proc.wait()
            p.wait_output()
        self.monitor.close({})
        security.release(self.ctx)
        self.ctx.destroy(linger=0)


def impostor(ctx: zmq.Context, address: str, name: str) -> tuple[zmq.Socket, zmq.Socket]:
    """A DEALER that connects to the actors' endpoint and tries to register and push a chunk."""
    sock = make_socket(ctx, zmq.DEALER, curve="client")
    events = sock.get_monitor_socket()
    sock.connect(address)
    protocol.send(sock, Kind.REGISTER, sender=name, meta={"spec": {}, "pid": 0, "device": "cpu"})
    protocol.send(sock, Kind.CHUNK, sender=name, seq=1, meta={"steps": 64})
    return sock, events


def wait_for_event(events: zmq.Socket, wanted: set[int], timeout_s: float = 20.0) -> int:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if events.poll(200):
            event = recv_monitor_message(events)["event"]
            if event in wanted:
                return event
    raise AssertionError(f"no {wanted} event within {timeout_s} s")


def test_curve_refuses_a_wrong_key_while_the_authorised_actor_pushes(tmp_path):
    system = CurveSystem(tmp_path / "run")
    wrong_ctx, plain_ctx = zmq.Context(), zmq.Context()
    sockets: list[zmq.Socket] = []
    try:
        system.wait_until(lambda: system.monitor.env_steps >= 64, 60, "the authorised actor's first chunk")
        address = endpoint(system.cfg, "replay_actors", bind=False)

        # An impostor that knows the server's public key but holds a key pair of its own.
        wrong = generate_keys(tmp_path / "wrong_keys")
        wrong_keys = security.load_keys(wrong)
        real = security.load_keys(security.keys_dir(system.cfg))
        security.use_keys(wrong_ctx, security.CurveKeys(real.server_public, None, wrong_keys.client_public,
                                                        wrong_keys.client_secret, frozenset()))
        sock, events = impostor(wrong_ctx, address, "impostor-curve")
        sockets += [sock, events]
        assert wait_for_event(events, {zmq.EVENT_HANDSHAKE_FAILED_AUTH}) == zmq.EVENT_HANDSHAKE_FAILED_AUTH

        # One without Curve at all: the handshake fails on the mechanism, before any message.
        sock, events = impostor(plain_ctx, address, "impostor-plain")
        sockets += [sock, events]
        wait_for_event(events, {zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                                zmq.EVENT_DISCONNECTED})

        # The run goes on: the actor keeps pushing, and the replay service never saw the impostors.
        steps_at_refusal = system.monitor.env_steps
        system.wait_until(lambda: system.monitor.env_steps > steps_at_refusal and system.replay_actors(), 60,
                          "more experience from the authorised actor")
        assert set(system.replay_actors()) == {"actor-0"}
        assert system.replay_actors()["actor-0"]["chunks"] > 1
        replay_log = (tmp_path / "run" / "logs" / "replay.log").read_text()
        assert "refused a connection with an unauthorised Curve key" in replay_log
        assert wrong_keys.client_public.decode()[:12] in replay_log
        assert system.procs["replay"].poll() is None and system.procs["actor-0"].poll() is None
    finally:
        for s in sockets:
            s.close(0)
        security.release(wrong_ctx)
        wrong_ctx.destroy(linger=0)
        plain_ctx.destroy(linger=0)
        system.close()


def test_curve_socket_without_a_side_is_an_error_on_a_secured_context(tmp_path):
    ctx = zmq.Context()
    try:
        security.use_keys(ctx, security.load_keys(generate_keys(tmp_path / "keys")))
        with pytest.raises(security.SecurityError, match="curve='server' or 'client'"):
            make_socket(ctx, zmq.PUSH)
        client_only = generate_keys(tmp_path / "client_only")
        (client_only / "server.key_secret").unlink()
        security.use_keys(ctx, security.load_keys(client_only))
        with pytest.raises(security.SecurityError, match="cannot run a service"):
            make_socket(ctx, zmq.PULL, curve="server")
    finally:
        security.release(ctx)
        ctx.destroy(linger=0)
    with pytest.raises(security.SecurityError, match="python -m launch.keys"):
        security.load_keys(tmp_path / "missing")
