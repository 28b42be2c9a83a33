"""launch.mode=ray on a local Ray cluster: a head started here, each role a Ray actor, ZeroMQ between them."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from launch_helpers import assert_clean_summary, launcher_command, read_summary

pytestmark = pytest.mark.timeout(150)

ray = pytest.importorskip("ray", reason="Ray is not installed (.venv/bin/pip install ray)")
RAY_CLI = Path(sys.executable).parent / "ray"


@pytest.fixture
def ray_head(tmp_path, loopback_namespace):
    """A Ray head on loopback (in a namespace of its own where one can be made) with token authentication
    (a token made for the test), stopped by its pid. Yields (address, environment, command prefix)."""
    if not RAY_CLI.exists():
        pytest.skip(f"the ray command is not next to {sys.executable}")
    from core.net import free_tcp_port

    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_tcp_port()
    head = subprocess.Popen([*loopback_namespace, str(RAY_CLI), "start", "--head", "--block",
                             "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=8", "--num-gpus=0",
                             "--include-dashboard=false", "--disable-usage-stats"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        yield f"127.0.0.1:{port}", env, loopback_namespace
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()


def test_ray_run_places_every_role_as_a_ray_actor(ray_head, tmp_path):
    address, env, prefix = ray_head
    run_dir = tmp_path / "run"
    # The launcher retries the connection while the head is still starting (ray.init waits for the GCS).
    result = subprocess.run(prefix + launcher_command(run_dir, ["launch.mode=ray", f"launch.ray_address={address}",
                                                       "launch.ray_cpus_per_role=1", "actor.num_actors=2"]),
                            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    (tmp_path / "launcher.out").write_text(output)
    assert result.returncode == 0, output[-5000:]
    summary = read_summary(run_dir)
    assert_clean_summary(summary, actors=2)
    assert summary["launch_mode"] == "ray"
    assert "Ray placed the roles: replay on" in output
    if prefix:  # in its own namespace, Ray's node address is loopback
        assert "replay on 127.0.0.1" in output
    # Ray collected each role's output and showed it with the process name in front.
    assert "(actor-1 pid=" in output and "(replay pid=" in output
    assert (run_dir / "logs" / "actor-1.log").is_file()
