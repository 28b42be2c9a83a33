"""CurveZMQ for the run's sockets: who may talk to the services, and encryption of everything they say.

The model (the same as ZeroMQ's own "Ironhouse" pattern):
  * the services (replay, learner, the launcher's monitor) share one server key pair; every socket that
    binds is a Curve *server* with that secret key;
  * roles' sockets that connect are Curve *clients*: they prove they hold a client secret key, and they
    check that they reach the real server by its public key, so neither side can be impersonated;
  * a ZAP handler (pyzmq's ThreadAuthenticator, one per ZeroMQ context that has server sockets) accepts a
    client only if its public key is one of the authorised keys in <keys_dir>/clients/*.key. A refused
    peer is logged and its connection fails the handshake: it never delivers a message, and the run goes on.

Key files (made by launch/keys.py with zmq.auth):
    <keys_dir>/server.key             public key of the services (every host needs it)
    <keys_dir>/server.key_secret      secret key of the services (only hosts that run replay, learner, launcher)
    <keys_dir>/clients/NAME.key       an authorised client's public key
    <keys_dir>/clients/NAME.key_secret  that client's secret key (hosts whose roles use it)

A context is "secured" by `secure_context(ctx, cfg)` (RoleRuntime and the launchers call it); from then on
`core.net.make_socket(ctx, kind, curve="server"|"client")` gives Curve sockets on it.
"""
from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

SIDES = ("server", "client")


class SecurityError(RuntimeError):
    """Curve cannot be set up as configured (missing key files, a socket without a side)."""


@dataclass(frozen=True)
class CurveKeys:
    server_public: bytes  # z85
    server_secret: bytes | None  # None on hosts that only run clients
    client_public: bytes
    client_secret: bytes
    authorised: frozenset[bytes]  # z85 public keys of the clients the servers accept


def keys_dir(cfg) -> Path:
    """Where the run's keys are: security.keys_dir, or <run_dir>/keys when it is empty."""
    return Path(cfg.security.keys_dir or Path(cfg.runner.run_dir) / "keys").expanduser()


def load_keys(directory: str | Path, client: str = "client") -> CurveKeys:
    directory = Path(directory)
    hint = f"make them with `python -m launch.keys {directory}` and copy the directory to every host"
    server_public_file = directory / "server.key"
    client_file = directory / "clients" / f"{client}.key_secret"
    for needed in (server_public_file, client_file):
        if not needed.is_file():
            raise SecurityError(f"Curve key file {needed} is missing: {hint}")
    server_public, _ = zmq.auth.load_certificate(server_public_file)
    server_secret = None
    if (directory / "server.key_secret").is_file():
        _, server_secret = zmq.auth.load_certificate(directory / "server.key_secret")
    client_public, client_secret = zmq.auth.load_certificate(client_file)
    authorised = frozenset(zmq.auth.load_certificate(p)[0] for p in sorted((directory / "clients").glob("*.key")))
    return CurveKeys(server_public, server_secret, client_public, client_secret, authorised)


class AuthorisedKeys:
    """ZAP credentials check: accept only the authorised client keys, and say (once per key) whom we refused."""

    def __init__(self, authorised: frozenset[bytes], log: logging.Logger):
        self.authorised = authorised
        self.log = log
        self.refused: dict[bytes, int] = {}  # public key -> connection attempts refused
        self._lock = threading.Lock()

    def callback(self, domain: str, client_key: bytes) -> bool:
        if client_key in self.authorised:
            return True
        with self._lock:
            self.refused[client_key] = self.refused.get(client_key, 0) + 1
            first = self.refused[client_key] == 1
        if first:  # a refused peer retries every reconnect interval: one line per key, not per attempt
            self.log.warning(f"refused a connection with an unauthorised Curve key {client_key.decode()[:12]}... "
                             f"(not in the keys directory's clients/); the run goes on")
        return False

    @property
    def total_refused(self) -> int:
        return sum(self.refused.values())


class _SecuredContext:
    """The keys a context's sockets use, and its ZAP handler (started with the first server socket)."""

    def __init__(self, keys: CurveKeys, log: logging.Logger):
        self.keys, self.log = keys, log
        self.checker = AuthorisedKeys(keys.authorised, log)
        self.authenticator: ThreadAuthenticator | None = None
        self._lock = threading.Lock()

    def start_authenticator(self, ctx: zmq.Context) -> None:
        with self._lock:
            if self.authenticator is None:
                # The authenticator's own messages are debug chatter; refusals are logged by AuthorisedKeys.
                self.authenticator = ThreadAuthenticator(ctx, log=logging.getLogger("zmq.auth.zarl"))
                self.authenticator.start()
                self.authenticator.configure_curve_callback("*", credentials_provider=self.checker)

    def stop(self) -> None:
        if self.authenticator is not None:
            self.authenticator.stop()
            self.authenticator = None


_secured: "weakref.WeakKeyDictionary[zmq.Context, _SecuredContext]" = weakref.WeakKeyDictionary()


def use_keys(ctx: zmq.Context, keys: CurveKeys, log: logging.Logger | None = None) -> None:
    """Make every socket that make_socket creates on `ctx` a Curve socket with these keys."""
    release(ctx)
    _secured[ctx] = _SecuredContext(keys, log or logging.getLogger("security"))


def secure_context(ctx: zmq.Context, cfg, log: logging.Logger | None = None) -> None:
    """Apply the run's security settings to a context: Curve with the run's keys if security.curve is on."""
    if cfg.security.curve:
        use_keys(ctx, load_keys(keys_dir(cfg), cfg.security.client), log)


def is_secured(ctx: zmq.Context) -> bool:
    return ctx in _secured


def refused_connections(ctx: zmq.Context) -> int:
    """How many connection attempts the context's servers refused (0 without Curve)."""
    state = _secured.get(ctx)
    return state.checker.total_refused if state else 0


def release(ctx: zmq.Context) -> None:
    """Stop the context's ZAP handler and forget its keys (before the context is closed)."""
    state = _secured.pop(ctx, None)
    if state is not None:
        state.stop()


def configure_socket(sock: zmq.Socket, side: str | None) -> None:
    """Set a fresh socket's Curve options, if its context is secured. Must run before bind/connect."""
    state = _secured.get(sock.context)
    if state is None or side == "plain":  # plain: an owner-only ipc:// endpoint (core.net.curve_side)
        return
    if side not in SIDES:
        raise SecurityError("this process runs with security.curve=true, so every socket must say whether it is "
                            "the Curve server (it binds) or a client (it connects): make_socket(..., curve='server' "
                            f"or 'client'), not curve={side!r}")
    keys = state.keys
    if side == "server":
        if keys.server_secret is None:
            raise SecurityError("this host has no server.key_secret in its keys directory, so it cannot run a "
                                "service (replay, learner, launcher); copy the file here or place services elsewhere")
        state.start_authenticator(sock.context)
        sock.curve_secretkey = keys.server_secret
        sock.curve_publickey = keys.server_public
        sock.curve_server = True
    else:
        sock.curve_secretkey = keys.client_secret
        sock.curve_publickey = keys.client_public
        sock.curve_serverkey = keys.server_public
