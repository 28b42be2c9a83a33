"""Shared fixtures: a real multi-process system under test control."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Small and fast: a CI-sized pendulum system.
FAST_PENDULUM = [
    "policy.hidden=[32,32]", "policy.activation=relu", "policy.layer_norm=false",
    "sac.batch_size=64", "eval.episodes=2", "eval.num_envs=2", "logging.wandb=disabled",
    "logging.tensorboard=false", "runner.log_every_s=0.5", "logging.console_every_s=0.5",
    "actor.heartbeat_s=0.2", "replay.min_size=128", "actor.random_steps=128", "actor.chunk_len=32",
]


def fast_overrides(preset: str) -> list[str]:
    """FAST_PENDULUM, less the keys of sections the preset's pipeline does not have (sac.* in a PPO run)."""
    from launch.run_config import load_config

    sections = load_config(preset).keys()
    return [item for item in FAST_PENDULUM if item.split(".", 1)[0] in sections]


class System:
    """Roles started one by one as real processes, with the launcher's monitor in this process."""

    def __init__(self, run_dir: Path, preset: str, overrides: list[str]):
        import zmq

        from launch.launcher import prepare_run
        from launch.monitor import Monitor

        self.cfg = prepare_run(preset, [*overrides, f"runner.run_dir={run_dir}"])
        self.monitor = Monitor(self.cfg, zmq.Context.instance())
        self.procs: dict = {}

    def start(self, name: str, role: str, index: int = 0):
        from launch.processes import RoleProcess, role_command, role_env

        self.procs[name] = RoleProcess(name, role_command(role, self.cfg.runner.run_dir, index),
                                       role_env(self.cfg, role, index), Path(self.cfg.runner.run_dir) / "logs",
                                       echo=False)
        return self.procs[name]

    def report(self, sender: str) -> dict:
        return self.monitor.reports.get(sender, {})

    def wait_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.monitor.poll(100)
            if predicate():
                return
            for name, p in self.procs.items():
                if p.poll() not in (None, 0, -signal.SIGKILL, -signal.SIGTERM):
                    raise AssertionError(f"{name} died with {p.poll()}:\n{''.join(p.tail)}")
        logs = "\n".join(f"--- {n}\n{''.join(p.tail)}" for n, p in self.procs.items())
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")

    def stop(self, timeout: float = 10.0) -> dict:
        self.monitor.broadcast_stop("test finished")
        deadline = time.time() + timeout
        while time.time() < deadline and any(p.poll() is None for p in self.procs.values()):
            self.monitor.poll(50)
        codes = {}
        for name, p in self.procs.items():
            if p.poll() is None:
                p.signal(signal.SIGKILL)
                p.proc.wait()
            p.wait_output()
            codes[name] = p.poll()
        return codes

    def close(self) -> None:
        from wire import shared_memory

        for p in self.procs.values():
            p.signal(signal.SIGKILL)
        self.monitor.close({})
        shared_memory.remove_segments(self.cfg.runner.run_id)  # as the launcher does: what killed actors left


@pytest.fixture
def system_factory(tmp_path):
    systems = []

    def make(preset: str = "pendulum_sac_mlp", overrides: list[str] | None = None) -> System:
        s = System(tmp_path / f"run{len(systems)}", preset, [*fast_overrides(preset), *(overrides or [])])
        systems.append(s)
        return s

    yield make
    for s in systems:
        s.close()


# -- the world-model env's tests (envs/world_model): real trajectories from the CALVIN play table ------------------
WORLD_MODEL_TASK = "turn_on_lightbulb"  # the expert needs ~65 steps; noisy actions fail it


@pytest.fixture(scope="session")
def calvin_trajectories(tmp_path_factory) -> Path:
    """4 episodes of the play table's scripted expert on turn_on_lightbulb, 32 px static camera: two clean (they
    succeed, and 12 steps after the success are recorded), two with action noise of std 2 (they fail; 24 steps).
    Recorded once per test session (~13 s of CPU)."""
    from envs.calvin.demos import record_trajectories

    root = tmp_path_factory.mktemp("calvin_trajectories") / "data"
    counts = record_trajectories(root, [WORLD_MODEL_TASK] * 4, seed=0, static_size=32, only_successes=False,
                                 action_noise=[0, 0, 2, 2], steps_after_success=12, max_steps=[78, 78, 24, 24])
    assert counts == {"attempted": 4, "successes": 2, "written": 4}, counts
    return root


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is many times faster than two that contend."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_world_model_config():
    """Makes world-model configs small enough for CPU tests (16 px frames, a 4x4 latent grid, one transformer
    layer), with the given changes."""
    from envs.world_model.config import WorldModelConfig

    sizes = dict(image_size=16, ae_widths=[8, 16], latent_channels=4, patch=1, hidden=32, layers=1, heads=2,
                 flow_steps=2, pose_hidden=64, classifier_widths=[8, 16])
    return lambda **changes: WorldModelConfig(**{**sizes, **changes})


@pytest.fixture(scope="session")
def tiny_gs_assets(tmp_path_factory):
    """ZarlGSPutCubeOnPlate-v0's Gaussian assets at a CPU test size, built once per session by the real pipeline
    (launch/build_gs_assets.py: SAPIEN capture, back-projected initialisation, 2 fit steps, one scene check):
    (directory, report). Most of its ~50 s is the CPU Vulkan driver's shader compile, paid once per process."""
    import torch

    from launch.build_gs_assets import build, load_build_config

    out = tmp_path_factory.mktemp("gs_assets")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny renders run fastest on one thread (tests/envs/test_gaussians.py)
    try:
        report = build(load_build_config([f"out={out}", "capture_size=24", "views_per_part=8", "background_views=4",
                                          "heldout_every=4", "max_points=150", "background_max_points=800",
                                          "fit.steps=2", "fit.views_per_step=1", "sh_degree=1",
                                          "camera_size=32", "scene_checks=1", "scene_check_steps=1"]),
                       log=lambda *_: None)
    finally:
        torch.set_num_threads(before)
    return out, report
