"""Helpers for the launch-mode tests: real launchers as subprocesses, and two SSH hosts made of network namespaces."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

# A short pendulum run, small enough for every launch-mode test to stay within a few seconds of training.
SHORT_RUN = [
    "runner.max_env_steps=1500", "policy.hidden=[32,32]", "policy.activation=relu", "policy.layer_norm=false",
    "sac.batch_size=64", "eval.episodes=2", "eval.num_envs=2", "logging.wandb=disabled",
    "logging.tensorboard=false", "runner.log_every_s=0.5", "logging.console_every_s=1.0",
    "actor.heartbeat_s=0.2", "replay.min_size=128", "actor.random_steps=128", "actor.chunk_len=32",
    "launch.restart_backoff_s=0.2",
]


def launcher_command(run_dir: Path, overrides: list[str], python: str = PYTHON) -> list[str]:
    return [python, str(REPO / "launch" / "run_async.py"), "pendulum_sac_mlp", *SHORT_RUN,
            f"runner.run_dir={run_dir}", *overrides]


def read_summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    assert path.is_file(), f"no summary.json in {run_dir}"
    return json.loads(path.read_text())


def assert_clean_summary(summary: dict, actors: int) -> None:
    """The run reached its step budget, every process exited 0, and the final evaluation happened."""
    assert summary["stop_reason"].startswith("reached 1,500 env steps"), summary["stop_reason"]
    assert summary["env_steps"] >= 1500
    assert summary["learner_updates"] > 0
    assert summary["num_actors"] == actors
    expected = {"replay", "learner", "evaluator", *(f"actor-{i}" for i in range(actors))}
    assert set(summary["exit_codes"]) == expected
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]
    assert summary["eval/return_mean"] is not None and summary["eval/episodes"] == 2


# -- two hosts: network namespaces joined by a veth pair, an sshd in each -------------------------------
NETNS_ADDRESSES = {"a": "10.77.0.1", "b": "10.77.0.2"}
SSHD = "/usr/sbin/sshd"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL)


def namespaces_unavailable() -> str | None:
    """Why this machine cannot host the namespaces, or None if it can."""
    if shutil.which("ip") is None:
        return "the `ip` command (apt package iproute2) is not installed"
    if not Path(SSHD).exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "OpenSSH is not installed (apt packages openssh-server openssh-client)"
    probe = f"zarl-probe-{os.getpid()}"
    result = _run("ip", "netns", "add", probe, check=False)
    if result.returncode != 0:
        return (f"cannot create network namespaces here (needs root or CAP_NET_ADMIN): "
                f"{result.stderr.strip()}")
    _run("ip", "netns", "del", probe, check=False)
    return None


@dataclass
class SSHHosts:
    namespaces: dict[str, str]  # host name -> namespace name
    hosts_file: Path
    addresses: dict[str, str]

    def in_namespace(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[host], *argv]


@pytest.fixture(scope="module")
def ssh_hosts(tmp_path_factory):
    """Hosts "a" (10.77.0.1) and "b" (10.77.0.2): two network namespaces, each with its own sshd that lets
    this user in with a key made for the test. Nothing leaves the namespaces."""
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    tag = str(os.getpid())
    namespaces = {h: f"zarl-{h}-{tag}" for h in NETNS_ADDRESSES}
    veth = {"a": f"zva{tag}"[:15], "b": f"zvb{tag}"[:15]}
    tmp_path = tmp_path_factory.mktemp("hosts")
    keys = tmp_path / "ssh"
    keys.mkdir()
    sshds: list[subprocess.Popen] = []
    try:
        for host, ns in namespaces.items():
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "link", "add", veth["a"], "netns", namespaces["a"], "type", "veth",
             "peer", "name", veth["b"], "netns", namespaces["b"])
        for host, ns in namespaces.items():
            _run("ip", "-n", ns, "addr", "add", f"{NETNS_ADDRESSES[host]}/24", "dev", veth[host])
            _run("ip", "-n", ns, "link", "set", veth[host], "up")
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "user_key"))
        (keys / "authorized_keys").write_text((keys / "user_key.pub").read_text())
        known_hosts = []
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        for host, ns in namespaces.items():
            host_key = keys / f"host_key_{host}"
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
            known_hosts.append(f"{NETNS_ADDRESSES[host]} {(keys / f'host_key_{host}.pub').read_text().strip()}")
            config = keys / f"sshd_{host}.conf"
            config.write_text("\n".join([
                f"ListenAddress {NETNS_ADDRESSES[host]}", "Port 22", f"HostKey {host_key}",
                f"AuthorizedKeysFile {keys / 'authorized_keys'}", "PermitRootLogin prohibit-password",
                "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
                f"PidFile {keys / f'sshd_{host}.pid'}", "LogLevel ERROR", "PrintMotd no", "",
            ]))
            sshds.append(subprocess.Popen(["ip", "netns", "exec", ns, SSHD, "-D", "-e", "-f", str(config)],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True))
        (keys / "known_hosts").write_text("\n".join(known_hosts) + "\n")
        hosts_file = tmp_path / "hosts.yaml"
        hosts_file.write_text(json.dumps({
            "defaults": {"user": os.environ.get("USER") or "root", "identity": str(keys / "user_key"),
                         "python": PYTHON, "workdir": str(REPO),
                         "ssh_options": [f"UserKnownHostsFile={keys / 'known_hosts'}", "StrictHostKeyChecking=yes",
                                         "LogLevel=ERROR"]},
            "hosts": {h: {"host": a} for h, a in NETNS_ADDRESSES.items()},
        }))  # JSON is YAML
        hosts = SSHHosts(namespaces, hosts_file, dict(NETNS_ADDRESSES))
        _wait_for_sshd(hosts, keys, sshds)
        yield hosts
    finally:
        for sshd in sshds:
            sshd.send_signal(signal.SIGTERM)
            try:
                sshd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                sshd.kill()
                sshd.wait()
        for ns in namespaces.values():
            _run("ip", "netns", "del", ns, check=False)  # takes its end of the veth pair with it


def _wait_for_sshd(hosts: SSHHosts, keys: Path, sshds: list[subprocess.Popen]) -> None:
    """Each sshd accepts a login from the other namespace (at most 50 tries, 0.1 s apart)."""
    for host, other in (("a", "b"), ("b", "a")):
        argv = hosts.in_namespace(other, ["ssh", "-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
                                          "-o", f"UserKnownHostsFile={keys / 'known_hosts'}",
                                          "-o", "StrictHostKeyChecking=yes", "-i", str(keys / "user_key"),
                                          hosts.addresses[host], "true"])
        for _ in range(50):
            if _run(*argv, check=False).returncode == 0:
                break
            if any(s.poll() is not None for s in sshds):
                errors = "".join(s.stderr.read() for s in sshds if s.poll() is not None)
                raise RuntimeError(f"sshd exited: {errors}")
            time.sleep(0.1)
        else:
            raise RuntimeError(f"sshd on host {host} does not accept logins: {_run(*argv, check=False).stderr}")


@pytest.fixture
def loopback_namespace():
    """A network namespace with only a loopback interface, as a command prefix (or [] where namespaces cannot
    be made): Ray replaces 127.0.0.1 with the machine's own address, and inside this namespace that address
    is loopback, so none of its traffic can leave even the loopback interface."""
    if namespaces_unavailable():
        yield []
        return
    ns = f"zarl-lo-{os.getpid()}"
    _run("ip", "netns", "add", ns)
    try:
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        yield ["ip", "netns", "exec", ns]
    finally:
        _run("ip", "netns", "del", ns, check=False)
