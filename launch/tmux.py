"""launch.mode=tmux: every process of the run in its own tmux window, named by role, on this machine.

    python launch/run_async.py pendulum_sac_mlp launch.mode=tmux
    tmux -L zarl-<run> attach -t zarl-<run>          # printed by the launcher

The run gets its own tmux server (socket `-L <session>`), started from the launcher, so every window
inherits the launcher's environment (MUJOCO_GL, CUDA_VISIBLE_DEVICES, ...) whatever other tmux servers the
user has. Windows: replay, learner, evaluator, actor-0, actor-1, ...; each runs the same command line as
in local mode (launch/processes.role_command), and its output also goes to <run_dir>/logs/<name>.log.

launch.wait=true (default): this process runs the monitor, watches the windows, writes summary.json and
closes the session at the end. launch.wait=false: the monitor itself runs in a first window, "launcher",
and this command returns at once; that window stays open at the end to show the summary.

Killing a window (`tmux kill-window -t actor-1`, or exiting its program) ends that process only; the
launcher reacts as to any crash: an actor is restarted in a fresh window, a replay or learner failure ends
the run. `tmux -L <session> kill-server` ends everything at once.
"""
from __future__ import annotations

import collections
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from core.log import get_logger
from launch import placement
from launch.launcher import Launcher, RunDirLocked, lock_run_dir, unlock_run_dir
from launch.placement import ProcessPlacement
from launch.processes import REPO_ROOT, role_command
from launch.run_config import read_run_config
from wire.runtime import LAUNCHER_PID_ENV

log = get_logger("launcher")

REFRESH_EVERY_S = 0.3  # how often the launcher asks tmux about its windows
WATCHDOG_WINDOW = "watchdog"  # ends the tmux server when the launcher is gone


def session_name(cfg: DictConfig) -> str:
    name = cfg.launch.tmux_session or f"zarl-{Path(cfg.runner.run_dir).name}"
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)  # tmux gives '.' and ':' a meaning in targets


def shell_command(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    """A command line for a tmux window: the process replaces the shell, so the pane's pid is the role's."""
    assignments = [f"{k}={v}" for k, v in env.items()]
    return f"cd {shlex.quote(str(cwd))} && exec env {shlex.join(assignments + argv)}"


class TmuxError(RuntimeError):
    pass


class Tmux:
    """The run's own tmux server, driven through the tmux command line."""

    def __init__(self, socket: str):
        self.socket = socket

    def __call__(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], capture_output=True,
                                text=True, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise TmuxError(f"tmux {' '.join(args[:3])} ... failed: {result.stderr.strip()}")
        return result.stdout

    def has_session(self, session: str) -> bool:
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", f"={session}"], capture_output=True,
                              stdin=subprocess.DEVNULL).returncode == 0

    def open_window(self, session: str, window: str, command: str, log_file: Path) -> int:
        """Start `command` in a new window (and the session, if it is the first); return the process id.

        remain-on-exit keeps a finished window so its exit status can be read; pipe-pane copies the window's
        output to the log file. Both are set in the same tmux invocation as the window, so they are in place
        before the process can print or exit."""
        target = f"{session}:{window}"
        pipe = f"cat >> {shlex.quote(str(log_file))}"
        if self.has_session(session):
            out = self("new-window", "-d", "-P", "-F", "#{pane_pid}", "-t", f"{session}:", "-n", window, command,
                       ";", "pipe-pane", "-o", "-t", target, pipe)
        else:
            out = self("new-session", "-d", "-P", "-F", "#{pane_pid}", "-s", session, "-n", window,
                       "-x", "200", "-y", "50", command, ";", "set-option", "-wg", "remain-on-exit", "on",
                       ";", "pipe-pane", "-o", "-t", target, pipe)
        return int(out.split()[0])

    def windows(self, session: str) -> dict[str, "WindowState"]:
        out = self("list-panes", "-s", "-t", f"={session}", "-F",
                   "#{window_name}\t#{pane_pid}\t#{pane_dead}\t#{pane_dead_status}\t#{pane_dead_signal}",
                   check=False)
        states = {}
        for line in out.splitlines():
            name, pid, dead, status, sig = (line.split("\t") + [""] * 5)[:5]
            code = None
            if dead == "1":
                code = -int(sig) if sig else int(status or 0)
            states[name] = WindowState(int(pid), code)
        return states

    def kill_window(self, session: str, window: str) -> None:
        self("kill-window", "-t", f"{session}:{window}", check=False)


@dataclass
class WindowState:
    pid: int
    exit_code: int | None  # None while the process runs


class TmuxWindow:
    """One role process in a tmux window, as the launcher sees it (same interface as RoleProcess)."""

    def __init__(self, launcher: "TmuxLauncher", name: str, pid: int, log_file: Path):
        self.launcher, self.name, self.pid, self.log_file = launcher, name, pid, log_file
        self.started = time.time()

    def poll(self) -> int | None:
        launcher = self.launcher
        if launcher.listed_at <= self.started:
            return None  # tmux has not been asked since this window opened
        state = launcher.window_states.get(self.name)
        if state is None or state.pid != self.pid:
            return -signal.SIGHUP  # the window was closed: its process got SIGHUP
        return state.exit_code

    def signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait_output(self, timeout: float = 0.0) -> None:
        """The output is already in the log file (tmux's pipe-pane writes it as it comes)."""

    @property
    def tail(self) -> collections.deque:
        try:
            lines = self.log_file.read_text(errors="replace").replace("\r", "").splitlines(keepends=True)
        except FileNotFoundError:
            lines = []
        if self.poll() == -signal.SIGHUP:
            lines.append(f"(tmux window {self.name} was closed)\n")
        return collections.deque(lines, maxlen=60)


class TmuxLauncher(Launcher):
    mode = "tmux"

    def __init__(self, cfg: DictConfig):
        self.session = session_name(cfg)
        self.tmux = Tmux(self.session)
        self.window_states: dict[str, WindowState] = {}
        self._watchdog = False
        self.listed_at = 0.0
        self.detached = not cfg.launch.wait
        if self.detached:  # the launcher itself will run in the session: nothing more to set up here
            self.cfg, self.run_dir = cfg, Path(cfg.runner.run_dir)
            return
        super().__init__(cfg)

    @property
    def attach_command(self) -> str:
        return f"tmux -L {self.session} attach -t {self.session}"

    def run(self) -> int:
        if self.detached:
            return self._start_detached()
        return super().run()

    def _start_detached(self) -> int:
        """launch.wait=false: start the session with the launcher in its first window, and return."""
        if shutil.which("tmux") is None:
            log.error("launch.mode=tmux needs tmux: apt-get install tmux")
            return 1
        if self.tmux.has_session(self.session):
            log.error(f"tmux session {self.session} exists already; attach with: {self.attach_command}")
            return 1
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        unlock_run_dir(self.run_dir)  # the launcher in the session's first window takes the run directory over
        argv = [sys.executable, "-u", "-m", "launch.tmux", str(self.run_dir)]
        env = {"PYTHONPATH": str(REPO_ROOT)}
        self.tmux.open_window(self.session, "launcher", shell_command(argv, env, REPO_ROOT),
                              self.run_dir / "logs" / "launcher.log")
        log.info(f"run started in tmux; watch it with: {self.attach_command}")
        return 0

    def before_start(self) -> None:
        if shutil.which("tmux") is None:
            raise RuntimeError("launch.mode=tmux needs tmux: apt-get install tmux")
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        inside = os.environ.get("ZARL_TMUX_SUPERVISOR") == self.session
        if self.tmux.has_session(self.session) and not inside:
            raise RuntimeError(f"tmux session {self.session} exists already (another run?); attach with "
                               f"{self.attach_command} or set launch.tmux_session")
        log.info(f"roles run in tmux windows; watch them with: {self.attach_command}")

    def start_process(self, p: ProcessPlacement) -> TmuxWindow:
        log_file = self.run_dir / "logs" / f"{p.name}.log"
        self.tmux.kill_window(self.session, p.name)  # a restarted actor replaces its dead window
        env = placement.local_env(self.cfg, p)
        passed = {k: v for k, v in env.items() if os.environ.get(k) != v or k in placement.THREAD_VARIABLES}
        # tmux windows are not the launcher's children (no PR_SET_PDEATHSIG): each role watches the launcher's pid
        # and stops when it is gone (wire/runtime.py).
        passed[LAUNCHER_PID_ENV] = str(os.getpid())
        python = placement.interpreter(p, REPO_ROOT)
        command = shell_command(role_command(p.role, self.cfg.runner.run_dir, p.index, python=python), passed, REPO_ROOT)
        pid = self.tmux.open_window(self.session, p.name, command, log_file)
        self._start_watchdog()
        return TmuxWindow(self, p.name, pid, log_file)

    def _start_watchdog(self) -> None:
        """A window that ends the run's tmux server once this launcher is gone (kill -9 included) and the roles
        have had their time to stop. Not when the launcher runs inside the session (its window stays to show the
        summary)."""
        if self._watchdog or os.environ.get("ZARL_TMUX_SUPERVISOR") == self.session:
            return
        grace = int(math.ceil(float(self.cfg.runner.shutdown_timeout_s) + 4.0))
        tmux = f"tmux -L {shlex.quote(self.session)}"
        # After the launcher: wait while a role's pane is alive (pane_dead 0, any window but this one), at most
        # `grace` seconds, then end the server: as soon as the roles have stopped, not a fixed grace later.
        roles_alive = (f"{tmux} list-panes -s -t {shlex.quote('=' + self.session)} "
                       f"-F '#{{pane_dead}}#{{window_name}}' 2>/dev/null | grep -q -v -e '^1' -e '^0{WATCHDOG_WINDOW}$'")
        script = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 0.5; done; "
                  f"end=$(( $(date +%s) + {grace} )); "
                  f"while [ $(date +%s) -lt $end ] && {roles_alive}; do sleep 0.5; done; "
                  f"{tmux} kill-server")
        self.tmux.open_window(self.session, WATCHDOG_WINDOW, shell_command(["sh", "-c", script], {}, REPO_ROOT),
                              self.run_dir / "logs" / f"{WATCHDOG_WINDOW}.log")
        self._watchdog = True

    def refresh(self) -> None:
        now = time.time()
        if now - self.listed_at >= REFRESH_EVERY_S:
            self.window_states = self.tmux.windows(self.session)
            self.listed_at = now

    def _wait_gone(self, proc, timeout: float = 5.0) -> None:
        deadline = time.time() + timeout
        while proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
            self.listed_at = 0.0  # ask tmux now
            self.refresh()

    def after_stop(self) -> None:
        if os.environ.get("ZARL_TMUX_SUPERVISOR") == self.session:
            # The launcher runs in the session's first window: close the role windows, keep its own
            # (remain-on-exit) so the summary stays readable after it exits.
            for name in self.procs:
                self.tmux.kill_window(self.session, name)
        else:
            socket = self.tmux("display-message", "-p", "#{socket_path}", check=False).strip()
            self.tmux("kill-server", check=False)
            if socket:
                Path(socket).unlink(missing_ok=True)  # tmux leaves its socket file behind


def main(argv: list[str] | None = None) -> int:
    """The launcher inside a tmux session (launch.wait=false): `python -m launch.tmux RUN_DIR`."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m launch.tmux RUN_DIR", file=sys.stderr)
        return 2
    cfg = read_run_config(argv[0])
    try:
        lock_run_dir(Path(cfg.runner.run_dir))
    except RunDirLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg.launch.wait = True
    os.environ["ZARL_TMUX_SUPERVISOR"] = session_name(cfg)
    return TmuxLauncher(cfg).run()


if __name__ == "__main__":
    sys.exit(main())
