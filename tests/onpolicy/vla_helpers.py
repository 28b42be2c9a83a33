"""What the VLA tests share: a run of a config through the real launcher (launch/run_sync.py), and a config
loaded with the loggers a test does not need switched off."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from launch.run_config import load_config, typed

REPO = Path(__file__).resolve().parents[2]
QUIET = ["logging.wandb=disabled", "logging.tensorboard=false", "logging.progress_bar=false",
         "logging.console_every_s=0.2"]


def run_sync(config: str, run_dir: Path, *overrides: str) -> tuple[dict, list[dict]]:
    """The run's summary.json and metrics.jsonl rows, after asserting that it and every role exited 0."""
    command = [sys.executable, str(REPO / "launch" / "run_sync.py"), config, f"runner.run_dir={run_dir}", *QUIET,
               *overrides]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return summary, rows


def config(name: str, *overrides: str):
    """The typed config of preset `name` with `overrides`, wandb and tensorboard off."""
    return typed(load_config(name, ["logging.tensorboard=false", "logging.wandb=disabled", *overrides]))
