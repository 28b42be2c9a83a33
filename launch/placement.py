"""Where each process of a run goes: its host, and the GPU it is pinned to.

One description, `launch.placement` in the config, serves every launch mode:

    launch:
      placement:
        replay: gpu-a            # host of each single role; "" = the launcher's machine
        learner: gpu-a
        evaluator: gpu-a
        launcher_host: gpu-a     # how the other hosts reach the launcher (host name or address)
        actors:                  # groups of actors; empty = actor.num_actors here, on actor.devices
          - {host: gpu-b, count: 4, devices: [cuda:0, cuda:1]}

local and tmux run everything on this machine (every host must be ""); ssh reads host names from the hosts
file; ray treats them as Ray node addresses and otherwise lets Ray's scheduler choose.

An actor on "cuda:K" is pinned with CUDA_VISIBLE_DEVICES=K, so its process sees one GPU only, as cuda:0;
the config the roles read says so (actor.devices holds the in-process names). The evaluator sits on actor
0's device. The learner keeps learner.device and sees every GPU of its host.

From the placement the launcher derives network.hosts (who connects where): the replay service's and the
learner's host addresses, and the launcher's. When every process is on the launcher's machine it stays
empty, and the services listen on loopback only.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from omegaconf import DictConfig

from core.config import ConfigError
from core.log import get_logger

LOCAL_HOSTS = ("", "local", "localhost")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # role_env's thread limits, forwarded to other hosts
_CUDA_INDEX = re.compile(r"^cuda:(\d+)$")


@dataclass(frozen=True)
class ProcessPlacement:
    name: str  # process name: replay, learner, evaluator, actor-<i>
    role: str
    index: int
    host: str  # "" = the launcher's machine
    device: str  # as configured: "cpu", "cuda", "cuda:K", "auto"
    python: str = ""  # its interpreter (relative to the project's root, or absolute); "" = the launcher's own

    @property
    def is_local(self) -> bool:
        return self.host in LOCAL_HOSTS

    @property
    def gpu(self) -> int | None:
        """The GPU index the process is pinned to, or None if it is not pinned."""
        if self.role not in ("actor", "evaluator"):
            return None
        match = _CUDA_INDEX.match(self.device)
        return int(match.group(1)) if match else None

    @property
    def device_in_process(self) -> str:
        """The device name the process itself uses: a pinned process sees its one GPU as cuda:0."""
        return "cuda:0" if self.gpu is not None else self.device


def _actor_groups(cfg: DictConfig) -> list[tuple[str, str]]:
    """(host, device) of actor 0, 1, ... in order."""
    groups = list(cfg.launch.placement.actors)
    if not groups:
        devices = [str(d) for d in cfg.actor.devices]
        return [("", devices[i % len(devices)] if devices else str(cfg.actor.device))
                for i in range(cfg.actor.num_actors)]
    actors = []
    for group in groups:
        devices = [str(d) for d in group.devices]
        for j in range(group.count):
            actors.append((str(group.host), devices[j % len(devices)] if devices else str(cfg.actor.device)))
    return actors


def env_python(cfg: DictConfig, role: str) -> str:
    """The interpreter of a role's processes: actor.python, or the one the role's env needs (LIBERO's venv for
    LiberoSpatial-v0), for the roles that make envs (actors, the evaluator); "" = the launcher's own."""
    if role not in ("actor", "evaluator"):
        return ""
    if cfg.actor.python:
        return str(cfg.actor.python)
    import envs

    env_id = (cfg.eval_env or {}).get("id", cfg.env.id) if role == "evaluator" else cfg.env.id
    return envs.role_python(str(env_id)) or ""


def plan(cfg: DictConfig) -> list[ProcessPlacement]:
    """Every process of the run, where it goes, on which device and with which interpreter, in start order."""
    where = cfg.launch.placement
    actors = _actor_groups(cfg)
    processes = [ProcessPlacement("replay", "replay", 0, str(where.replay), "cpu"),
                 ProcessPlacement("learner", "learner", 0, str(where.learner), str(cfg.learner.device))]
    if cfg.eval.enabled:
        processes.append(ProcessPlacement("evaluator", "evaluator", 0, str(where.evaluator), actors[0][1],
                                          env_python(cfg, "evaluator")))
    python = env_python(cfg, "actor")
    processes += [ProcessPlacement(f"actor-{i}", "actor", i, host, device, python)
                  for i, (host, device) in enumerate(actors)]
    from launch.processes import REPO_ROOT

    check_interpreters(processes, REPO_ROOT)
    return processes


def interpreter(p: ProcessPlacement, root: str | os.PathLike) -> str | None:
    """The interpreter path of a process on a machine whose project checkout is `root` (None: the launcher's)."""
    if not p.python:
        return None
    return p.python if os.path.isabs(p.python) else os.path.join(str(root), p.python)


def check_interpreters(processes: list[ProcessPlacement], root: str | os.PathLike) -> None:
    """Every local process's interpreter exists (a LIBERO run without its venv fails here, not in each actor)."""
    for p in processes:
        path = interpreter(p, root) if p.is_local else None
        if path is not None and not os.access(path, os.X_OK):
            hint = " (make it with `bash scripts/setup.sh --libero`)" if ".venv-libero" in path else ""
            raise ConfigError(f"{p.name} runs with the interpreter {path}, which does not exist{hint}; "
                              f"actor.python sets another")


def is_single_host(processes: list[ProcessPlacement]) -> bool:
    return all(p.is_local for p in processes)


def write_actor_devices(cfg: DictConfig, processes: list[ProcessPlacement]) -> None:
    """Make the config the roles read agree with the placement: the number of actors and the device each
    one uses inside its process (cuda:0 for a pinned actor)."""
    actors = [p for p in processes if p.role == "actor"]
    if cfg.launch.placement.actors and cfg.actor.num_actors != len(actors):
        get_logger("launcher").info(f"launch.placement.actors places {len(actors)} actors "
                                    f"(actor.num_actors was {cfg.actor.num_actors})")
        cfg.actor.num_actors = len(actors)
    if any(p.gpu is not None for p in actors) or cfg.launch.placement.actors:
        cfg.actor.devices = [p.device_in_process for p in actors]


def service_addresses(processes: list[ProcessPlacement], address_of, launcher_address: str) -> dict[str, str]:
    """network.hosts for a run over several hosts: endpoint owner -> address; {} when everything is local.

    `address_of(host name)` gives the address other hosts use to reach that host."""
    if is_single_host(processes):
        return {}
    by_role = {p.role: p for p in processes}
    if not launcher_address:
        raise ConfigError("roles run on other hosts, so they need an address for the launcher's machine: set "
                          "launch.placement.launcher_host (a host of the hosts file, or an address)")

    def address(p: ProcessPlacement) -> str:
        return launcher_address if p.is_local else address_of(p.host)

    return {"replay": address(by_role["replay"]), "learner": address(by_role["learner"]),
            "launcher": launcher_address}


def check_addresses(cfg: DictConfig, hosts: dict[str, str]) -> None:
    if hosts and cfg.network.transport != "tcp":
        raise ConfigError("roles on several hosts talk over TCP: set network.transport=tcp (ipc is one machine only)")


def cuda_visible_devices(p: ProcessPlacement, inherited: str | None = None) -> str | None:
    """CUDA_VISIBLE_DEVICES for a process: its GPU, counted among the GPUs the launcher itself may use.

    None means "leave it as inherited". When the launcher runs with CUDA_VISIBLE_DEVICES=2,3, an actor on
    cuda:1 gets 3, the second of those."""
    if p.gpu is None:
        return None
    if inherited:
        visible = [v.strip() for v in inherited.split(",") if v.strip()]
        if p.gpu >= len(visible):
            raise ConfigError(f"{p.name} is placed on cuda:{p.gpu} but CUDA_VISIBLE_DEVICES={inherited} "
                              f"leaves only {len(visible)} GPU(s)")
        return visible[p.gpu]
    return str(p.gpu)


def local_env(cfg: DictConfig, p: ProcessPlacement) -> dict[str, str]:
    """The full environment of a process started on this machine (threads from role_env, GPU from placement)."""
    from launch.processes import role_env

    env = role_env(cfg, p.role, p.index)
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    pinned = cuda_visible_devices(p, inherited)
    if pinned is not None:
        env["CUDA_VISIBLE_DEVICES"] = pinned
    return env


def remote_env(cfg: DictConfig, p: ProcessPlacement, workdir: str, extra: dict | None = None) -> dict[str, str]:
    """Only the variables a process on another host must be given: what role_env adds to the launcher's own
    environment (thread counts), the project on PYTHONPATH, the pinned GPU, and the host's own settings."""
    from launch.processes import role_env

    full = role_env(cfg, p.role, p.index)
    added = {k: v for k, v in full.items() if (k in THREAD_VARIABLES or os.environ.get(k) != v)
             and k not in ("PYTHONPATH", "CUDA_VISIBLE_DEVICES")}
    env = {"PYTHONPATH": workdir, **added}
    pinned = cuda_visible_devices(p)
    if pinned is not None:
        env["CUDA_VISIBLE_DEVICES"] = pinned
    env.update({str(k): str(v) for k, v in (extra or {}).items()})
    return env


def describe(processes: list[ProcessPlacement]) -> str:
    """One line per host: which processes run there."""
    hosts: dict[str, list[str]] = {}
    for p in processes:
        label = p.name + (f" ({p.device})" if p.device not in ("cpu", "auto") else "")
        hosts.setdefault(p.host or "this machine", []).append(label)
    return "; ".join(f"{host}: {', '.join(names)}" for host, names in hosts.items())
