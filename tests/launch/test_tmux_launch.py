"""launch.mode=tmux on a real tmux server: one window per process; a killed window is a crash like any other."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from launch_helpers import assert_clean_summary, launcher_command, read_summary

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt package tmux)")]

# One window per process, and the watchdog that ends the tmux server if the launcher is killed (launch/tmux.py).
EXPECTED_WINDOWS = {"replay", "learner", "evaluator", "actor-0", "actor-1", "watchdog"}


def tmux_windows(session: str) -> set[str]:
    result = subprocess.run(["tmux", "-L", session, "list-windows", "-t", f"={session}", "-F", "#{window_name}"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return set(result.stdout.split()) if result.returncode == 0 else set()


def test_tmux_run_has_one_window_per_process_and_survives_a_killed_actor_window(tmp_path):
    session = f"zarl-test-{os.getpid()}"
    run_dir = tmp_path / "run"
    output = tmp_path / "launcher.out"
    with open(output, "w") as out:
        launcher = subprocess.Popen(launcher_command(run_dir, ["launch.mode=tmux", f"launch.tmux_session={session}",
                                                               "actor.num_actors=2"]),
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        # Every process gets its window; then actor-1's window is closed under it (at most 60 s of polling).
        seen: set[str] = set()
        deadline = time.time() + 60
        while seen != EXPECTED_WINDOWS and time.time() < deadline and launcher.poll() is None:
            seen = tmux_windows(session)
            time.sleep(0.1)
        assert seen == EXPECTED_WINDOWS, output.read_text()[-3000:]
        subprocess.run(["tmux", "-L", session, "kill-window", "-t", f"{session}:actor-1"], check=True)
        assert launcher.wait(timeout=90) == 0, output.read_text()[-5000:]
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        subprocess.run(["tmux", "-L", session, "kill-server"], capture_output=True)
    text = output.read_text()
    assert f"tmux -L {session} attach -t {session}" in text  # the attach command is printed
    summary = read_summary(run_dir)
    assert_clean_summary(summary, actors=2)
    assert summary["actor_restarts"] == {"actor-1": 1}  # the closed window counted as a crash, and was replaced
    assert "actor-1 (pid" in text and "died with exit code -1" in text
    assert tmux_windows(session) == set()  # the session is gone at the end
    assert "replay service listening" in (run_dir / "logs" / "replay.log").read_text()  # window output is logged
