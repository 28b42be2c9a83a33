"""Where each socket lives: endpoint names, addresses, and socket set-up shared by all roles.

Endpoints and their owners (the process that binds):
    replay_actors   replay service  ROUTER  <- actors' DEALER   (register, chunks, heartbeats / credits)
    replay_learner  replay service  ROUTER  <- learner's DEALER (sample requests / batches)
    weights         learner         PUB     -> actors' SUB      (versioned weights)
    stats           launcher        PULL    <- every role's PUSH (counters, episodes, metrics)
    control         launcher        PUB     -> every role's SUB (stop)
"""
from __future__ import annotations

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


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the launcher assigns them before starting roles)."""
    with pysocket.socket() as s:
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
    owner_host = cfg.network.get("hosts", {}).get(ENDPOINT_OWNERS[name], cfg.network.host)
    if bind:
        # Across hosts a service must listen on all interfaces; on one host, loopback only.
        host = "0.0.0.0" if cfg.network.get("hosts") else owner_host
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
