"""What every launch mode shares (local, tmux, ssh and ray, each in its own module): they differ only in
how a process is started and watched. What happens, in order:
  1. the resolved config (with ports, and the placement: hosts and devices) is written to <run_dir>/config.yaml;
  2. the monitor binds the stats and control sockets;
  3. replay, learner, evaluator and actors start as separate processes;
  4. the monitor logs progress until runner.max_env_steps (or max_wall_s) is reached,
     then broadcasts stop; roles write their final checkpoint/eval and exit;
  5. summary.json is written; the exit code is non-zero if a role failed.
A crashed actor is restarted (launch.restart_actors times, with back-off); it
rejoins with the newest weights and continues its chunk sequence. In a pipeline whose
services resume (its builder's services_resume: SAC) a crashed replay service or learner
is restarted launch.restart_services times: it resumes from its newest snapshot / checkpoint of this launch
(runner.run_id). After that a crash ends the run with its traceback shown.
Ctrl-C or SIGTERM to the launcher stops everything within runner.shutdown_timeout_s
(+ 2 s for a process that ignores SIGTERM), after the learner's final checkpoint.
"""
from __future__ import annotations

import datetime
import os
import signal
import time
import uuid
from pathlib import Path

import zmq
from omegaconf import DictConfig

from core import security
from core.config import ConfigError, save_config
from core.log import get_logger
from core.net import assign_ports
from launch import placement
from launch.keys import ensure_run_keys
from launch.monitor import Monitor
from launch.placement import ProcessPlacement
from launch.run_config import builder, load_config
from wire import shared_memory

log = get_logger("launcher")


def prepare_run(preset: str, overrides: list[str]) -> DictConfig:
    cfg = load_config(preset, overrides)  # with the sections of the run's pipeline
    if not cfg.runner.run_dir:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        cfg.runner.run_dir = str(Path("runs") / f"{cfg.name}-{stamp}")
    run_dir = Path(cfg.runner.run_dir).resolve()
    cfg.runner.run_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    assign_ports(cfg)
    cfg.runner.run_id = uuid.uuid4().hex[:12]  # new for every launch, resumed or not (see RunnerConfig.run_id)
    save_config(cfg, run_dir / "config.yaml")
    return cfg


def describe_device(cfg: DictConfig) -> str:
    import torch

    if torch.cuda.is_available() and str(cfg.learner.device) != "cpu":
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu ({os.cpu_count()} cores)"


class Launcher:
    """What every launch mode shares: the placement, the monitor in this process, the watch loop that
    restarts crashed actors, the stop sequence and summary.json.

    A mode says how one process is started (`start_process`, which returns a handle with poll(),
    signal(sig), wait_output(), pid and tail), and may ask about its processes in `refresh` (tmux does),
    prepare hosts in `before_start` (ssh does) and clean up in `after_stop`.
    """

    mode = "local"

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.pipeline = builder(cfg)
        self.run_dir = Path(cfg.runner.run_dir)
        self.placements: dict[str, ProcessPlacement] = {p.name: p for p in self.place()}
        ensure_run_keys(cfg)
        save_config(cfg, self.run_dir / "config.yaml")  # what every role reads, placement included
        self.ctx = zmq.Context()
        security.secure_context(self.ctx, cfg, log)
        self.monitor = Monitor(cfg, self.ctx)
        self.procs: dict = {}
        self.restarts: dict[str, int] = {}
        self.exit_codes: dict[str, int | None] = {}
        self._interrupted: str | None = None

    # -- what a launch mode provides ----------------------------------------------------------------
    def place(self) -> list[ProcessPlacement]:
        """Where each process goes; this default runs every process on this machine."""
        processes = placement.plan(self.cfg)
        if not placement.is_single_host(processes):
            raise ConfigError(f"launch.mode={self.mode} runs every process on this machine, but the placement "
                              f"names other hosts ({placement.describe(processes)}); use launch.mode=ssh or ray")
        placement.write_actor_devices(self.cfg, processes)
        return processes

    def start_process(self, p: ProcessPlacement):
        raise NotImplementedError

    def refresh(self) -> None:
        """Learn what happened to the processes, for modes that must ask (called every loop turn)."""

    def before_start(self) -> None:
        """Prepare before the first process starts."""

    def after_stop(self) -> None:
        """Clean up after every process is gone."""

    # -- shared -------------------------------------------------------------------------------------
    def _start(self, name: str) -> None:
        self.procs[name] = self.start_process(self.placements[name])

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
            shared_memory.remove_segments(self.cfg.runner.run_id, name, proc.pid)  # a crashed actor's slots
            log.error(f"{name} (pid {proc.pid}) died with exit code {code}; its last output:\n{tail}")
            allowed = self._restarts_allowed(name)
            if self.restarts.get(name, 0) < allowed:
                self.restarts[name] = self.restarts.get(name, 0) + 1
                time.sleep(self.cfg.launch.restart_backoff_s * self.restarts[name])
                log.info(f"restarting {name} (restart {self.restarts[name]} of {allowed})")
                self._start(name)
                continue
            self.exit_codes[name] = code
            if not name.startswith("actor-"):
                return f"{name} failed"
            if self._all_actors_gone():
                return "every actor failed"
        return None

    def _restarts_allowed(self, name: str) -> int:
        if name.startswith("actor-"):
            return self.cfg.launch.restart_actors
        # Replay and learner resume from their snapshot / checkpoint, in pipelines whose services do (SAC).
        if name in ("replay", "learner") and self.pipeline.services_resume:
            return self.cfg.launch.restart_services
        return 0

    def _all_actors_gone(self) -> bool:
        return all(p.poll() is not None for n, p in self.procs.items() if n.startswith("actor-"))

    def run(self) -> int:
        cfg = self.cfg
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        log.info(f"run directory: {self.run_dir}")
        reason, failed = None, False
        try:
            self.before_start()
            for name in self.placements:
                self._start(name)
        except Exception as e:  # a host that cannot be reached, a tmux that cannot start: stop what started
            log.error(f"could not start the run: {e}")
            reason, failed = f"start failed: {e}", True
        if reason is None:
            log.info(f"started {len(self.procs)} processes: "
                     + ", ".join(f"{n} (pid {p.pid})" for n, p in self.procs.items()))
        while reason is None:
            self.monitor.poll(100)
            self.refresh()
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
        stop_started = time.time()
        self._shutdown(reason)
        self.after_stop()
        shared_memory.remove_segments(cfg.runner.run_id)  # what processes killed on the way out left in /dev/shm
        shutdown_s = time.time() - stop_started
        log.info(f"every process stopped {shutdown_s:.1f} s after the stop ({reason})")
        for s, h in previous.items():
            signal.signal(s, h)
        summary = self.monitor.summary(self.exit_codes, describe_device(cfg))
        summary["stop_reason"] = reason
        summary["actor_restarts"] = {n: c for n, c in self.restarts.items() if n.startswith("actor-")}
        summary["restarts"] = dict(self.restarts)
        summary["shutdown_s"] = round(shutdown_s, 2)
        summary["launch_mode"] = self.mode
        summary["placement"] = {n: p.host or "local" for n, p in self.placements.items()}
        if cfg.security.curve:
            summary["refused_connections"] = security.refused_connections(self.ctx)
        self.monitor.close(summary)
        security.release(self.ctx)
        self.ctx.destroy(linger=0)
        log.info(f"summary: {self.run_dir / 'summary.json'} (eval return {summary['eval/return_mean']}, "
                 f"success {summary['eval/success_rate']}, {summary['wall_s']:.0f} s)")
        bad = {n: c for n, c in self.exit_codes.items() if c not in (0, None)}
        if failed or bad:
            log.error(f"run failed: {reason}; exit codes {bad}")
            return 1
        return 130 if self._interrupted else 0

    def _shutdown(self, reason: str) -> None:
        """Stop broadcast; a role still alive after its grace period gets SIGTERM, 2 s later SIGKILL.

        Grace is runner.shutdown_timeout_s for every role, except that at the normal end of a run every
        role gets runner.stop_grace_s and the evaluator eval.final_timeout_s for its final evaluation.
        After Ctrl-C or SIGTERM nothing waits: every process is gone within shutdown_timeout_s + 2 s.
        """
        self.monitor.broadcast_stop(reason, final_eval=not self._interrupted)
        start = time.time()
        grace = {name: self.cfg.runner.shutdown_timeout_s for name in self.procs}
        if not self._interrupted:
            # A normal end waits for the last learner step (seconds on a CPU with images), the final
            # checkpoint and the final evaluation; Ctrl-C does not.
            grace = {name: max(g, self.cfg.runner.stop_grace_s) for name, g in grace.items()}
            if "evaluator" in grace:
                grace["evaluator"] = max(grace["evaluator"], self.cfg.eval.final_timeout_s)
        kill_at: dict[str, float] = {}
        while any(p.poll() is None for p in self.procs.values()):
            self.monitor.poll(50)  # keep collecting final reports (final eval, last counters)
            self.refresh()
            now = time.time()
            if self._interrupted:  # a second Ctrl-C: no more grace for the evaluator
                grace = {n: min(g, self.cfg.runner.shutdown_timeout_s) for n, g in grace.items()}
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    continue
                if name not in kill_at and now - start > grace[name]:
                    log.warning(f"{name} did not stop within {grace[name]:.0f} s: sending SIGTERM")
                    proc.signal(signal.SIGTERM)
                    kill_at[name] = now + 2.0
                elif name in kill_at and now > kill_at[name]:
                    log.warning(f"{name} ignored SIGTERM: killing it")
                    proc.signal(signal.SIGKILL)
                    self._wait_gone(proc)
        for name, proc in self.procs.items():
            proc.wait_output()
            self.exit_codes.setdefault(name, proc.poll())
        self.monitor.poll(0)

    def _wait_gone(self, proc, timeout: float = 5.0) -> None:
        """Wait until a killed process is reaped (asking the launch mode about it as it goes)."""
        deadline = time.time() + timeout
        while proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
            self.refresh()
