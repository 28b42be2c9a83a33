"""The run's monitor, inside the launcher: collects every role's reports, writes the logs, decides when to stop.

Outputs in the run directory:
  metrics.jsonl   one JSON object per log step (env_steps, updates, rates, env/*, train/*, eval/*)
  tb/             tensorboard events
  wandb/          the wandb run (offline unless an account is configured)
  summary.json    written at the end (see Monitor.summary)
"""
from __future__ import annotations

import collections
import errno
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import zmq
from omegaconf import DictConfig, OmegaConf

from core.log import get_logger
from core.net import endpoint, make_socket
from wire import protocol
from wire.protocol import Kind


class MetricSinks:
    """metrics.jsonl + tensorboard + wandb, each optional except the JSON lines."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.jsonl = open(run_dir / "metrics.jsonl", "a", buffering=1)
        self.tb = None
        self.wandb_run = None
        log = get_logger("monitor")
        if cfg.logging.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except Exception as e:  # tensorboard missing: say so, keep going with the other sinks
                log.warning(f"tensorboard disabled: {e}")
        if cfg.logging.wandb != "disabled":
            try:
                import wandb

                self.wandb_run = wandb.init(project=cfg.logging.project, name=run_dir.name, dir=str(run_dir),
                                            mode=cfg.logging.wandb, config=OmegaConf.to_container(cfg, resolve=True),
                                            settings=wandb.Settings(silent=True, console="off"))
            except Exception as e:
                log.warning(f"wandb disabled: {e}")

    def write(self, row: dict, step: int | None = None) -> None:
        """One metrics row; `step` is its x value in tensorboard and wandb (default: the row's env_steps)."""
        self.jsonl.write(json.dumps(row) + "\n")
        step = int(row.get("env_steps", 0)) if step is None else int(step)
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(v)}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb_run is not None:
            self.wandb_run.log(scalars, step=step)

    def log_video(self, path: str, step: int) -> None:
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({"eval/video": wandb.Video(path, format="mp4")}, step=step)

    def close(self, summary: dict) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb_run is not None:
            for k, v in summary.items():
                if isinstance(v, (int, float, str)):
                    self.wandb_run.summary[k] = v
            self.wandb_run.finish()


# Bounds on what the monitor keeps: no stats message can crash it or make it (and the metric files) grow
# without limit. A report outside them is rejected whole and counted (summary.json's rejected_stats).
METRIC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./:-]{0,127}")
MAX_SCALAR_NAMES = 512  # distinct scalar names of the run's processes (the columns of metrics.jsonl, tensorboard, wandb)
MAX_EXTRA_SCALAR_NAMES = 64  # ... and of every other sender together
MAX_NAMES_PER_REPORT = 256  # counters, scalars, rejection reasons of one report
MAX_EPISODES_PER_REPORT = 1000
EXTRA_SENDERS = 8  # senders beyond the run's own processes (replay, learner, evaluator, actors) the monitor keeps
STATS_RCVHWM = 100  # stats messages queued per connected peer


def _is_number(x) -> bool:
    return isinstance(x, (int, float))  # NaN included: a metric may legitimately be undefined


def _is_finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and abs(x) < 2**63


def _table_problem(key: str, table, finite: bool) -> str | None:
    if not isinstance(table, dict) or len(table) > MAX_NAMES_PER_REPORT:
        return f"'{key}' must map at most {MAX_NAMES_PER_REPORT} names to numbers"
    for k, v in table.items():
        if not isinstance(k, str) or not METRIC_NAME.fullmatch(k):
            return f"'{key}' has a name {protocol._short(k)} that is not a metric name ({METRIC_NAME.pattern})"
        if not (_is_finite(v) if finite else _is_number(v)):
            return f"'{key}' {k!r} is {protocol._short(v)}, not a {'finite ' if finite else ''}number"
    return None


def report_problem(meta: dict, run_dir: Path | None = None) -> str | None:
    """Why a stats report cannot be used, or None. Counters (and rejection counts) are finite numbers; scalars are
    numbers (NaN allowed: a metric may be undefined); names are metric names, a bounded number of them; the
    evaluator's fields have their types; a video is an .mp4 file inside the run directory."""
    for key, finite in (("counters", True), ("scalars", False), ("rejected", True)):
        problem = _table_problem(key, meta.get(key, {}), finite)
        if problem:
            return problem
    episodes = meta.get("episodes", [])
    if not isinstance(episodes, list) or len(episodes) > MAX_EPISODES_PER_REPORT or not all(
            isinstance(e, list) and len(e) == 3 and all(_is_finite(x) for x in e) for e in episodes):
        return f"'episodes' must be a list of at most {MAX_EPISODES_PER_REPORT} finite [return, length, success]"
    for key, types in (("eval_updates", (int,)), ("final", (bool,)), ("device", (str,)), ("video", (str,)),
                       ("pid", (int,)), ("time", (int, float)), ("role", (str,))):
        if meta.get(key) is not None and (not isinstance(meta[key], types) or (key == "eval_updates" and isinstance(
                meta[key], bool))):
            return f"'{key}' is {protocol._short(meta[key])}, not a {' or '.join(t.__name__ for t in types)}"
    if isinstance(meta.get("device"), str) and len(meta["device"]) > 256:
        return "'device' is longer than 256 characters"
    if meta.get("video"):
        video = Path(meta["video"])
        root = Path(run_dir).resolve() if run_dir is not None else None
        if (video.suffix != ".mp4" or root is None or not video.resolve().is_relative_to(root)
                or not video.is_file()):
            return f"'video' {protocol._short(meta['video'])} is not an .mp4 file in the run directory"
    actors = meta.get("actors", {})
    if not isinstance(actors, dict) or len(actors) > MAX_NAMES_PER_REPORT or not all(
            isinstance(n, str) and len(n) <= protocol.MAX_SENDER_CHARS and isinstance(a, dict)
            and len(a) <= 16 and all(isinstance(k, str) and _is_finite(v) for k, v in a.items())
            for n, a in actors.items()):
        return "'actors' must map actor names to small tables of finite numbers"
    return None


KEPT_FIELDS = ("role", "pid", "time", "counters", "scalars", "episodes", "rejected", "device", "actors",
               "eval_updates", "final", "video")


class Monitor:
    def __init__(self, cfg: DictConfig, ctx: zmq.Context):
        self.cfg = cfg
        self.run_dir = Path(cfg.runner.run_dir)
        self.log = get_logger("monitor")
        self.stats = make_socket(ctx, zmq.PULL, curve="server")
        self.stats.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_HEADER_BYTES)  # reports are headers only
        self.stats.setsockopt(zmq.RCVHWM, STATS_RCVHWM)
        self.stats.bind(endpoint(cfg, "stats", bind=True))
        self.control = make_socket(ctx, zmq.PUB, curve="server")
        self.control.bind(endpoint(cfg, "control", bind=True))
        self.rejects = protocol.RejectCounter(self.log, "stats socket")
        self.sinks = MetricSinks(cfg, self.run_dir)
        self.start = time.time()
        self.counters: dict[str, dict] = {}  # sender -> its newest counters
        self.scalars: dict[str, float] = {}
        self.episodes: collections.deque = collections.deque(maxlen=100)
        self.unwritten = False  # reports arrived since the last periodic row (close() writes them out)
        self.evals: list[dict] = []
        self.final_eval: dict | None = None
        self.device: dict[str, str] = {}
        self.reports: dict[str, dict] = {}  # sender -> its newest report (for tests and the summary)
        # The run's own processes (what the launcher starts) and their scalar names have their budget; any other
        # sender (a tool, a test, a hostile process) shares a small one, so it cannot crowd the run's metrics out.
        self.own_senders = {"replay", "learner", "evaluator", *(f"actor-{i}" for i in range(int(cfg.actor.num_actors)))}
        self.scalar_names: set[str] = set()
        self.extra_scalar_names: set[str] = set()
        self._last_row = (self.start, 0, 0)
        self.disk_full: str | None = None  # why the run directory's file system is full (the launcher stops the run)
        self._last_console = 0.0

    # -- counters the run is judged by -------------------------------------------------------------
    @property
    def env_steps(self) -> int:
        return int(self.counters.get("replay", {}).get("env_steps", 0))

    @property
    def updates(self) -> int:
        return int(self.counters.get("learner", {}).get("updates", 0))

    def broadcast_stop(self, reason: str, final_eval: bool = True, quiet: bool = False) -> None:
        """Ask every role to stop; final_eval=False (after Ctrl-C) tells the evaluator not to evaluate again."""
        if not quiet:
            self.log.info(f"asking every role to stop: {reason}")
        protocol.send(self.control, Kind.CONTROL, sender="launcher",
                      meta={"command": "stop", "reason": reason, "final_eval": final_eval})

    def poll(self, timeout_ms: int = 100) -> None:
        if not self.stats.poll(timeout_ms):
            return
        while True:
            try:
                _, msg = protocol.recv(self.stats, flags=zmq.NOBLOCK, kinds={Kind.STATS})
            except zmq.Again:
                break
            except protocol.ProtocolError as e:
                self.rejects.reject(e, "stats")
                continue
            problem = report_problem(msg.meta, self.run_dir)
            if problem:  # well-formed message, malformed report: it must not reach the counters or the logs
                self.rejects.reject(protocol.ProtocolError("bad_meta", problem), msg.sender)
                continue
            own = msg.sender in self.own_senders
            if not own and msg.sender not in self.reports and len(self.reports) - len(
                    self.own_senders & self.reports.keys()) >= EXTRA_SENDERS:
                self.rejects.reject(protocol.ProtocolError(
                    "too_many_senders", f"the monitor keeps the reports of {EXTRA_SENDERS} senders besides the "
                                        "run's own processes"), msg.sender)
                continue
            names, limit = (self.scalar_names, MAX_SCALAR_NAMES) if own else (self.extra_scalar_names,
                                                                               MAX_EXTRA_SCALAR_NAMES)
            new = set(msg.meta.get("scalars", {})) - names
            if new and len(names) + len(new) > limit:
                self.rejects.reject(protocol.ProtocolError(
                    "too_many_scalars", f"{len(new)} new scalar name(s) past the {limit} the monitor keeps"),
                    msg.sender)
                continue
            names |= new
            self._on_report(msg)
        now = time.time()
        if now - self._last_console >= self.cfg.logging.console_every_s:
            self._write_row(now)
            self._last_console = now

    def _on_report(self, msg: protocol.Message) -> None:
        meta = {k: msg.meta[k] for k in KEPT_FIELDS if k in msg.meta}  # what report_problem checked, nothing more
        self.unwritten = True
        self.reports[msg.sender] = meta
        if meta.get("counters"):
            self.counters[msg.sender] = meta["counters"]
        if meta.get("device"):
            self.device[msg.sender] = meta["device"]
        for ep in meta.get("episodes", []):
            self.episodes.append(ep)
        scalars = meta.get("scalars", {})
        if msg.sender == "evaluator" and "eval/return_mean" in scalars:
            row = {**scalars, "eval_updates": meta.get("eval_updates", 0), "final": bool(meta.get("final"))}
            self.evals.append({**row, "wall_s": time.time() - self.start, "env_steps": self.env_steps})
            if meta.get("final"):
                self.final_eval = row
            self._write_row(time.time(), extra=scalars)
            if meta.get("video"):
                self.sinks.log_video(meta["video"], self.env_steps)
        else:
            self.scalars.update(scalars)

    def _write_row(self, now: float, extra: dict | None = None) -> None:
        t_prev, steps_prev, updates_prev = self._last_row
        dt = max(now - t_prev, 1e-6)
        row = {"wall_s": round(now - self.start, 2), "env_steps": self.env_steps, "updates": self.updates,
               "env_steps_per_s": (self.env_steps - steps_prev) / dt,
               "updates_per_s": (self.updates - updates_prev) / dt, **self.scalars}
        if self.episodes:
            eps = np.asarray(self.episodes, dtype=np.float64)
            row.update({"env/return": float(eps[:, 0].mean()), "env/episode_len": float(eps[:, 1].mean()),
                        "env/success_once": float(eps[:, 2].mean())})
        if extra:
            row.update(extra)
        else:
            self._last_row = (now, self.env_steps, self.updates)
            self.unwritten = False
        if self.disk_full is None:
            try:
                self.sinks.write(row)
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                self.disk_full = f"no space left under {self.run_dir} ({e.strerror})"
        if not extra:
            self._console(row)

    def _console(self, row: dict) -> None:
        total = self.cfg.runner.max_env_steps
        frac = min(1.0, self.env_steps / total)
        bar = "#" * int(frac * 20) + "." * (20 - int(frac * 20)) if self.cfg.logging.progress_bar else ""
        parts = [f"[{bar}] {100 * frac:3.0f}%", f"env steps {self.env_steps:,}/{total:,}",
                 f"{row['env_steps_per_s']:.0f} steps/s", f"{row['updates_per_s']:.0f} updates/s"]
        if "env/return" in row:
            parts.append(f"return {row['env/return']:.1f}")
        if self.evals:
            last = self.evals[-1]
            success = f" (success {last['eval/success_rate']:.2f})" if "eval/success_rate" in last else ""
            parts.append(f"eval {last['eval/return_mean']:.1f}{success}")
        waiting = self.scalars.get("replay/actors_waiting", 0)
        if waiting:
            parts.append(f"{int(waiting)} actor(s) waiting for the learner")
        print(" | ".join(parts), file=sys.stderr, flush=True)

    def summary(self, exit_codes: dict[str, int | None], device: str) -> dict:
        wall = time.time() - self.start
        last_eval = self.final_eval or (self.evals[-1] if self.evals else {})
        out = {
            "config": self.cfg.name,
            "env_id": self.cfg.env.id,
            "env_steps": self.env_steps,
            "learner_updates": self.updates,
            "wall_s": round(wall, 1),
            "env_steps_per_s": self.env_steps / wall if wall else 0.0,
            "updates_per_s": self.updates / wall if wall else 0.0,
            "eval/return_mean": last_eval.get("eval/return_mean"),
            "eval/success_rate": last_eval.get("eval/success_rate"),
            "eval/episodes": last_eval.get("eval/episodes"),
            "eval/best_return_mean": max((e["eval/return_mean"] for e in self.evals), default=None),
            "evals": [{k: e.get(k) for k in ("wall_s", "env_steps", "eval_updates", "eval/return_mean",
                                             "eval/success_rate")} for e in self.evals],
            "device": device,
            "num_actors": int(self.cfg.actor.num_actors),
            "exit_codes": exit_codes,
            "rejected_stats_messages": self.rejects.total,
            "rejected_stats": dict(self.rejects.counts),
            # each role's newest counters and rejected messages (by reason), as it reported them
            "roles": {sender: {"counters": report.get("counters", {}), "rejected": report.get("rejected", {})}
                      for sender, report in self.reports.items()},
        }
        return out

    def close(self, summary: dict) -> None:
        if self.unwritten:  # the last reports (final counters, the last episodes) get their row too
            self._write_row(time.time())
        try:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=repr))
        except OSError as e:
            self.log.error(f"summary.json not written: {e}")
        try:
            self.sinks.close(summary)
        except OSError as e:  # a full disk: the metric files keep what they had
            self.log.error(f"metric files not closed cleanly: {e}")
        self.stats.close(0)
        self.control.close(0)
