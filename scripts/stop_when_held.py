"""Ends a run early once it has shown what a lever screening needs: the first eval with success >= THRESHOLD,
then HOLD_S more seconds of evals. Sends SIGINT to the launcher (its normal Ctrl-C stop: final eval, summary).

    python scripts/stop_when_held.py RUN_DIR LAUNCHER_PID [--threshold 0.8] [--hold-s 60]

Used by scripts/device_job.sh for short single-seed screening runs on the lent GPU, where every second of the
lease counts; the committed results of a preset come from whole runs without it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path


def first_success(metrics: Path, threshold: float) -> tuple[float | None, float]:
    """(wall_s of the first eval at >= threshold or None, the newest wall_s) from a metrics.jsonl."""
    first, newest = None, 0.0
    if not metrics.exists():
        return first, newest
    for line in metrics.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the line being written
            continue
        newest = max(newest, float(row.get("wall_s", 0.0)))
        if first is None and row.get("eval/success_rate", -1.0) >= threshold:
            first = float(row["wall_s"])
    return first, newest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("pid", type=int)
    p.add_argument("--threshold", type=float, default=0.8)
    p.add_argument("--hold-s", type=float, default=60.0)
    a = p.parse_args()
    while True:
        try:
            os.kill(a.pid, 0)
        except ProcessLookupError:
            return
        first, newest = first_success(a.run_dir / "metrics.jsonl", a.threshold)
        if first is not None and newest >= first + a.hold_s:
            print(f"success >= {a.threshold} first at {first:.0f} s, held to {newest:.0f} s: stopping the run")
            os.kill(a.pid, signal.SIGINT)
            return
        time.sleep(2.0)


if __name__ == "__main__":
    main()
