"""A vector env whose copies step in worker processes, in parallel: `env.workers` > 1.

A MuJoCo env with two 128x128 cameras takes ~6.5 ms a step, nearly all of it rendering, and a SyncVectorEnv
steps its copies one after another: the evaluator's 20 episodes of 100 steps took ~13 s in one process on the
H200 machine. Split over K worker processes (each a SyncVectorEnv of its share of the copies) the same steps
run side by side on K cores, while the caller batches the policy over all of them at once.

Same contract as envs.vector.SyncVectorEnv (actions in [-1, 1], automatic reset, `final_obs` and the episode
statistics in the infos), and the same episodes: a vector of B copies seeded with S steps each copy exactly as
the in-process vector of B copies seeded with S does, whatever K is (tests/envs/test_process_vector.py).

Workers are spawned (not forked: the caller may already hold a CUDA context), take their share of the copies'
configuration, and answer one command at a time over a pipe. An env whose simulator lives in another venv
(`envs.role_python`: LiberoSpatial-v0's in .venv-libero) gets workers of that interpreter: the caller (a policy in
the main venv) batches over them as over any other. Spawning hands a worker the caller's `sys.path`, which would
hide that venv's own packages behind the caller's, so a worker puts its interpreter's site-packages first before
it imports the env (what is imported before that, numpy and gymnasium, is one version in both venvs). A worker that raises sends its traceback back;
one that dies (a segfault in a simulator) shows as a closed pipe: either way the caller's next call raises an
error naming the worker, its pid and the env id, instead of hanging.
"""
from __future__ import annotations

import multiprocessing as mp
import site
import sys
import traceback
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf

from core.roles import Env

# Nothing of the `envs` package is imported at this module's top: a worker of another venv unpickles its target
# from here before it puts its own site-packages first (_own_packages_first), and `envs` imports the simulators.


def _own_packages_first() -> None:
    """This interpreter's site-packages ahead of the spawning process's path (module docstring)."""
    own = site.getsitepackages()
    sys.path[:] = own + [p for p in sys.path if p not in own]


def _worker(conn, env_cfg: Any, num_envs: int, own_interpreter: bool = False) -> None:
    """One worker's loop: make its share of the copies, then answer (command, argument) messages."""
    try:
        if own_interpreter:
            _own_packages_first()
        from envs.vector import gym_vector_env  # spawned: a fresh interpreter (importing envs registers its ids)

        env = gym_vector_env(env_cfg, num_envs)
        conn.send(("ok", (env.single_observation_space, env.single_action_space)))
    except BaseException:  # noqa: BLE001 - anything that stops the env being made goes back to the caller
        conn.send(("error", traceback.format_exc()))
        conn.close()
        return
    while True:
        try:
            command, arg = conn.recv()
        except (EOFError, KeyboardInterrupt):  # the caller is gone, or Ctrl-C reached the whole process group
            break
        try:
            if command == "reset":
                seeds, options = arg
                conn.send(("ok", env.reset(seed=seeds, options=options)))
            elif command == "step":
                out = env.step(arg)
                conn.send(("ok", (*out, env.reports_success)))
            elif command == "close":
                env.close()
                conn.send(("ok", None))
                break
            else:
                conn.send(("error", f"unknown command {command!r}"))
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))
    conn.close()


def _start(proc, python: str | None) -> None:
    """Start a spawned process with `python` as its interpreter (multiprocessing's executable is process-wide, so
    it is set for this start only)."""
    if python is None:
        proc.start()
        return
    from multiprocessing import spawn

    previous = spawn.get_executable()
    spawn.set_executable(python)
    try:
        proc.start()
    finally:
        spawn.set_executable(previous)


def _concat(parts: list) -> Any:
    """Join the workers' results along the env axis: arrays, lists, and dicts (trees) of them."""
    first = parts[0]
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    if isinstance(first, list):
        return [x for p in parts for x in p]
    return np.concatenate([np.asarray(p) for p in parts])


class ProcessVectorEnv(Env):
    def __init__(self, env_cfg: Any, num_envs: int, workers: int, start_method: str = "spawn",
                 python: str | None = None):
        """`python`: the workers' interpreter (an absolute path; None: this process's)."""
        if not 1 <= workers <= num_envs:
            raise ValueError(f"env.workers={workers} must be between 1 and the number of envs ({num_envs}): "
                             f"each worker steps at least one copy")
        if isinstance(env_cfg, DictConfig):
            env_cfg = OmegaConf.to_container(env_cfg, resolve=True)
        if isinstance(env_cfg, dict):  # attribute access in the workers, as for the config classes
            env_cfg = SimpleNamespace(**{"kwargs": {}, "max_episode_steps": None, **env_cfg})
        self.env_id = str(env_cfg.id)
        self.num_envs = num_envs
        shares = [len(s) for s in np.array_split(np.arange(num_envs), workers)]
        self._bounds = np.cumsum([0] + shares)
        ctx = mp.get_context(start_method)
        if python is not None and start_method != "spawn":
            raise ValueError(f"workers of another interpreter ({python}) must be spawned, not {start_method}ed")
        self._conns, self._procs = [], []
        for n in shares:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, env_cfg, n, python is not None), daemon=True,
                               name=f"env-worker-{len(self._procs)}")
            _start(proc, python)
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        try:
            spaces = self._gather()
        except Exception:
            self.close()
            raise
        self.single_observation_space, self.single_action_space = spaces[0]
        self.reports_success = False

    # -- the pipes ----------------------------------------------------------------------------------
    def _receive(self, k: int) -> Any:
        try:
            status, payload = self._conns[k].recv()
        except (EOFError, OSError):
            raise self._died(k) from None
        if status != "ok":
            raise RuntimeError(f"env worker {k} (pid {self._procs[k].pid}) of {self.env_id} failed:\n{payload}")
        return payload

    def _died(self, k: int) -> RuntimeError:
        self._procs[k].join(timeout=1.0)
        return RuntimeError(f"env worker {k} (pid {self._procs[k].pid}) of {self.env_id} died "
                            f"(exit code {self._procs[k].exitcode})")

    def _gather(self) -> list:
        return [self._receive(k) for k in range(len(self._conns))]

    def _send_all(self, command: str, args: Sequence) -> list:
        for k, (conn, arg) in enumerate(zip(self._conns, args)):
            try:
                conn.send((command, arg))
            except OSError:  # BrokenPipeError: the worker is gone
                raise self._died(k) from None
        return self._gather()

    def _split(self, rows: Any) -> list:
        return [rows[a:b] for a, b in zip(self._bounds[:-1], self._bounds[1:])]

    # -- the Env role -------------------------------------------------------------------------------
    def reset(self, seed: int | Sequence[int] | None = None, after_each: Callable[[], None] | None = None,
              options: Sequence[dict | None] | None = None) -> Any:
        """As SyncVectorEnv.reset; an int seed gives each copy the seed the in-process vector would.
        `after_each` is called once, after all workers have reset (their resets run side by side)."""
        from envs.vector import env_options_of, env_seeds

        seeds = self._split(env_seeds(seed, self.num_envs))
        options = self._split(env_options_of(options, self.num_envs))
        obs = _concat(self._send_all("reset", list(zip(seeds, options))))
        if after_each is not None:
            after_each()
        return obs

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        if len(actions) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions, got {len(actions)}")
        parts = self._send_all("step", self._split(np.asarray(actions)))
        self.reports_success = any(p[5] for p in parts)
        obs, rewards, terminated, truncated, infos = (_concat([p[i] for p in parts]) for i in range(5))
        return obs, rewards, terminated, truncated, infos

    def close(self) -> None:
        for conn, proc in zip(self._conns, self._procs):
            if proc.is_alive():
                try:
                    conn.send(("close", None))
                    if conn.poll(10.0):
                        conn.recv()
                except (EOFError, BrokenPipeError, OSError):
                    pass
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5.0)
            conn.close()
        self._conns, self._procs = [], []
