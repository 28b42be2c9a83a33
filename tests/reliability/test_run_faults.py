"""Faults around a run, with the real launcher (issue 23, findings 5 and 11): the run directory's file system fills
up mid-run (a 50 MB tmpfs), and kill -9 of a launcher in launch.mode=tmux."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from learner.checkpoint import list_checkpoints, load_checkpoint
from replay.snapshot import list_snapshots, load_snapshot

REPO = Path(__file__).resolve().parents[2]
RUN = ["runner.max_env_steps=10000000", "policy.hidden=[32,32]", "sac.batch_size=64", "eval.episodes=2",
       "eval.num_envs=2", "eval.every_updates=500", "logging.wandb=disabled", "logging.tensorboard=false",
       "runner.log_every_s=0.5", "logging.console_every_s=0.5", "replay.min_size=128", "actor.random_steps=128",
       "actor.chunk_len=32", "runner.checkpoint_every_updates=200", "replay.snapshot_every_s=2",
       "replay.capacity=20000"]


def launch(run_dir: Path, *overrides: str) -> subprocess.Popen:
    out = open(run_dir.parent / "console.txt", "w")
    return subprocess.Popen([sys.executable, str(REPO / "launch" / "run_async.py"), "pendulum_sac_mlp", *RUN,
                             f"runner.run_dir={run_dir}", *overrides], cwd=REPO, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait(predicate, timeout: float, what: str) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return time.time() - t0
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def small_fs(tmp_path):
    mount = tmp_path / "fs"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=50m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_stops_the_run_clearly_and_keeps_the_last_checkpoint_and_snapshot(small_fs, figures):
    run_dir = small_fs / "run"
    run_dir.mkdir()
    launcher = launch(run_dir)
    try:
        wait(lambda: len(list_checkpoints(run_dir / "checkpoints")) >= 1 and len(list_snapshots(run_dir / "replay")) >= 1,
             120, "a checkpoint and a snapshot")
        assert launcher.poll() is None
        # Fill the file system, as another program writing under the run directory would.
        t0 = time.time()
        with open(small_fs / "filler", "wb") as f:
            block = b"\0" * 2**20
            try:
                while True:
                    f.write(block)
                    f.flush()
            except OSError:
                pass
        code = launcher.wait(timeout=60)
        stop_s = time.time() - t0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    console = (small_fs / "console.txt").read_text()
    assert code == 1, console[-3000:]
    assert "Traceback" not in console, console[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["disk_full"] is True
    roles = {n: c for n, c in summary["exit_codes"].items()}
    assert all(c == 0 for c in roles.values()), roles  # every role stopped as asked: none crashed
    assert summary["restarts"] == {}
    checkpoint = list_checkpoints(run_dir / "checkpoints")[0]
    load_checkpoint(checkpoint)  # the newest checkpoint is whole
    snapshot = load_snapshot(list_snapshots(run_dir / "replay")[0])
    snapshot.arrays.clear()
    figures.update({"disk full: launcher exit after s": round(stop_s, 1),
                    "disk full: checkpoint failures (learner)":
                        summary["roles"]["learner"]["counters"].get("checkpoint_failures"),
                    "disk full: snapshot failures (replay)":
                        summary["roles"]["replay"]["counters"].get("snapshot_failures")})


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt package tmux)")
def test_kill_9_of_a_tmux_launcher_ends_every_role_and_the_tmux_server(tmp_path, figures):
    session = f"zarl-kill-{os.getpid()}"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    launcher = launch(run_dir, "launch.mode=tmux", f"launch.tmux_session={session}")
    try:
        def role_pids() -> list[int]:
            out = subprocess.run(["tmux", "-L", session, "list-panes", "-s", "-t", f"={session}", "-F",
                                  "#{window_name} #{pane_pid}"], capture_output=True, text=True).stdout
            return [int(line.split()[1]) for line in out.splitlines() if not line.startswith("watchdog")]

        wait(lambda: len(role_pids()) >= 4 and (run_dir / "metrics.jsonl").exists()
             and any('"updates": ' in line and '"updates": 0,' not in line
                     for line in (run_dir / "metrics.jsonl").read_text().splitlines()), 120, "the run training")
        pids = role_pids()
        server = subprocess.run(["tmux", "-L", session, "display-message", "-p", "#{pid}"], capture_output=True,
                                text=True).stdout.strip()
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        roles_s = wait(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                       for p in pids), 30, "every role to end")
        server_s = wait(lambda: not psutil.pid_exists(int(server)), 30, "the tmux server to end") if server else None
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        subprocess.run(["tmux", "-L", session, "kill-server"], capture_output=True)
    assert server_s is not None, "no tmux server pid"
    figures.update({"tmux kill -9: roles gone after s": round(roles_s, 1),
                    "tmux kill -9: tmux server gone after s": round(roles_s + server_s, 1)})


def test_the_resend_buffer_stays_within_its_bound_when_capacity_is_below_the_minimum_fill(system_factory, figures):
    """Finding 10: a small buffer that evicts what the actor keeps for resending (capacity below min_size itself is
    refused before anything starts: tests/platform/test_config_rules.py), no snapshot in the window (nothing becomes
    durable): the actor's resend buffer keeps to actor.resend_buffer_mb, plus at most the chunks in flight."""
    limit_mb = 0.02
    system = system_factory(overrides=["eval.enabled=false", "replay.capacity=200", "replay.min_size=128",
                                       f"actor.resend_buffer_mb={limit_mb}", "replay.snapshot_every_s=600"])
    for name, role in (("replay", "replay"), ("learner", "learner"), ("actor-0", "actor")):
        system.start(name, role)
    peak, samples = 0.0, 0
    chunk_mb = 1024 / 2**20  # at most one [1, 32] pendulum chunk (about 0.7 KB with its episode ends)
    enough = int(2 * limit_mb / chunk_mb) + 4  # twice the bound's worth of chunks: it filled and kept evicting
    system.wait_until(lambda: system.report("actor-0").get("counters", {}).get("chunks_sent", 0) > 5, 90,
                      "the actor sending")
    deadline = time.time() + 60
    # Watch the buffer until the actor has sent `enough` chunks, not for a fixed time.
    while time.time() < deadline and system.report("actor-0")["counters"]["chunks_sent"] < enough:
        system.monitor.poll(200)
        peak = max(peak, system.report("actor-0").get("scalars", {}).get("actor/resend_buffer_mb", 0.0))
        samples += 1
    sent = system.report("actor-0")["counters"]["chunks_sent"]
    credits = int(system.cfg.actor.credits)
    assert sent * chunk_mb > 2 * limit_mb, "too few chunks to test the bound"
    assert peak <= limit_mb + (credits + 1) * chunk_mb, peak
    codes = system.stop()
    assert all(code == 0 for code in codes.values()), codes
    figures.update({"resend buffer (capacity 200, no snapshot): peak MB / limit MB": f"{peak:.4f} / {limit_mb}",
                    "resend buffer: chunks sent": sent})
