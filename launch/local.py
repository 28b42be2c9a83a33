"""Runs every role as a local process, a child of the launcher (launch/launcher.py: what every mode shares).

`launch` below starts a run in the mode its config asks for: local here, tmux, ssh or ray in their modules.
"""
from __future__ import annotations

from launch import placement
from launch.launcher import Launcher, prepare_run
from launch.placement import ProcessPlacement
from launch.processes import REPO_ROOT, RoleProcess, role_command


class LocalLauncher(Launcher):
    """Every process on this machine, as a child of the launcher (its output streamed to the console)."""

    mode = "local"

    def start_process(self, p: ProcessPlacement) -> RoleProcess:
        # placement.local_env = role_env's threads + the placement's GPU pinning (CUDA_VISIBLE_DEVICES)
        python = placement.interpreter(p, REPO_ROOT)
        return RoleProcess(p.name, role_command(p.role, self.cfg.runner.run_dir, p.index, python=python),
                           placement.local_env(self.cfg, p), self.run_dir / "logs")


def launch(preset: str, overrides: list[str]) -> int:
    cfg = prepare_run(preset, overrides)
    mode = cfg.launch.mode
    if mode == "local":
        return LocalLauncher(cfg).run()
    if mode == "tmux":
        from launch.tmux import TmuxLauncher

        return TmuxLauncher(cfg).run()
    if mode == "ssh":
        from launch.ssh import SSHLauncher

        return SSHLauncher(cfg).run()
    if mode == "ray":
        from launch.ray_launcher import RayLauncher

        return RayLauncher(cfg).run()
    raise ValueError(f"unknown launch.mode '{mode}'")
