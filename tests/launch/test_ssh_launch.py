"""launch.mode=ssh against real OpenSSH servers: two hosts made of network namespaces on this machine."""
from __future__ import annotations

import subprocess

import pytest

from launch_helpers import assert_clean_summary, launcher_command, read_summary

pytestmark = pytest.mark.timeout(150)


def test_ssh_run_across_two_hosts_with_curve(ssh_hosts, tmp_path):
    """replay, learner and evaluator on host a; two actors on host b; every socket Curve-encrypted.

    The launcher itself runs on host a (inside its namespace), as it would on the head machine."""
    run_dir = tmp_path / "run"
    overrides = [
        "launch.mode=ssh", f"launch.hosts_file={ssh_hosts.hosts_file}",
        "launch.placement.replay=a", "launch.placement.learner=a", "launch.placement.evaluator=a",
        "launch.placement.launcher_host=a", "launch.placement.actors=[{host: b, count: 2}]",
        "security.curve=true",
    ]
    result = subprocess.run(ssh_hosts.in_namespace("a", launcher_command(run_dir, overrides)),
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    (tmp_path / "launcher.out").write_text(output)  # kept with the run for a failure's post-mortem
    assert result.returncode == 0, output[-6000:]
    summary = read_summary(run_dir)
    assert_clean_summary(summary, actors=2)
    assert summary["placement"] == {"replay": "a", "learner": "a", "evaluator": "a", "actor-0": "b", "actor-1": "b"}
    assert summary["refused_connections"] == 0
    # Each role's output came back over SSH with its host and name in front.
    assert "b/actor-1 | " in output and "a/replay | " in output
    config = (run_dir / "config.yaml").read_text()
    assert "replay: 10.77.0.1" in config and "launcher: 10.77.0.1" in config


def test_ssh_host_that_cannot_run_roles_is_reported_before_anything_starts(ssh_hosts, tmp_path):
    """Host b's Python does not exist: the launch stops with the host named and ssh's own error."""
    broken = tmp_path / "hosts.yaml"
    broken.write_text(ssh_hosts.hosts_file.read_text().replace('"b": {"host": "10.77.0.2"}',
                                                               '"b": {"host": "10.77.0.2", "python": "/nowhere/python"}'))
    assert "/nowhere/python" in broken.read_text()
    overrides = ["launch.mode=ssh", f"launch.hosts_file={broken}", "launch.placement.replay=a",
                 "launch.placement.learner=a", "launch.placement.evaluator=a", "launch.placement.launcher_host=a",
                 "launch.placement.actors=[{host: b, count: 1}]"]
    result = subprocess.run(ssh_hosts.in_namespace("a", launcher_command(tmp_path / "run", overrides)),
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "host b (root@10.77.0.2:22) cannot run roles" in output or "host b (10.77.0.2:22) cannot run roles" in output
    assert "/nowhere/python" in output  # the remote shell's own message
    assert read_summary(tmp_path / "run")["exit_codes"] == {}  # nothing was started
