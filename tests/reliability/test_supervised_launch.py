"""The whole system through `python launch/run_async.py pendulum_sac_mlp actor.num_actors=2`: kill -9 an actor,
the replay service and the learner in turn (each is replaced and the run goes on), then SIGINT to the launcher
(every process gone within 10 s, a final checkpoint written), then resume (the step counters continue)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
RUN = ["policy.hidden=[32,32]", "sac.batch_size=64", "eval.episodes=2", "eval.num_envs=2", "eval.every_updates=500",
       "logging.wandb=disabled", "logging.tensorboard=false", "runner.log_every_s=0.5", "logging.console_every_s=0.5",
       "actor.heartbeat_s=0.2", "replay.min_size=128", "actor.random_steps=128", "actor.chunk_len=32",
       "launch.restart_backoff_s=0.2", "runner.checkpoint_every_updates=200", "replay.snapshot_every_s=2",
       "actor.num_actors=2"]


class Launch:
    """A launcher process and what it writes into its run directory."""

    def __init__(self, run_dir: Path, overrides: list[str]):
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.console = open(run_dir / "launcher-console.txt", "a")
        self.proc = subprocess.Popen([sys.executable, str(REPO / "launch" / "run_async.py"), "pendulum_sac_mlp",
                                      *RUN, f"runner.run_dir={run_dir}", *overrides], cwd=REPO,
                                     stdout=self.console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pids: set[int] = set()  # every role process seen, replacements included

    def log(self, name: str) -> str:
        path = self.run_dir / "logs" / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def rows(self) -> list[dict]:
        """metrics.jsonl: the monitor's rows, of this launch and of any before it in the same run directory."""
        path = self.run_dir / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def latest(self) -> dict:
        rows = self.rows()
        return rows[-1] if rows else {}

    def role_pid(self, role: str, index: int = 0) -> int | None:
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                argv = child.cmdline()
            except psutil.NoSuchProcess:
                continue
            if "launch.role" in argv and role in argv and argv[argv.index("--index") + 1] == str(index):
                self.pids.add(child.pid)
                return child.pid
        return None

    def wait(self, predicate, timeout: float, what: str) -> float:
        """Seconds until predicate() held; fails with the console's end after `timeout`."""
        start = time.time()
        while time.time() - start < timeout:
            for role in ("replay", "learner", "evaluator", "actor"):
                self.role_pid(role)
            self.role_pid("actor", 1)
            if predicate():
                return time.time() - start
            assert self.proc.poll() is None or what == "exit", f"the launcher exited waiting for {what}"
            time.sleep(0.1)
        console = (self.run_dir / "launcher-console.txt").read_text()[-4000:]
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{console}")

    def kill9(self, role: str, index: int = 0) -> int:
        pid = self.role_pid(role, index)
        assert pid is not None, f"no {role} process"
        psutil.Process(pid).send_signal(signal.SIGKILL)
        return pid

    def replaced(self, role: str, old_pid: int, index: int = 0) -> bool:
        pid = self.role_pid(role, index)
        return pid is not None and pid != old_pid

    def stop(self, sig: int) -> tuple[float, list[int]]:
        """Signal the launcher once every role runs; returns (seconds until it exited, processes left alive)."""
        self.wait(lambda: all(self.role_pid(r) for r in ("replay", "learner", "evaluator", "actor")), 30,
                  "every role running")
        signalled = time.time()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        seconds = time.time() - signalled
        return seconds, [p for p in self.pids if psutil.pid_exists(p)
                         and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def updates_checkpointed_since(run_dir: Path, since: float) -> int:
    """The highest update count of the checkpoints begun after time `since` (0 if none). A checkpoint's directory
    is named by the time its writing began: after the old learner's SIGKILL, only its replacement writes them."""
    from core.atomic_dir import CorruptError
    from learner.checkpoint import checkpoint_meta, list_checkpoints

    best = 0
    for path in list_checkpoints(run_dir / "checkpoints"):
        if int(path.name.split("-")[1]) <= since * 1e9:
            continue
        try:
            best = max(best, int(checkpoint_meta(path)["updates"]))
        except (OSError, CorruptError):  # pruned (only the newest are kept) between the listing and the read
            continue
    return best


def newest_checkpoint_updates(run_dir: Path) -> int:
    from learner.checkpoint import checkpoint_meta, list_checkpoints

    return checkpoint_meta(list_checkpoints(run_dir / "checkpoints")[0])["updates"]


def newest_snapshot_env_steps(run_dir: Path) -> int:
    """The env steps the newest replay snapshot holds: what a restarted or resumed replay service restores."""
    from replay.snapshot import list_snapshots, snapshot_meta

    return int(snapshot_meta(list_snapshots(run_dir / "replay")[0])["service"]["limiter"]["inserted"])


def test_crashes_are_survived_ctrl_c_is_clean_and_a_resumed_run_continues(tmp_path, figures):
    run_dir = tmp_path / "run"
    launch = Launch(run_dir, ["runner.max_env_steps=10000000"])
    try:
        launch.wait(lambda: launch.latest().get("updates", 0) > 100, 180, "the learner to train")

        # kill -9 an actor: a replacement registers, continues the sequence, acts with trained weights.
        old = launch.kill9("actor", 0)
        actor_s = launch.wait(lambda: launch.replaced("actor", old) and "actor-0 rejoined" in launch.log("replay")
                              and "no random warm-up" in launch.log("actor-0"), 60, "a replacement for actor-0")

        # kill -9 the replay service: the new one restores the newest snapshot; the actors resend the rest.
        snapshot_steps = newest_snapshot_env_steps(run_dir)  # at least this much the new service must restore
        assert snapshot_steps > 0
        old = launch.kill9("replay")
        killed = time.time()
        rows_at_kill = len(launch.rows())
        launch.wait(lambda: len(launch.rows()) >= rows_at_kill + 2, 30, "two rows of the monitor after the kill")
        # The dead service's last count: every report it sent is in by now, and its replacement is still starting.
        steps = max(row["env_steps"] for row in launch.rows())
        launch.wait(lambda: launch.replaced("replay", old) and launch.latest().get("env_steps", 0) > steps, 90,
                    "the new replay service to get past the old one's env steps")
        replay_s = time.time() - killed
        # Restored, not started empty: no row of the new service's shows fewer env steps than that snapshot held.
        # Rows that still show the dead service's last report are left out: a snapshot written after that report
        # holds more than it counted.
        new_rows = [row["env_steps"] for row in launch.rows()[rows_at_kill:] if row["env_steps"] != steps]
        assert new_rows and min(new_rows) >= snapshot_steps, (new_rows[:5], snapshot_steps, steps)

        # kill -9 the learner: the new one resumes from the newest checkpoint and trains on.
        updates = launch.latest()["updates"]
        old = launch.kill9("learner")
        killed = time.time() + 0.1  # a checkpoint begun later than this is the new learner's
        learner_s = launch.wait(lambda: launch.replaced("learner", old)
                                and updates_checkpointed_since(run_dir, killed) > updates, 90,
                                "the new learner to get past the old one's updates")

        # Ctrl-C: a final checkpoint, every process gone within 10 s, no orphans.
        # From the new learner's own checkpoints: the monitor may still show the dead learner's last report.
        updates_before_stop = updates_checkpointed_since(run_dir, killed)
        launcher_s, alive = launch.stop(signal.SIGINT)
    finally:
        if launch.proc.poll() is None:
            launch.proc.kill()
    assert launch.proc.returncode == 130, launch.proc.returncode
    assert not alive, f"processes left behind: {alive}"
    assert launcher_s < 10, f"the launcher took {launcher_s:.1f} s to stop"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "SIGINT received"
    assert summary["restarts"] == {"actor-0": 1, "replay": 1, "learner": 1}, summary["restarts"]
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]
    final_updates = newest_checkpoint_updates(run_dir)
    assert final_updates >= updates_before_stop, "the final checkpoint holds the last updates"

    # Resume in the same run directory: learner updates and env steps continue from where they stopped;
    # then SIGTERM, which stops the run as Ctrl-C does.
    rows_before = len(launch.rows())
    snapshot_steps = newest_snapshot_env_steps(run_dir)
    resumed = Launch(run_dir, ["runner.resume=true"])
    try:
        resumed.wait(lambda: resumed.latest().get("updates", 0) > final_updates + 100
                     and resumed.latest().get("env_steps", 0) > summary["env_steps"] + 100, 120,
                     "the resumed run to train past the checkpoint")
        sigterm_s, alive = resumed.stop(signal.SIGTERM)
    finally:
        if resumed.proc.poll() is None:
            resumed.proc.kill()
    assert resumed.proc.returncode == 130 and not alive and sigterm_s < 10, (resumed.proc.returncode, alive, sigterm_s)
    # The resumed roles' first reports (the monitor's first rows with a count): the learner continued from the
    # final checkpoint and the replay service from the newest snapshot; fresh ones would have started from 0.
    rows = resumed.rows()[rows_before:]
    first_updates = next(row["updates"] for row in rows if row["updates"] > 0)
    first_env_steps = next(row["env_steps"] for row in rows if row["env_steps"] > 0)
    assert first_updates >= final_updates, (first_updates, final_updates)
    assert first_env_steps >= snapshot_steps, (first_env_steps, snapshot_steps)
    after = json.loads((run_dir / "summary.json").read_text())
    assert after["stop_reason"] == "SIGTERM received"
    assert after["learner_updates"] > final_updates + 100 and after["env_steps"] > summary["env_steps"] + 100
    assert newest_checkpoint_updates(run_dir) == after["learner_updates"]
    figures.update({
        "launcher: actor kill -9 -> replacement acting with trained weights (s)": round(actor_s, 1),
        "launcher: replay kill -9 -> new service past the old env steps (s)": round(replay_s, 1),
        "launcher: learner kill -9 -> new learner past the old updates (s)": round(learner_s, 1),
        "launcher: SIGINT -> every process and the launcher gone (s)": round(launcher_s, 1),
        "launcher: SIGINT -> every role stopped (launcher's figure, s)": summary["shutdown_s"],
        "launcher: SIGTERM (resumed run) -> every process and the launcher gone (s)": round(sigterm_s, 1),
        "resume: updates at the final checkpoint -> after the resumed run": f"{final_updates} -> "
                                                                             f"{after['learner_updates']}",
        "resume: env steps before -> after": f"{summary['env_steps']} -> {after['env_steps']}",
    })
