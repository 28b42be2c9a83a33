"""Where each socket lives: endpoint names, addresses, and socket set-up shared by all roles.

Endpoints and their owners (the process that binds):
    replay_actors   replay service  ROUTER  <- actors' DEALER   (register, chunks, heartbeats / credits)
    replay_learner  replay service  ROUTER  <- learner's DEALER (sample requests / batches)
    weights         learner         PUB     -> actors' SUB      (versioned weights)
    stats           launcher        PULL    <- every role's PUSH (counters, episodes, metrics)
    control         launcher        PUB     -> every role's SUB (stop)
"""
from __future__ import annotations

import random
import socket as pysocket
from pathlib import Path

import zmq
from omegaconf import DictConfig

from core import security

ENDPOINT_OWNERS = {
    "replay_actors": "replay",
    "replay_learner": "replay",
    "weights": "learner",
    "stats": "launcher",
    "control": "launcher",
}


def _ephemeral_ports() -> range:
    """The kernel's range of source ports for outgoing connections."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return range(low, high + 1)
    except (OSError, ValueError):
        return range(32768, 61000)  # Linux's default


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the launcher assigns them before starting roles).

    Chosen at random outside the ephemeral range: every outgoing connection, ZeroMQ's reconnect attempts to
    a peer that is gone among them, takes a source port from that range, so a port the kernel hands out
    for bind(port 0) can be taken by a connection before the service binds it (seen in CI: "Address
    already in use").
    """
    ephemeral = _ephemeral_ports()
    candidates = range(20000, ephemeral.start) if ephemeral.start > 21000 else range(ephemeral.stop, 65536)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.choice(candidates)
        with pysocket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue  # in use (or in TIME_WAIT): try another
            return port
    with pysocket.socket() as s:  # every try taken: let the kernel choose, as before
        s.bind((host, 0))
        return s.getsockname()[1]


def assign_ports(cfg: DictConfig) -> None:
    for name in ENDPOINT_OWNERS:
        if name not in cfg.network.ports:
            cfg.network.ports[name] = free_tcp_port()


def endpoint(cfg: DictConfig, name: str, bind: bool) -> str:
    if name not in ENDPOINT_OWNERS:
        raise KeyError(f"unknown endpoint '{name}'; known: {', '.join(ENDPOINT_OWNERS)}")
    if cfg.network.transport == "ipc":
        return f"ipc://{Path(cfg.runner.run_dir).resolve() / (name + '.sock')}"
    port = cfg.network.ports[name]
    owner_host = (cfg.network.hosts or {}).get(ENDPOINT_OWNERS[name], cfg.network.host)
    if bind:
        # Across hosts a service must listen on all interfaces; on one host, loopback only.
        host = "0.0.0.0" if cfg.network.hosts else owner_host
        return f"tcp://{host}:{port}"
    return f"tcp://{owner_host}:{port}"


def make_socket(ctx: zmq.Context, kind: int, *, hwm: int = 0, linger_ms: int = 0,
                curve: str | None = None) -> zmq.Socket:
    """A socket with the project's options. `curve` is the socket's side under CurveZMQ: "server" for a
    socket that binds, "client" for one that connects; it matters only on a context that
    core.security.secure_context secured (security.curve=true), where it is required."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, linger_ms)
    security.configure_socket(sock, curve)
    if hwm:
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
    return sock
