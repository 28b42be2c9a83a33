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
import difflib
import fcntl
import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import zmq
from omegaconf import DictConfig, OmegaConf

from core import security
from core.config import ConfigError, save_config
from core.log import get_logger
from core.net import secure_transport
from launch import placement
from launch.keys import ensure_run_keys
from launch.monitor import Monitor
from launch.placement import ProcessPlacement
from launch.role import EXIT_CANNOT_RESUME
from launch.run_config import builder, load_config
from wire import shared_memory

log = get_logger("launcher")

LOCK_FILE = ".launcher.lock"
RESERVE_FILE = ".space-reserve"  # room held for summary.json and the metric files' last lines
RESERVE_BYTES = 2 * 2**20
MIN_FREE_BYTES = 1 * 2**20  # less free than this under the run directory stops the run (a full disk)
_held_locks: dict[str, int] = {}  # run directory -> the fd of its lock, held for this process's life


class RunDirLocked(ConfigError):
    """Another launcher owns the run directory (one run per run directory)."""


def lock_run_dir(run_dir: Path) -> None:
    """Own `run_dir` for this process's life: an exclusive flock on <run_dir>/.launcher.lock (released by the
    kernel when the process ends, however it ends). Raises RunDirLocked if another process holds it."""
    key = str(Path(run_dir).resolve())
    if key in _held_locks:
        return
    fd = os.open(Path(key) / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunDirLocked(f"run directory {key} is in use by another launcher (pid {holder}); "
                           "one run per run directory: wait for it to end or choose another runner.run_dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held_locks[key] = fd


def unlock_run_dir(run_dir: Path) -> None:
    """Give the run directory up (before handing it to a launcher in another process: tmux launch.wait=false)."""
    fd = _held_locks.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)


def check_env_ids(cfg: DictConfig) -> None:
    """The run's environment ids are registered (the project's envs and the config's `imports` imported)."""
    import gymnasium

    import envs  # registers the project's ids

    checks = [("env.id", cfg.env)]
    if (cfg.eval_env or {}).get("id") is not None:  # eval_env's overrides on env, e.g. its kwargs.backend
        checks.append(("eval_env.id", OmegaConf.merge(cfg.env, cfg.eval_env)))
    for key, env_cfg in checks:
        env_id = env_cfg.id
        if env_id is None or str(env_id) in envs.VECTOR_ONLY_IDS or envs.uses_maniskill(env_cfg):
            continue  # made by make_vector_env itself (a ManiSkill env: with a clear error where it is missing)
        if str(env_id) not in gymnasium.registry:
            close = difflib.get_close_matches(str(env_id), list(gymnasium.registry), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{key}={env_id}: must be a registered gymnasium environment id{hint}")


def make_run_dir(path: str) -> Path:
    """Create the run directory (or use an existing one); ConfigError unless it is a writable directory."""
    run_dir = Path(path).expanduser().resolve()
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"runner.run_dir={path}: must be a directory (it is an existing file)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):  # writable? (a read-only file system says so only here)
            pass
    except OSError as e:
        raise ConfigError(f"runner.run_dir={path}: must be a writable directory ({e.strerror or e})") from None
    return run_dir


def run_dir_name(cfg: DictConfig) -> str:
    """The default run directory: runs/<config name>-<local time>."""
    return str(Path("runs") / f"{cfg.name}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}")


def prepare_run(preset: str, overrides: list[str]) -> DictConfig:
    cfg = load_config(preset, overrides)  # with the sections of the run's pipeline
    check_env_ids(cfg)
    if not cfg.runner.run_dir:
        cfg.runner.run_dir = run_dir_name(cfg)
    run_dir = make_run_dir(cfg.runner.run_dir)
    cfg.runner.run_dir = str(run_dir)
    lock_run_dir(run_dir)  # before anything in it is written: a second launch leaves the first run's files alone
    secure_transport(cfg, log)  # ipc in an owner-only directory, or TCP with CurveZMQ (unless plain_tcp)
    ensure_run_keys(cfg)
    cfg.runner.run_id = uuid.uuid4().hex[:12]  # new for every launch, resumed or not (see RunnerConfig.run_id)
    save_config(cfg, run_dir / "config.yaml")
    return cfg


def describe_device(cfg: DictConfig) -> str:
    if str(cfg.learner.device) == "cpu":  # without importing torch: seconds at the end of every CPU run
        return f"cpu ({os.cpu_count()} cores)"
    import torch

    if torch.cuda.is_available():
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
        self._disk_checked = 0.0
        self._reserve_space()

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
            if code == EXIT_CANNOT_RESUME:  # restarting it would only start from scratch, or fail the same way
                self.exit_codes[name] = code
                line = next((ln for ln in reversed(tail.splitlines()) if "cannot resume" in ln), tail[-300:])
                return f"{name} cannot resume: {line.split('cannot resume: ', 1)[-1]}"
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
            elif self._disk_full():
                reason, failed = self._disk_full(), True
            else:
                failure = self._handle_exits()
                if failure:
                    reason, failed = failure, True
        stop_started = time.time()
        self._shutdown(reason, final=not failed)
        self.after_stop()
        shared_memory.remove_segments(cfg.runner.run_id)  # what processes killed on the way out left in /dev/shm
        if cfg.network.transport == "ipc" and not Path(cfg.network.ipc_dir).is_relative_to(self.run_dir):
            shutil.rmtree(cfg.network.ipc_dir, ignore_errors=True)  # a /tmp/zarl-* made for a long run_dir
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
        summary["disk_full"] = bool(self._disk_full())
        self._release_reserve()  # the room kept for summary.json
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

    # -- a full disk under the run directory: a clear stop, with room kept for summary.json -------------
    def _reserve_space(self) -> None:
        """Hold RESERVE_BYTES under the run directory until the end, so that summary.json can always be written."""
        path = self.run_dir / RESERVE_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError as e:
            path.unlink(missing_ok=True)
            log.warning(f"cannot reserve {RESERVE_BYTES:,} bytes under {self.run_dir}: {e}")

    def _release_reserve(self) -> None:
        (self.run_dir / RESERVE_FILE).unlink(missing_ok=True)

    def _disk_full(self) -> str | None:
        """Why the run must stop for want of disk space (a write failed, or less than MIN_FREE_BYTES left), or None."""
        if self.monitor.disk_full is None and time.time() - self._disk_checked >= 1.0:
            self._disk_checked = time.time()
            try:
                free = shutil.disk_usage(self.run_dir).free
            except OSError:
                free = MIN_FREE_BYTES
            if free < MIN_FREE_BYTES:
                self.monitor.disk_full = (f"no space left under {self.run_dir} ({free:,} bytes free, "
                                          f"{MIN_FREE_BYTES:,} needed)")
        return self.monitor.disk_full

    def _shutdown(self, reason: str, final: bool = True) -> None:
        """Stop broadcast; a role still alive after its grace period gets SIGTERM, 2 s later SIGKILL.

        Grace is runner.shutdown_timeout_s for every role, except that at the normal end of a run every
        role gets runner.stop_grace_s and the evaluator eval.final_timeout_s for its final evaluation.
        After Ctrl-C or SIGTERM nothing waits: every process is gone within shutdown_timeout_s + 2 s; nor after a
        failure (`final`=False: a role that cannot be replaced failed, the disk is full), which evaluates nothing more.
        """
        final = final and not self._interrupted
        self.monitor.broadcast_stop(reason, final_eval=final)
        start = time.time()
        grace = {name: self.cfg.runner.shutdown_timeout_s for name in self.procs}
        if final:
            # A normal end waits for the last learner step (seconds on a CPU with images), the final
            # checkpoint and the final evaluation; Ctrl-C does not.
            grace = {name: max(g, self.cfg.runner.stop_grace_s) for name, g in grace.items()}
            if "evaluator" in grace:
                grace["evaluator"] = max(grace["evaluator"], self.cfg.eval.final_timeout_s)
        kill_at: dict[str, float] = {}
        last_broadcast = start
        while any(p.poll() is None for p in self.procs.values()):
            self.monitor.poll(50)  # keep collecting final reports (final eval, last counters)
            if time.time() - last_broadcast >= 1.0:  # a role that subscribed after the broadcast (PUB/SUB) missed it
                self.monitor.broadcast_stop(reason, final_eval=final, quiet=True)
                last_broadcast = time.time()
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
