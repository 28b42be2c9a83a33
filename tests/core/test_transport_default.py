"""Authentication by default (core.net.secure_transport): owner-only ipc on one host, Curve on TCP, plain TCP
only when asked for, with a warning."""
from __future__ import annotations

import logging

from core.net import endpoint, secure_transport
from launch.run_config import load_config


def resolved(tmp_path, *overrides):
    cfg = load_config("pendulum_sac_mlp", [f"runner.run_dir={tmp_path}", *overrides])
    cfg.runner.run_dir = str(tmp_path)
    secure_transport(cfg)
    return cfg


def test_one_host_gets_ipc_sockets_in_an_owner_only_directory(tmp_path):
    cfg = resolved(tmp_path)
    assert cfg.network.transport == "ipc" and not cfg.security.curve
    assert endpoint(cfg, "replay_actors", bind=True) == f"ipc://{tmp_path / 'sockets' / 'replay_actors.sock'}"
    assert oct((tmp_path / "sockets").stat().st_mode & 0o777) == "0o700"
    assert resolved(tmp_path, "launch.mode=tmux").network.transport == "ipc"


def test_a_run_directory_too_long_for_a_socket_gets_a_private_tmp_directory(tmp_path):
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    cfg = resolved(deep)
    directory = cfg.network.ipc_dir
    assert cfg.network.transport == "ipc" and len(endpoint(cfg, "replay_learner", bind=True)) < 110
    import os

    assert oct(os.stat(directory).st_mode & 0o777) == "0o700"
    os.rmdir(directory)


def test_tcp_is_authenticated_with_curve_unless_plain_tcp_is_asked_for(tmp_path, caplog):
    for overrides in (["network.transport=tcp"], ["launch.mode=ray"], ["security.curve=true"]):
        cfg = resolved(tmp_path, *overrides)
        assert cfg.network.transport == "tcp" and cfg.security.curve, overrides
        assert endpoint(cfg, "replay_actors", bind=False).startswith("tcp://127.0.0.1:")
    with caplog.at_level(logging.WARNING):
        cfg = resolved(tmp_path, "network.transport=tcp", "security.plain_tcp=true")
    assert cfg.network.transport == "tcp" and not cfg.security.curve
    assert any(r.levelno == logging.WARNING for r in caplog.records)
