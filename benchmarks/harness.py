"""What the throughput benchmarks share: the system's real role processes, the bare loops they are
compared with, and a way to measure both in the same run on a shared machine.

A benchmark here prints a *ratio* measured in one run (system / bare), not an absolute speed: an
absolute figure says as much about the machine and its other users as about the code. Both sides
run in the same run, in alternating phases: while one side is measured, the other is frozen with
SIGSTOP (a frozen process uses no CPU and keeps all its state, sockets included), and the order of
the phases alternates from round to round (A B, B A, ...), so that a change in the machine's load
hits both sides alike.

Each side's CPU time is measured too (psutil, all threads of each process). On a machine shared
with other programs, how much CPU each side gets swings with their load; env steps (or updates)
per CPU-second of the process doing the work do not, and say what the system costs per step. A
side that waits (for data, for credit) uses no CPU: only the wall-clock ratio shows that. So both
are reported.

    RunningSystem   replay, learner and actors as real role processes (launch.processes.RoleProcess,
                    the same command lines and environment the local launcher uses), the monitor in
                    this process; rates come from the counters the roles report themselves.
    LoopWorkers     plain processes running a bare loop (`bare_actor_loop`, `bare_learner_loop`),
                    each adding to a shared counter.
    alternate       runs the measurement rounds; `paired_figures` and `side_medians` summarise them.
"""
from __future__ import annotations

import multiprocessing
import os
import platform
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

def machine_info() -> dict:
    """The machine a figure came from, and how busy it was (other programs share it)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "load_avg_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = info["gpu"] = None
    return info


def describe_machine(info: dict) -> str:
    gpu = f", {info['gpu']}" if info.get("gpu") else ", no GPU"
    return f"{info['cpu']}, {info['cores']} cores{gpu}; load average {info['load_avg_1min']} (1 min)"


# ---------------------------------------------------------------------------------------------
# The bare loops: the same computation as a role, without processes around it, sockets or replay


def _single_threaded_math() -> None:
    """What launch.processes.role_env gives every role but the learner: one thread of math."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _ready(event) -> None:
    """Say so, and freeze until the benchmark thaws this process: a warm loop waiting for the other
    processes to start would only take CPU from them."""
    event.set()
    os.kill(os.getpid(), signal.SIGSTOP)


def bare_actor_loop(preset: str, overrides: Sequence[str], index: int, counter, ready) -> None:
    """`obs = env.step(policy.act(obs))` forever, with the env and policy an actor of this config builds.

    Built exactly as actors.actor.ChunkedActor builds them (same config, device and seeds); what is
    left out is everything the actor does around the step: chunking, credits, sending, weights.
    """
    _single_threaded_math()
    from core import seeding
    from core.devices import actor_device
    from envs import make_vector_env
    from launch.run_config import builder, load_config, typed

    cfg = load_config(preset, list(overrides))
    run = typed(cfg)
    device = actor_device(run.actor, index)
    env = make_vector_env(run.env)
    policy = builder(cfg).make_policy(run, env.single_observation_space, env.single_action_space, device,
                                      seed=seeding.seed_of(run.runner.seed, "actor_policy", index))
    obs = env.reset(seed=seeding.seeds(run.runner.seed, "actor_envs", index, 0, count=env.num_envs))
    for _ in range(10):  # first calls outside the count (lazy allocations)
        obs = env.step(policy.act(obs))[0]
    _ready(ready)
    parent, steps = os.getppid(), 0
    while True:
        obs = env.step(policy.act(obs))[0]
        counter.value += env.num_envs
        steps += 1
        if steps % 256 == 0 and os.getppid() != parent:  # the benchmark died: do not linger
            return


def bare_learner_loop(preset: str, overrides: Sequence[str], index: int, counter, ready) -> None:
    """SAC learner steps forever on fixed random batches already on the learner's device.

    The learner process's computation (same agent, SAC config, device and CPU threads as
    learner.off_policy.OffPolicyLearner), without the replay service, sockets or the batch fetcher.
    `counter` counts critic updates (one per batch).
    """
    import torch

    from benchmarks.sac_update_speed import build_update
    from launch.run_config import load_config

    cfg = load_config(preset, list(overrides))
    torch.manual_seed(cfg.runner.seed)
    sac, batches, _ = build_update(cfg, cfg.learner.amp, seed=cfg.runner.seed)
    _ready(ready)
    parent = os.getppid()
    while os.getppid() == parent:
        sac.update(batches)  # it copies its metrics to the host, which waits for the GPU: finished updates are counted
        counter.value += len(batches)


# ---------------------------------------------------------------------------------------------
# Processes that can be frozen between measurements


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, all its threads (ZeroMQ's I/O threads too)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _freeze(pids: Sequence[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass


def _thaw(pids: Sequence[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


class LoopWorkers:
    """`count` processes running `loop(preset, overrides, index, counter, ready)`; rate = counter growth / time.

    They start at once; each freezes itself once warm, and `wait_ready` waits until all have.
    A measurement thaws them, counts, and freezes them again.
    """

    def __init__(self, loop: Callable, preset: str, overrides: Sequence[str], count: int):
        spawn = multiprocessing.get_context("spawn")  # a fresh interpreter, as a role process is
        self.counters = [spawn.RawValue("q", 0) for _ in range(count)]
        self.ready = [spawn.Event() for _ in range(count)]
        self.procs = [spawn.Process(target=loop, args=(preset, list(overrides), i, self.counters[i], self.ready[i]),
                                    name=f"{loop.__name__}-{i}", daemon=True) for i in range(count)]
        for p in self.procs:
            p.start()

    def wait_ready(self, timeout_s: float) -> None:
        """Until every loop is warm and has frozen itself (a thaw before that would be lost)."""
        import psutil

        deadline = time.time() + timeout_s
        for p, event in zip(self.procs, self.ready):
            while not (event.is_set() and psutil.Process(p.pid).status() == psutil.STATUS_STOPPED):
                if not p.is_alive():
                    raise RuntimeError(f"{p.name} failed with exit code {p.exitcode} (its traceback is above)")
                if time.time() > deadline:
                    raise RuntimeError(f"{p.name} did not start within {timeout_s:.0f} s")
                event.wait(0.05)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def freeze(self) -> None:
        _freeze(self.pids)

    def thaw(self) -> None:
        _thaw(self.pids)

    def total(self) -> int:
        return sum(c.value for c in self.counters)

    def measure(self, seconds: float, settle_s: float) -> dict:
        """Run `seconds` (after `settle_s`), frozen again after: {"rate": counts per second, all workers
        together; "cpu": CPU seconds per second of each worker}."""
        self.thaw()
        try:
            time.sleep(settle_s)
            count0, cpu0, t0 = self.total(), [cpu_seconds(p) for p in self.pids], time.perf_counter()
            time.sleep(seconds)
            count1, cpu1, t1 = self.total(), [cpu_seconds(p) for p in self.pids], time.perf_counter()
        finally:
            self.freeze()
        for p in self.procs:
            if not p.is_alive():
                raise RuntimeError(f"{p.name} died with exit code {p.exitcode} (its traceback is above)")
        if count1 == count0:
            raise RuntimeError(f"{', '.join(p.name for p in self.procs)} made no progress in {seconds:.1f} s")
        return {"rate": (count1 - count0) / (t1 - t0), "cpu": [(b - a) / (t1 - t0) for a, b in zip(cpu0, cpu1)]}

    def close(self) -> None:
        self.thaw()  # a frozen process would not act on SIGTERM until thawed
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()


# ---------------------------------------------------------------------------------------------
# The real system


# Keeps the monitor quiet and the roles' reports frequent; nothing here changes what a role computes.
QUIET_SYSTEM = ["logging.wandb=disabled", "logging.tensorboard=false", "logging.console_every_s=3600",
                "runner.log_every_s=0.5", "runner.checkpoint_every_updates=1000000000",
                # Frozen phases last seconds: the replay service must not drop a frozen actor as gone.
                "replay.heartbeat_timeout_s=300"]


class RunningSystem:
    """Replay service, learner and actors of a config as real processes, like the local launcher runs them.

    No evaluator: it would only compete for the cores. The launcher's monitor runs in this process and
    keeps every role's counters, with the role's own clock, so rates are exact whatever the polling.
    """

    def __init__(self, preset: str, overrides: Sequence[str], echo: bool = False):
        import zmq

        from launch.launcher import prepare_run
        from launch.monitor import Monitor

        self._tmp = tempfile.TemporaryDirectory(prefix="zarl-bench-")
        self.cfg = prepare_run(preset, [*QUIET_SYSTEM, *overrides, f"runner.run_dir={self._tmp.name}"])
        self.ctx = zmq.Context()
        self.monitor = Monitor(self.cfg, self.ctx)
        self.echo = echo
        self.procs: dict = {}
        self.parked: set[str] = set()  # processes frozen for good (until close), e.g. actors once replay is filled
        self.history: dict[str, list[tuple[float, dict]]] = {}  # sender -> [(report time, counters), ...]

    def start(self, name: str, role: str, index: int = 0) -> None:
        from launch.processes import RoleProcess, role_command, role_env

        self.procs[name] = RoleProcess(name, role_command(role, self.cfg.runner.run_dir, index),
                                       role_env(self.cfg, role, index), Path(self.cfg.runner.run_dir) / "logs",
                                       echo=self.echo)

    def start_roles(self, actors: int) -> None:
        self.start("replay", "replay")
        self.start("learner", "learner")
        for i in range(actors):
            self.start(f"actor-{i}", "actor", i)

    def poll(self, timeout_ms: int = 20) -> None:
        """Collect reports; keep each role's counters with the time the role read them."""
        self.monitor.poll(timeout_ms)
        for sender, meta in self.monitor.reports.items():
            rows = self.history.setdefault(sender, [])
            if meta.get("counters") and (not rows or rows[-1][0] != meta["time"]):
                rows.append((meta["time"], meta["counters"]))
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with code {p.poll()}; its last output:\n{''.join(p.tail)}")

    def latest(self, sender: str, counter: str) -> float:
        rows = self.history.get(sender)
        return float(rows[-1][1].get(counter, 0)) if rows else 0.0

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            self.poll(50)
            if predicate():
                return
        logs = "\n".join(f"--- {n}\n{''.join(p.tail)}" for n, p in self.procs.items())
        raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{logs}")

    def rate(self, sender: str, counter: str, t0: float, t1: float) -> float:
        """Growth per second of a role's counter between its first and its last report inside [t0, t1]."""
        rows = [(t, c[counter]) for t, c in self.history.get(sender, []) if t0 <= t <= t1 and counter in c]
        if len(rows) < 2 or rows[-1][0] <= rows[0][0]:
            raise RuntimeError(f"{sender} sent fewer than two reports of '{counter}' in {t1 - t0:.1f} s: "
                               "measure for longer (or lower runner.log_every_s)")
        return (rows[-1][1] - rows[0][1]) / (rows[-1][0] - rows[0][0])

    @property
    def pids(self) -> list[int]:
        """The processes that `freeze` and `thaw` act on: all but the parked ones."""
        return [p.pid for name, p in self.procs.items() if name not in self.parked]

    def freeze(self) -> None:
        _freeze(self.pids)

    def thaw(self) -> None:
        _thaw(self.pids)

    def park(self, name: str) -> None:
        """Freeze one process until `close`: it keeps its sockets but uses no CPU."""
        _freeze([self.procs[name].pid])
        self.parked.add(name)

    def measure(self, seconds: float, settle_s: float, rates: dict[str, tuple[str, str]]) -> dict:
        """Thaw, run `seconds`, freeze. Returns {"rate": {name: counter growth per second} for `rates`,
        which maps a name to (sender, counter); "cpu": {process name: CPU seconds per second}}."""
        self.thaw()
        try:
            end_settle = time.time() + settle_s
            while time.time() < end_settle:
                self.poll(20)
            running = {n: p.pid for n, p in self.procs.items() if n not in self.parked}
            cpu0, t0 = {n: cpu_seconds(pid) for n, pid in running.items()}, time.time()
            while time.time() < t0 + seconds:
                self.poll(20)
            cpu1, t1 = {n: cpu_seconds(pid) for n, pid in running.items()}, time.time()
        finally:
            self.freeze()
        self.poll(0)  # reports already sent, from inside the window
        return {"rate": {name: self.rate(sender, counter, t0, t1) for name, (sender, counter) in rates.items()},
                "cpu": {n: (cpu1[n] - cpu0[n]) / (t1 - t0) for n in cpu0}}

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the roles to stop, as the launcher does; kill what is still alive after `timeout_s`."""
        self.parked.clear()
        self.thaw()
        try:
            self.monitor.broadcast_stop("benchmark finished")
            deadline = time.time() + timeout_s
            while time.time() < deadline and any(p.poll() is None for p in self.procs.values()):
                self.monitor.poll(50)
        finally:
            for p in self.procs.values():
                if p.poll() is None:
                    p.signal(signal.SIGKILL)
                    p.proc.wait()
                p.wait_output()
            self.monitor.close({})
            self.ctx.destroy(linger=0)
            self._tmp.cleanup()


def alternate(rounds: int, measure_a: Callable[[], dict], measure_b: Callable[[], dict]) -> list[tuple[dict, dict]]:
    """`rounds` pairs of measurements, A then B in even rounds and B then A in odd ones."""
    pairs = []
    for r in range(rounds):
        if r % 2 == 0:
            a = measure_a()
            b = measure_b()
        else:
            b = measure_b()
            a = measure_a()
        pairs.append((a, b))
    return pairs


def paired_figures(pairs: list[tuple[dict, dict]], rate: str, cpu: str, name: str, digits: int) -> dict:
    """Medians over the rounds of one rate (`rate`, e.g. "updates_per_s"), per side and per CPU-second of
    `cpu`, and of the system/bare ratios, each ratio taken within a round (the two sides of one round)."""
    median = statistics.median

    def per_cpu(side: dict) -> float:
        return side[rate] / max(side[cpu], 1e-9)

    ratios = [system[rate] / bare[rate] for system, bare in pairs]
    return {f"system_{name}_per_s": round(median(s[rate] for s, _ in pairs), digits),
            f"bare_{name}_per_s": round(median(b[rate] for _, b in pairs), digits),
            "efficiency": round(median(ratios), 3),
            "efficiency_rounds": [round(r, 3) for r in ratios],
            f"system_{name}_per_cpu_s": round(median(per_cpu(s) for s, _ in pairs), digits),
            f"bare_{name}_per_cpu_s": round(median(per_cpu(b) for _, b in pairs), digits),
            "cpu_efficiency": round(median(per_cpu(s) / per_cpu(b) for s, b in pairs), 3)}


def side_medians(pairs: list[tuple[dict, dict]], key: str, digits: int, name: str | None = None) -> dict:
    """{"system_<name>": median, "bare_<name>": median} of one figure over the rounds (name defaults to key)."""
    name = name or key
    return {f"system_{name}": round(statistics.median(s[key] for s, _ in pairs), digits),
            f"bare_{name}": round(statistics.median(b[key] for _, b in pairs), digits)}
