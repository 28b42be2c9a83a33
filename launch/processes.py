"""Role processes started by the local launcher: command lines, environment, log streaming."""
from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
from pathlib import Path

from omegaconf import DictConfig

from core.lifetime import die_with_parent

REPO_ROOT = Path(__file__).resolve().parent.parent


def role_command(role: str, run_dir: str, index: int = 0, python: str | None = None) -> list[str]:
    """The one command line every launch mode runs for a role."""
    return [python or sys.executable, "-u", "-m", "launch.role", role, "--run-dir", str(run_dir),
            "--index", str(index)]


def role_env(cfg: DictConfig, role: str, index: int = 0) -> dict[str, str]:
    """Environment for a role: the project on PYTHONPATH and thread counts that do not oversubscribe the cores.

    Actors, the evaluator and replay run one-thread math; the learner gets the
    machine's threads. GPU pinning (CUDA_VISIBLE_DEVICES) is the placement's
    business: see launch.placement.local_env.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if role != "learner":
        env["OMP_NUM_THREADS"] = "1"
        env["MKL_NUM_THREADS"] = "1"
    return env


class RoleProcess:
    """One running role; its output goes to the console with a prefix and to logs/<name>.log."""

    def __init__(self, name: str, command: list[str], env: dict | None, log_dir: Path, echo: bool = True):
        self.name, self.command, self.echo = name, command, echo
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = open(log_dir / f"{name}.log", "a", buffering=1)
        self.tail: collections.deque = collections.deque(maxlen=60)
        self.proc = self._popen(command, env)
        self._reader = threading.Thread(target=self._stream, daemon=True)
        self._reader.start()

    def _popen(self, command: list[str], env: dict | None) -> subprocess.Popen:
        return subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, preexec_fn=die_with_parent)

    def _stream(self) -> None:
        for line in self.proc.stdout:
            if self.log_file is not None:
                try:
                    self.log_file.write(line)
                except OSError:  # a full disk: keep reading (a role must never block on its output), stop logging
                    self.log_file = None
            self.tail.append(line)
            if self.echo:
                sys.stderr.write(line)
        if self.log_file is not None:
            try:
                self.log_file.close()
            except OSError:
                pass

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait_output(self, timeout: float = 2.0) -> None:
        self._reader.join(timeout)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
