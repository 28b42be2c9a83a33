"""launch.mode=ssh against real OpenSSH servers: two hosts made of network namespaces on this machine."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from launch_helpers import assert_clean_summary, launcher_command, read_summary

pytestmark = pytest.mark.timeout(150)


def test_ssh_run_across_two_hosts_with_curve(ssh_hosts, tmp_path):
    """replay, learner and evaluator on host a; two actors on host b; every socket Curve-encrypted.

    The launcher itself runs on host a (inside its namespace), as it would on the head machine. Host b keeps
    its run directories elsewhere, as a machine without a shared file system would: it gets config.yaml and
    its Curve keys over SSH."""
    run_dir = tmp_path / "run"
    hosts = json.loads(ssh_hosts.hosts_file.read_text())
    hosts["hosts"]["b"]["runs_dir"] = str(tmp_path / "b_runs")
    hosts_file = tmp_path / "hosts.yaml"
    hosts_file.write_text(json.dumps(hosts))
    overrides = [
        "launch.mode=ssh", f"launch.hosts_file={hosts_file}",
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
    # Replay and learner share host a: the batches go over an owner-only ipc socket there, not TCP with Curve.
    assert "ipc_endpoints:\n  - replay_learner" in config and (run_dir / "sockets" / "replay_learner.sock").exists()
    assert oct((run_dir / "sockets").stat().st_mode & 0o777) == "0o700"
    b_run = tmp_path / "b_runs" / "run"
    assert f"run_dir: {b_run}" in (b_run / "config.yaml").read_text()
    # b runs only clients: it got the server's public key and its client pair, never the server's secret.
    assert (b_run / "keys" / "server.key").is_file() and (b_run / "keys" / "clients" / "client.key_secret").is_file()
    assert not (b_run / "keys" / "server.key_secret").exists()


def test_ssh_host_that_cannot_run_roles_is_reported_before_anything_starts(ssh_hosts, tmp_path):
    """Host b's Python does not exist: the launch stops with the host named and ssh's own error."""
    broken = tmp_path / "hosts.yaml"
    hosts = json.loads(ssh_hosts.hosts_file.read_text())
    hosts["hosts"]["b"]["python"] = "/nowhere/python"
    broken.write_text(json.dumps(hosts))
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


def test_ssh_ctrl_c_stops_every_remote_role(ssh_hosts, tmp_path):
    """Ctrl-C (SIGINT) to the launcher stops the roles on both hosts; none is left running."""
    run_dir = tmp_path / "run"
    overrides = ["launch.mode=ssh", f"launch.hosts_file={ssh_hosts.hosts_file}", "launch.placement.replay=a",
                 "launch.placement.learner=a", "launch.placement.evaluator=a", "launch.placement.launcher_host=a",
                 "launch.placement.actors=[{host: b, count: 2}]", "runner.max_env_steps=10000000"]
    output = tmp_path / "launcher.out"
    with open(output, "w") as out:
        launcher = subprocess.Popen(ssh_hosts.in_namespace("a", launcher_command(run_dir, overrides)),
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        # Wait (at most 60 s) until the replay service has seen both actors, then press Ctrl-C.
        joined = re.compile(r"(actor-\d) joined \(pid (\d+)")
        deadline = time.time() + 60
        actors: dict[str, int] = {}
        while len(actors) < 2 and time.time() < deadline and launcher.poll() is None:
            actors = {name: int(pid) for name, pid in joined.findall(output.read_text())}
            time.sleep(0.2)
        assert len(actors) == 2, output.read_text()[-4000:]
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=60) == 130, output.read_text()[-4000:]
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    summary = read_summary(run_dir)
    assert summary["stop_reason"] == "SIGINT received"
    assert set(summary["exit_codes"]) == {"replay", "learner", "evaluator", "actor-0", "actor-1"}
    assert all(code is not None for code in summary["exit_codes"].values())
    for name, pid in actors.items():  # the namespaces share this machine's process table
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
