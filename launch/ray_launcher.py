"""launch.mode=ray: each role is a Ray actor, placed by Ray's scheduler; the roles still talk over ZeroMQ.

    ray start --head ...                               # or let the launcher start a private instance
    python launch/run_async.py CONFIG launch.mode=ray launch.ray_address=auto

Ray only schedules, supervises and collects logs. A Ray actor (RoleActor) runs the role's usual command
line (launch/processes.role_command) as a child process on the node Ray chose, streams its output to the
actor's stdout (Ray forwards it to this console, prefixed with the process name) and to
<run_dir>/logs/<name>.log on that node, and returns its exit code. Sockets, protocol and monitor are the
same as in every other mode; this process (the Ray driver) runs the monitor and writes summary.json.

Resources: every role reserves launch.ray_cpus_per_role CPUs. An actor (or the evaluator) placed on a
CUDA device, and a learner whose learner.device is "cuda", reserve one GPU, and Ray chooses which one
(it sets CUDA_VISIBLE_DEVICES, so the role sees it as cuda:0). A placement host (launch.placement) pins
a role to the Ray node with that IP address; "" lets Ray choose.

Addresses: once every role has a node, the replay service's and the learner's node addresses, and the
driver's, become network.hosts; if every role landed on the driver's node, everything stays on loopback.
The config (and the run's Curve keys) travel to each role's node with the call, so nodes need only the
project checkout at the same path as here, and its Python environment with ray installed.
Ray's own traffic is not encrypted by ZeroMQ's Curve; use Ray's TLS settings on untrusted networks.
"""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from core.config import ConfigError
from core.log import get_logger
from launch import placement
from launch.launcher import Launcher
from launch.placement import ProcessPlacement
from launch.processes import REPO_ROOT, die_with_parent, role_command

log = get_logger("launcher")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("launch.mode=ray needs Ray: .venv/bin/pip install ray") from None
    return ray


def ray_options(cfg: DictConfig, p: ProcessPlacement) -> dict:
    """The Ray actor options of a process: its CPU and GPU reservation, and its node if the placement names one."""
    gpus = 0
    if p.role in ("actor", "evaluator") and p.device.startswith("cuda"):
        gpus = 1
    elif p.role == "learner" and str(cfg.learner.device).startswith("cuda"):
        if str(cfg.learner.device) not in ("cuda", "cuda:0"):
            raise ConfigError(f"with launch.mode=ray, Ray chooses the learner's GPU: set learner.device=cuda, "
                              f"not {cfg.learner.device}")
        gpus = 1
    # max_concurrency: signal() must run while run() blocks for the whole life of the role.
    options = {"num_cpus": cfg.launch.ray_cpus_per_role, "num_gpus": gpus, "max_concurrency": 4}
    if not p.is_local:
        options["resources"] = {f"node:{p.host}": 0.001}  # Ray's built-in resource of the node with that IP
    return options


class RoleActor:
    """A Ray actor that runs one role process on its node (wrapped with ray.remote by the launcher)."""

    def __init__(self, name: str):
        self.name = name
        self.proc: subprocess.Popen | None = None

    def __repr__(self) -> str:  # Ray prefixes the actor's output lines with this
        return self.name

    def where(self) -> tuple[str, int]:
        """(Ray node id, pid) of this actor."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def run(self, run_dir: str, files: dict[str, bytes], role: str, index: int, env: dict[str, str],
            python: str | None = None) -> tuple[int, list[str]]:
        """Write the run's files on this node, run the role to its end; return its exit code and last lines."""
        run_path = Path(run_dir)
        for relative, data in files.items():
            target = run_path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            # Other roles on this node may be reading the same file: replace it whole, never rewrite in place.
            temporary = target.with_name(f".{target.name}.{os.getpid()}")
            temporary.write_bytes(data)
            os.chmod(temporary, 0o600 if relative.endswith("_secret") else 0o644)
            os.replace(temporary, target)
        (run_path / "logs").mkdir(parents=True, exist_ok=True)
        tail: collections.deque = collections.deque(maxlen=60)
        self.proc = subprocess.Popen(role_command(role, run_dir, index, python=python), env={**os.environ, **env}, cwd=REPO_ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True, preexec_fn=die_with_parent)
        with open(run_path / "logs" / f"{self.name}.log", "a", buffering=1) as log_file:
            for line in self.proc.stdout:
                log_file.write(line)
                tail.append(line)
                sys.stdout.write(line)
                sys.stdout.flush()
        return self.proc.wait(), list(tail)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)


class RayRole:
    """The launcher's view of a role in a Ray actor (same interface as RoleProcess)."""

    def __init__(self, ray, name: str, actor, pid: int):
        self.ray, self.name, self.actor, self.pid = ray, name, actor, pid
        self.future = None
        self.code: int | None = None
        self.tail: collections.deque = collections.deque(maxlen=60)

    def start(self, run_dir: str, files: dict[str, bytes], p: ProcessPlacement, env: dict[str, str]) -> "RayRole":
        self.future = self.actor.run.remote(run_dir, files, p.role, p.index, env,
                                            placement.interpreter(p, REPO_ROOT))
        return self

    def poll(self) -> int | None:
        if self.code is None and self.future is not None:
            ready, _ = self.ray.wait([self.future], timeout=0)
            if ready:
                try:
                    self.code, lines = self.ray.get(self.future)
                    self.tail.extend(lines)
                except Exception as e:  # the actor (or its node) died: a crash like any other
                    self.code = -signal.SIGKILL
                    self.tail.append(f"(Ray actor {self.name} died: {type(e).__name__}: {e})\n")
        return self.code

    def signal(self, sig: int) -> None:
        if self.poll() is not None:
            return
        if sig == signal.SIGKILL:
            self.ray.kill(self.actor, no_restart=True)  # the role process dies with it (PDEATHSIG)
        else:
            self.actor.signal.remote(sig)

    def wait_output(self, timeout: float = 0.0) -> None:
        """The output arrives with the exit code."""


class RayLauncher(Launcher):
    mode = "ray"

    def __init__(self, cfg: DictConfig):
        self.ray = _import_ray()
        self.ray_actors: dict[str, tuple] = {}  # name -> (actor handle, pid) made in place(), used by the first start
        self.files: dict[str, bytes] = {}
        super().__init__(cfg)

    def _connect(self, processes: list[ProcessPlacement]) -> None:
        cfg = self.cfg
        runtime_env = {"env_vars": {"PYTHONPATH": str(REPO_ROOT)}}
        if cfg.launch.ray_address:
            self.ray.init(address=cfg.launch.ray_address, runtime_env=runtime_env, include_dashboard=False,
                          configure_logging=False)
        else:
            # A private instance on this machine, on loopback, with room for every role (roles mostly wait on
            # sockets, so reserving more CPUs than there are cores only tells Ray that they may share them).
            cpus = max(os.cpu_count() or 1, int(len(processes) * cfg.launch.ray_cpus_per_role) + 1)
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            self.ray.init(num_cpus=cpus, runtime_env=runtime_env, include_dashboard=False, configure_logging=False,
                          _node_ip_address="127.0.0.1")

    def _new_actor(self, p: ProcessPlacement):
        remote_class = self.ray.remote(RoleActor)
        actor = remote_class.options(**ray_options(self.cfg, p)).remote(p.name)
        return actor

    def place(self) -> list[ProcessPlacement]:
        cfg = self.cfg
        processes = placement.plan(cfg)
        self._connect(processes)
        actors = {p.name: self._new_actor(p) for p in processes}
        where = dict(zip(actors, self.ray.get([a.where.remote() for a in actors.values()])))
        self.ray_actors = {name: (actors[name], pid) for name, (_, pid) in where.items()}
        address = {n["NodeID"]: n["NodeManagerAddress"] for n in self.ray.nodes()}  # as the nodes registered
        driver_node = self.ray.get_runtime_context().get_node_id()
        if all(node == driver_node for node, _ in where.values()):
            hosts = {}  # every role on this machine: loopback
        else:
            hosts = {"replay": address[where["replay"][0]], "learner": address[where["learner"][0]],
                     "launcher": address[driver_node]}
        placement.check_addresses(cfg, hosts)
        cfg.network.hosts = hosts
        placement.write_actor_devices(cfg, processes)
        log.info("Ray placed the roles: " + ", ".join(f"{n} on {address[w[0]]}" for n, w in where.items()))
        return processes

    def before_start(self) -> None:
        from launch.ssh import run_files

        self.files = run_files(self.cfg, str(self.run_dir), runs_services=True)

    def start_process(self, p: ProcessPlacement) -> RayRole:
        if p.name in self.ray_actors:
            actor, pid = self.ray_actors.pop(p.name)
        else:  # a restart: a fresh Ray actor, wherever Ray puts it
            actor = self._new_actor(p)
            pid = self.ray.get(actor.where.remote())[1]
        env = placement.remote_env(self.cfg, p, str(REPO_ROOT))
        env.pop("CUDA_VISIBLE_DEVICES", None)  # Ray has set it to the GPU it reserved for this actor
        return RayRole(self.ray, p.name, actor, pid).start(str(self.run_dir), self.files, p, env)

    def after_stop(self) -> None:
        for proc in self.procs.values():
            self.ray.kill(proc.actor, no_restart=True)
        self.ray.shutdown()
