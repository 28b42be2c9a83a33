"""Runs every role as a local process, watches them, and ends the run cleanly.

What happens, in order:
  1. the resolved config (with ports) is written to <run_dir>/config.yaml;
  2. the monitor binds the stats and control sockets;
  3. replay, learner, evaluator and actors start as separate processes;
  4. the monitor logs progress until runner.max_env_steps (or max_wall_s) is reached,
     then broadcasts stop; roles write their final checkpoint/eval and exit;
  5. summary.json is written; the exit code is non-zero if a role failed.
A crashed actor is restarted (launch.restart_actors times, with back-off); a
crashed replay service or learner ends the run with its traceback shown.
Ctrl-C or SIGTERM to the launcher stops everything within runner.shutdown_timeout_s.
"""
from __future__ import annotations

import datetime
import os
import signal
import sys
import time
from pathlib import Path

import zmq
from omegaconf import DictConfig

from core.config import load_config, save_config
from core.log import get_logger
from core.net import assign_ports
from launch.monitor import Monitor
from launch.processes import RoleProcess, role_command, role_env

log = get_logger("launcher")


def prepare_run(preset: str, overrides: list[str]) -> DictConfig:
    cfg = load_config(preset, overrides)
    if not cfg.runner.run_dir:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        cfg.runner.run_dir = str(Path("runs") / f"{cfg.name}-{stamp}")
    run_dir = Path(cfg.runner.run_dir).resolve()
    cfg.runner.run_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    assign_ports(cfg)
    save_config(cfg, run_dir / "config.yaml")
    return cfg


def describe_device(cfg: DictConfig) -> str:
    import torch

    if torch.cuda.is_available() and str(cfg.learner.device) != "cpu":
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu ({os.cpu_count()} cores)"


def role_names(cfg: DictConfig) -> list[tuple[str, str, int]]:
    """(process name, role, index) for every process of the run."""
    names = [("replay", "replay", 0), ("learner", "learner", 0)]
    if cfg.eval.enabled:
        names.append(("evaluator", "evaluator", 0))
    names += [(f"actor-{i}", "actor", i) for i in range(cfg.actor.num_actors)]
    return names


class LocalLauncher:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.run_dir = Path(cfg.runner.run_dir)
        self.ctx = zmq.Context.instance()
        self.monitor = Monitor(cfg, self.ctx)
        self.procs: dict[str, RoleProcess] = {}
        self.restarts: dict[str, int] = {}
        self.exit_codes: dict[str, int | None] = {}
        self._interrupted: str | None = None

    def _start(self, name: str, role: str, index: int) -> None:
        self.procs[name] = RoleProcess(name, role_command(role, self.cfg.runner.run_dir, index),
                                       role_env(self.cfg, role, index), self.run_dir / "logs")

    def _on_signal(self, signum, frame) -> None:
        self._interrupted = signal.Signals(signum).name

    def _handle_exits(self) -> str | None:
        """Restart crashed actors; return a reason to stop the run if a role that cannot be replaced failed."""
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None or name in self.exit_codes:
                continue
            proc.wait_output()
            if code == 0:
                self.exit_codes[name] = 0
                if name in ("replay", "learner"):
                    return f"{name} exited"
                continue
            tail = "".join(proc.tail).rstrip()
            log.error(f"{name} (pid {proc.pid}) died with exit code {code}; its last output:\n{tail}")
            if name.startswith("actor-") and self.restarts.get(name, 0) < self.cfg.launch.restart_actors:
                self.restarts[name] = self.restarts.get(name, 0) + 1
                time.sleep(self.cfg.launch.restart_backoff_s * self.restarts[name])
                log.info(f"restarting {name} (restart {self.restarts[name]} of {self.cfg.launch.restart_actors})")
                self._start(name, "actor", int(name.split("-")[1]))
                continue
            self.exit_codes[name] = code
            if not name.startswith("actor-"):
                return f"{name} failed"
            if self._all_actors_gone():
                return "every actor failed"
        return None

    def _all_actors_gone(self) -> bool:
        return all(p.poll() is not None for n, p in self.procs.items() if n.startswith("actor-"))

    def run(self) -> int:
        cfg = self.cfg
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        log.info(f"run directory: {self.run_dir}")
        for name, role, index in role_names(cfg):
            self._start(name, role, index)
        log.info(f"started {len(self.procs)} processes: " + ", ".join(f"{n} (pid {p.pid})" for n, p in self.procs.items()))
        reason, failed = None, False
        while reason is None:
            self.monitor.poll(100)
            if self._interrupted:
                reason = f"{self._interrupted} received"
            elif self.monitor.env_steps >= cfg.runner.max_env_steps:
                reason = f"reached {cfg.runner.max_env_steps:,} env steps"
            elif cfg.runner.max_wall_s and time.time() - self.monitor.start > cfg.runner.max_wall_s:
                reason = f"reached the wall-clock limit of {cfg.runner.max_wall_s:.0f} s"
            else:
                failure = self._handle_exits()
                if failure:
                    reason, failed = failure, True
        self._shutdown(reason)
        for s, h in previous.items():
            signal.signal(s, h)
        summary = self.monitor.summary(self.exit_codes, describe_device(cfg))
        summary["stop_reason"] = reason
        summary["actor_restarts"] = dict(self.restarts)
        self.monitor.close(summary)
        log.info(f"summary: {self.run_dir / 'summary.json'} (eval return {summary['eval/return_mean']}, "
                 f"success {summary['eval/success_rate']}, {summary['wall_s']:.0f} s)")
        bad = {n: c for n, c in self.exit_codes.items() if c not in (0, None)}
        if failed or bad:
            log.error(f"run failed: {reason}; exit codes {bad}")
            return 1
        return 130 if self._interrupted else 0

    def _shutdown(self, reason: str) -> None:
        """Stop broadcast, then SIGTERM, then SIGKILL: every process is gone within the timeout."""
        self.monitor.broadcast_stop(reason)
        deadline = time.time() + self.cfg.runner.shutdown_timeout_s
        terminated = False
        while time.time() < deadline:
            self.monitor.poll(50)  # keep collecting final reports (final eval, last counters)
            alive = [n for n, p in self.procs.items() if p.poll() is None]
            if not alive:
                break
            if not terminated and time.time() > deadline - self.cfg.runner.shutdown_timeout_s / 2:
                for n in alive:
                    self.procs[n].signal(signal.SIGTERM)
                terminated = True
            if self._interrupted and not terminated:
                self.monitor.broadcast_stop(reason)
        for name, proc in self.procs.items():
            if proc.poll() is None:
                log.warning(f"{name} did not stop in time: killing it")
                proc.signal(signal.SIGKILL)
                proc.proc.wait()
            proc.wait_output()
            self.exit_codes.setdefault(name, proc.poll())
        self.monitor.poll(0)


def launch(preset: str, overrides: list[str]) -> int:
    cfg = prepare_run(preset, overrides)
    mode = cfg.launch.mode
    if mode == "local":
        return LocalLauncher(cfg).run()
    if mode == "tmux":
        from launch.tmux import TmuxLauncher

        return TmuxLauncher(cfg).run()
    if mode == "ssh":
        from launch.ssh import SSHLauncher

        return SSHLauncher(cfg).run()
    if mode == "ray":
        from launch.ray_launcher import RayLauncher

        return RayLauncher(cfg).run()
    raise ValueError(f"unknown launch.mode '{mode}'")
