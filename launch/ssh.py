"""launch.mode=ssh: each role on its host, started over SSH (the OpenSSH client), watched from here.

    python launch/run_async.py CONFIG launch.mode=ssh launch.hosts_file=hosts.yaml \\
        launch.placement.replay=gpu-a launch.placement.learner=gpu-a launch.placement.launcher_host=gpu-a \\
        'launch.placement.actors=[{host: gpu-b, count: 8}]'

The hosts file says how to reach each host (`defaults` apply to every host):

    defaults: {user: alice, identity: ~/.ssh/id_ed25519, python: /opt/zarl/.venv/bin/python, workdir: /opt/zarl}
    hosts:
      gpu-a: {host: 10.0.0.11}
      gpu-b: {host: 10.0.0.12, port: 2222, env: {MUJOCO_GL: egl}}

Fields: host (address: what ssh connects to and what the other hosts connect to), user, port (22),
identity (private key file), python (the project's interpreter there), workdir (the project checkout
there), runs_dir (where run directories go there; default: the same path as here), env (variables for
every role there), ssh_options (extra `-o` options, e.g. UserKnownHostsFile=...).

What happens:
  1. before any role starts, each host gets its run directory with config.yaml (and, with
     security.curve=true, the key files it needs: the server secret only where a service runs), and is
     checked: can we log in, is there the checkout and its Python? A host that fails stops the launch
     with ssh's own message.
  2. each role runs as `ssh -tt HOST 'cd WORKDIR && exec env ... PYTHON -u -m launch.role ...'`: the
     same command line as every mode. Its output comes back over the connection and is shown with a
     `host/role |` prefix and written to logs/<role>.log here.
  3. stopping: the monitor broadcasts stop; a role that lingers gets Ctrl-C through its terminal; one
     that still lingers loses its connection (the remote side gets SIGHUP). Ctrl-C here does all that.
The ssh clients run in their own process group (Ctrl-C in this terminal reaches only the launcher, which
stops the roles in order) and die with the launcher, taking their remote roles with them.
"""
from __future__ import annotations

import io
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from core.config import ConfigError
from core.log import get_logger
from core.net import IPC_PATH_MAX
from core.security import keys_dir
from launch import placement
from launch.launcher import Launcher
from launch.placement import ProcessPlacement
from launch.processes import REPO_ROOT, RoleProcess, die_with_parent, role_command

log = get_logger("launcher")

CONNECT_TIMEOUT_S = 10
SERVICE_ROLES = ("replay", "learner")  # roles whose hosts need the server's secret key


@dataclass
class Host:
    name: str
    host: str
    user: str | None = None
    port: int = 22
    identity: str | None = None
    python: str = "python3"
    workdir: str = str(REPO_ROOT)
    runs_dir: str | None = None
    env: dict = field(default_factory=dict)
    ssh_options: list = field(default_factory=list)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def ssh_argv(self, tty: bool) -> list[str]:
        """The ssh client's command line up to the remote command. BatchMode: never ask for a password."""
        argv = ["ssh", "-tt" if tty else "-T", "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3"]
        if self.identity:
            argv += ["-i", str(Path(self.identity).expanduser()), "-o", "IdentitiesOnly=yes"]
        for option in self.ssh_options:
            argv += ["-o", str(option)]
        return argv + [self.destination, "--"]

    def run_dir(self, local_run_dir: Path) -> str:
        return str(Path(self.runs_dir) / local_run_dir.name) if self.runs_dir else str(local_run_dir)


def load_hosts(path: str | Path) -> dict[str, Host]:
    """Read and check a hosts file; every problem is named with the host it concerns."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"hosts file {path} does not exist (launch.hosts_file)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("hosts"), dict) or not data["hosts"]:
        raise ConfigError(f"{path} must hold a mapping 'hosts:' of host name -> settings (see launch/ssh.py)")
    unknown_top = set(data) - {"hosts", "defaults"}
    if unknown_top:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown_top)}; expected 'hosts' and 'defaults'")
    known = {f.name for f in fields(Host)} - {"name"}
    defaults = data.get("defaults") or {}
    hosts = {}
    for name, settings in data["hosts"].items():
        merged = {**defaults, **(settings or {})}
        unknown = set(merged) - known
        if unknown:
            raise ConfigError(f"{path}: host '{name}' has unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        if not merged.get("host"):
            raise ConfigError(f"{path}: host '{name}' needs 'host:' (its address or DNS name)")
        hosts[str(name)] = Host(name=str(name), **merged)
    return hosts


class RemoteRoleProcess(RoleProcess):
    """A role on another host: the local ssh client that runs it, its output streamed back with a prefix.

    A RoleProcess whose command is the ssh client; it differs in how it starts (its own session, a stdin
    for Ctrl-C), how lines are read (the remote terminal's \\r) and how it is signalled."""

    def __init__(self, name: str, host: Host, argv: list[str], log_dir: Path, echo: bool = True):
        self.host = host
        self.prefix = f"{host.name}/{name} | "
        super().__init__(name, argv, None, log_dir, echo)

    def _popen(self, command: list[str], env: dict | None) -> subprocess.Popen:
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True, preexec_fn=die_with_parent)

    def _stream(self) -> None:
        for line in self.proc.stdout:
            line = line.replace("\r", "")  # the remote terminal ends lines with \r\n
            self.log_file.write(line)
            self.tail.append(line)
            if self.echo:
                sys.stderr.write(self.prefix + line)
        code = self.proc.wait()
        if code == 255:
            note = (f"(ssh to {self.host.destination} port {self.host.port} failed, or the connection dropped: "
                    f"exit code 255)\n")
            self.tail.append(note)
            self.log_file.write(note)
        self.log_file.close()

    def signal(self, sig: int) -> None:
        """SIGINT/SIGTERM: Ctrl-C through the remote terminal (the role stops cleanly); SIGKILL: drop the
        connection (the remote role gets SIGHUP)."""
        if self.proc.poll() is not None:
            return
        if sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.proc.stdin.write("\x03")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        else:
            self.proc.kill()


def run_files(cfg: DictConfig, run_dir: str, runs_services: bool) -> dict[str, bytes]:
    """What a host needs in its run directory `run_dir`: config.yaml (naming that directory), and with
    security.curve the run's Curve keys it uses (the server's secret only where a service runs)."""
    host_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    host_cfg.runner.run_dir = run_dir
    files = {"config.yaml": OmegaConf.to_yaml(host_cfg).encode()}
    if cfg.security.curve and not cfg.security.keys_dir:  # the run's own keys: ship them; else they are there
        keys = keys_dir(cfg)
        names = ["server.key", f"clients/{cfg.security.client}.key_secret"]
        names += [f"clients/{p.name}" for p in sorted((keys / "clients").glob("*.key"))]
        if runs_services:
            names.append("server.key_secret")
        files.update({f"keys/{n}": (keys / n).read_bytes() for n in names})
    return files


def tar_archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            info.mode = 0o600 if name.endswith("_secret") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class SSHLauncher(Launcher):
    mode = "ssh"

    def __init__(self, cfg: DictConfig):
        self.hosts = load_hosts(cfg.launch.hosts_file)
        super().__init__(cfg)

    def place(self) -> list[ProcessPlacement]:
        cfg = self.cfg
        processes = placement.plan(cfg)
        for p in processes:
            if not p.is_local and p.host not in self.hosts:
                raise ConfigError(f"{p.name} is placed on host '{p.host}', which is not in "
                                  f"{cfg.launch.hosts_file} (hosts: {', '.join(self.hosts)})")
        where = str(cfg.launch.placement.launcher_host)
        launcher_address = self.hosts[where].host if where in self.hosts else where
        hosts = placement.service_addresses(processes, lambda name: self.hosts[name].host, launcher_address)
        placement.check_addresses(cfg, hosts)
        cfg.network.hosts = hosts
        self._same_host_endpoints(processes)
        placement.write_actor_devices(cfg, processes)
        log.info(f"placement: {placement.describe(processes)}")
        return processes

    def _same_host_endpoints(self, processes: list[ProcessPlacement]) -> None:
        """The learner's batches are the run's heaviest traffic (GB/s): when the learner shares the replay
        service's host, they go over an owner-only ipc:// socket there instead of TCP with Curve, which
        encrypts every byte."""
        cfg = self.cfg
        service_hosts = {p.host for p in processes if p.role in ("replay", "learner")}
        if cfg.network.transport != "tcp" or len(service_hosts) != 1:
            return
        host = service_hosts.pop()
        run_dir = self.hosts[host].run_dir(self.run_dir) if host else str(self.run_dir)
        if len(str(Path(run_dir) / "sockets" / "replay_learner.sock")) <= IPC_PATH_MAX:
            cfg.network.ipc_endpoints = ["replay_learner"]

    def _remote_hosts(self) -> dict[str, bool]:
        """Host name -> whether a service (replay, learner) runs there, for every host used over SSH."""
        used: dict[str, bool] = {}
        for p in self.placements.values():
            if not p.is_local:
                used[p.host] = used.get(p.host, False) or p.role in SERVICE_ROLES
        return used

    def before_start(self) -> None:
        """Give each host its run directory and check it can run roles, before starting any."""
        if self._remote_hosts() and shutil.which("ssh") is None:
            raise RuntimeError("launch.mode=ssh needs the OpenSSH client: apt-get install openssh-client")
        for name, runs_services in self._remote_hosts().items():
            host = self.hosts[name]
            run_dir = host.run_dir(self.run_dir)
            workdir, python = shlex.quote(host.workdir), shlex.quote(host.python)
            no_checkout = shlex.quote(f"no project checkout at {host.workdir}")
            no_python = shlex.quote(f"cannot import the project with {host.python} in {host.workdir}")
            script = (f"set -e; mkdir -p {shlex.quote(run_dir)}; tar -x -m -C {shlex.quote(run_dir)} -f -; "
                      f"cd {workdir} || {{ echo {no_checkout} >&2; exit 3; }}; "
                      f"{python} -c 'import launch.role, zmq, omegaconf' || {{ echo {no_python} >&2; exit 4; }}")
            bundle = tar_archive(run_files(self.cfg, run_dir, runs_services))
            try:
                result = subprocess.run(host.ssh_argv(tty=False) + [script], input=bundle,
                                        capture_output=True, timeout=CONNECT_TIMEOUT_S + 60)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"host {name} ({host.destination}:{host.port}) did not answer in time") from None
            if result.returncode != 0:
                raise RuntimeError(f"host {name} ({host.destination}:{host.port}) cannot run roles (exit code "
                                   f"{result.returncode}): {result.stderr.decode(errors='replace').strip()}")
            log.info(f"host {name} ({host.destination}) ready: run directory {run_dir}")

    def start_process(self, p: ProcessPlacement):
        if p.is_local:
            python = placement.interpreter(p, REPO_ROOT)
            return RoleProcess(p.name, role_command(p.role, self.cfg.runner.run_dir, p.index, python=python),
                               placement.local_env(self.cfg, p), self.run_dir / "logs")
        host = self.hosts[p.host]
        env = placement.remote_env(self.cfg, p, host.workdir, host.env)
        # the host's project interpreter, or the one the role needs there (e.g. its checkout's LIBERO venv)
        argv = role_command(p.role, host.run_dir(self.run_dir), p.index,
                            python=placement.interpreter(p, host.workdir) or host.python)
        remote = f"cd {shlex.quote(host.workdir)} && exec env {shlex.join([f'{k}={v}' for k, v in env.items()] + argv)}"
        return RemoteRoleProcess(p.name, host, host.ssh_argv(tty=True) + [remote], self.run_dir / "logs")
