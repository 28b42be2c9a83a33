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


def free_tcp_port(host: str = "127.0.0.1", exclude: frozenset | set = frozenset()) -> int:
    """A port that was free a moment ago (the launcher assigns them before starting roles), not in `exclude`.

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
        if port in exclude:
            continue  # assigned to another endpoint of this run: free now, but not for long
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
    """A distinct free port for every endpoint without one (a port checked free is not held, so two endpoints
    could otherwise draw the same one: their roles' second bind then fails with "Address already in use")."""
    taken = {int(p) for p in cfg.network.ports.values()}
    for name in ENDPOINT_OWNERS:
        if name not in cfg.network.ports:
            cfg.network.ports[name] = free_tcp_port(exclude=taken)
            taken.add(int(cfg.network.ports[name]))


IPC_PATH_MAX = 100  # AF_UNIX socket paths hold at most 107 bytes


def secure_transport(cfg: DictConfig, log=None) -> None:
    """Resolve network.transport=auto and make every socket of the run authenticated (called by the launcher
    before any role starts; the roles read the result from config.yaml):

      * every role on this machine (launch.mode local or tmux) and no Curve asked for: ipc:// sockets in a
        directory only this user can enter (0700), <run_dir>/sockets, or a fresh /tmp/zarl-* when that path is
        too long for a socket; no other user can connect, and nothing is encrypted (no cost);
      * otherwise TCP, with CurveZMQ (per-run keys, made by the launcher) unless security.plain_tcp=true,
        which gets a warning.
    """
    import logging
    import tempfile

    log = log or logging.getLogger("launcher")
    net = cfg.network
    if net.transport == "auto":
        single_host = cfg.launch.mode in ("local", "tmux") and not net.hosts
        net.transport = "ipc" if single_host and not cfg.security.curve else "tcp"
    if net.transport == "ipc":
        if not net.ipc_dir:
            directory = Path(cfg.runner.run_dir).resolve() / "sockets"
            if len(str(directory / "replay_learner.sock")) > IPC_PATH_MAX:
                directory = Path(tempfile.mkdtemp(prefix="zarl-"))  # 0700 by construction
            net.ipc_dir = str(directory)
        directory = Path(net.ipc_dir)
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        return
    if not cfg.security.curve:
        if cfg.security.plain_tcp:
            log.warning("security.plain_tcp=true: the run's TCP sockets are not authenticated; any process on a "
                        "machine that reaches them (any user of this one) can send the services well-formed messages")
        else:
            cfg.security.curve = True
            log.info("TCP sockets: authenticated and encrypted with CurveZMQ (this run's keys)")
    assign_ports(cfg)


def endpoint(cfg: DictConfig, name: str, bind: bool) -> str:
    if name not in ENDPOINT_OWNERS:
        raise KeyError(f"unknown endpoint '{name}'; known: {', '.join(ENDPOINT_OWNERS)}")
    if cfg.network.transport == "ipc" or name in (getattr(cfg.network, "ipc_endpoints", None) or []):
        directory = Path(cfg.network.ipc_dir or Path(cfg.runner.run_dir).resolve() / "sockets")
        if bind and not directory.is_dir():  # (a host of a run over several: its own run directory's)
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.chmod(0o700)
        return f"ipc://{directory / (name + '.sock')}"
    port = cfg.network.ports[name]
    owner_host = (cfg.network.hosts or {}).get(ENDPOINT_OWNERS[name], cfg.network.host)
    if bind:
        # Across hosts a service must listen on all interfaces; on one host, loopback only.
        host = "0.0.0.0" if cfg.network.hosts else owner_host
        return f"tcp://{host}:{port}"
    return f"tcp://{owner_host}:{port}"


def curve_side(cfg: DictConfig, name: str, side: str) -> str:
    """The Curve side of a socket on endpoint `name`: `side`, or "plain" for an endpoint that the launcher put on
    an owner-only ipc:// socket within a run that is otherwise TCP with Curve (network.ipc_endpoints)."""
    return "plain" if name in (getattr(cfg.network, "ipc_endpoints", None) or []) else side


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
