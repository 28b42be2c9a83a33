"""ManiSkill 3 environments behind the project's vector-env contract (core.roles.Env).

One ``ManiSkillVectorEnv`` of B envs is, depending on ``sim_backend``:

* ``gpu`` (``physx_cuda``): ONE ManiSkill env with ``num_envs=B`` (PhysX GPU simulation, batched
  rendering). Steps, auto-resets (partial resets of the finished rows), episode statistics and the
  final observations are torch operations over the batch: no Python loop over envs.
* ``cpu`` (``physx_cpu``): B ManiSkill envs of one each in this process (ManiSkill's CPU simulation
  holds one env per scene), stepped in turn and concatenated.

Observations: with ``torch_obs=True`` they stay torch tensors on the simulation device (for a policy
in the same process on the GPU); otherwise (the default, and what the actors ship) they are numpy
arrays on the host. ``to_host(obs)`` makes the copy for transport.

Observation layout (matches the project's Franka envs):

* ``obs_mode="state"``: one float32 array [B, D], ManiSkill's flattened privileged state.
* ``obs_mode="rgb"``: a dict: ``state`` float32 [B, D] (proprio: joint positions and velocities, TCP
  pose, the task's non-privileged extras such as PickCube's goal position), one uint8 [B, H, W, 3] per
  camera (``base_camera`` third-person, ``hand_camera`` on the wrist where the robot has one) and,
  for the Zarl tasks (ZarlPutOnPlate-v1, ZarlGSPutCubeOnPlate-v0), ``instruction``: uint8 [B, 64], the instruction's UTF-8 bytes zero-padded
  (``envs.maniskill.decode_instruction`` turns it back into strings; ``infos["instruction"]`` and
  ``instructions()`` give the strings too).

Actions are in [-1, 1] (rescaled to the ManiSkill action space's bounds). The time limit is counted
here (ManiSkill's own time-limit wrapper is not used); terminations are ManiSkill's (success or
failure) unless ``ignore_terminations=True``.

Seeding: ``reset(seed=int)`` derives one seed per env through a SeedSequence (as SyncVectorEnv);
``reset(seed=[...])`` takes one per env and uses it as that env's first episode's seed. Every later
episode of env b is seeded too, by a hash of (env b's seed, episode count) computed for all finished
rows at once, so a run is reproducible and the seed of each current episode is in ``episode_seeds``. Whether
the same seed gives the same initial state in any position of a GPU batch depends on the task drawing
from ManiSkill's per-env RNG (ZarlPutOnPlate-v1 does; ManiSkill's PickCube/PushCube use torch's RNG,
which ManiSkill seeds with the first reset env's seed, so on the GPU they are reproducible per run,
not per env). On the CPU every env is its own scene, so every task is reproducible per env.

Memory: ``close()`` closes every ManiSkill env, drops the references, collects garbage and empties
torch's CUDA cache; ManiSkill's users report that a closed or reconfigured env does not give all its
memory back, so this backend never reconfigures after the first reset, and a process that needs a
different scene should be a new process. On the CPU renderer, a Vulkan fence leak after 50k-250k RGB
steps is reported; ``rebuild_every`` (RGB on the CPU: 20,000 steps by default) re-creates a CPU env
at its next episode boundary once it has made that many steps.
"""
from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from core.roles import Env
from mani_skill.utils import common

import envs.maniskill.put_cube_on_plate as put_cube_on_plate
import envs.maniskill.put_on_plate as put_on_plate

MANISKILL_PREFIX = "ManiSkill/"
DEFAULT_CONTROL_MODE = "pd_ee_delta_pose"
# the project's own ManiSkill tasks: they take camera_size=, and carry an instruction per env
ZARL_TASKS = (put_on_plate.ENV_ID, put_cube_on_plate.ENV_ID)


# One render system per render device, kept for the process's life. SAPIEN frees its Vulkan context, and with it
# every compiled shader pipeline, when the last render system goes; an RGB env made after the others were closed
# (the next test, split or evaluation; a block rebuilt) then compiled them all again: ~11 s on a CPU's Vulkan
# driver each time, against under 1 s with the context kept.
_RENDER_CONTEXTS: dict[str, Any] = {}


def keep_render_context(env) -> None:
    """Keep the render context of ManiSkill env `env` (unwrapped) alive after the env is closed."""
    device = getattr(env, "_render_device", None)
    if device is None or str(device) in _RENDER_CONTEXTS:
        return
    import sapien
    from mani_skill.render import utils as render_utils

    if render_utils.can_render(device):
        _RENDER_CONTEXTS[str(device)] = sapien.render.RenderSystem(device)


def is_maniskill_id(env_id: str) -> bool:
    """ManiSkill ids are given as ``ManiSkill/<id>`` (e.g. ManiSkill/PickCube-v1) or are Zarl ManiSkill tasks."""
    return env_id.startswith(MANISKILL_PREFIX) or env_id in ZARL_TASKS


def maniskill_task_id(env_id: str) -> str:
    return env_id[len(MANISKILL_PREFIX):] if env_id.startswith(MANISKILL_PREFIX) else env_id


def physx_gpu_library() -> Path:
    """Where SAPIEN looks for its PhysX GPU library. No wheel ships it: SAPIEN downloads it from GitHub the
    first time GPU simulation is enabled, which a machine without internet access cannot do."""
    import sapien.physx

    return Path.home() / ".sapien" / "physx" / sapien.physx.version() / "libPhysXGpu_64.so"


def require_physx_gpu_library() -> None:
    """A clear error instead of SAPIEN's download attempt (a hang, then a traceback) where the library is missing."""
    path = physx_gpu_library()
    if not path.exists():
        import sapien.physx

        raise RuntimeError(
            f"sim_backend='gpu' needs SAPIEN's PhysX GPU library at {path}, which is not there (no wheel ships it; "
            "SAPIEN downloads it on first use from https://github.com/sapien-sim/physx-precompiled/releases/download/"
            f"{sapien.physx.version()}/linux-so.zip). Unzip that file there, or use sim_backend='cpu'.")


_M64 = (1 << 64) - 1


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays: a well-spread hash, vectorised."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def episode_seed(stream: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Seed of episode `count` of the env whose seed stream is `stream` (31-bit, as ManiSkill takes)."""
    mixed = _mix64(_mix64(np.asarray(stream, np.uint64)) ^ np.asarray(count, np.uint64))
    return (mixed >> np.uint64(33)).astype(np.int64)


def _tree_map(fn, x):
    if isinstance(x, dict):
        return {k: _tree_map(fn, v) for k, v in x.items()}
    return fn(x)


_NUMPY_DTYPES = {torch.float32: np.float32, torch.uint8: np.uint8, torch.bool: np.bool_, torch.int64: np.int64,
                 torch.int32: np.int32, torch.float64: np.float64}


def to_host(obs: Any) -> Any:
    """torch observations (on any device) -> numpy arrays on the host."""
    return _tree_map(lambda t: t.cpu().numpy() if isinstance(t, torch.Tensor) else t, obs)


def _cat(parts: list[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {k: _cat([p[k] for p in parts]) for k in parts[0]}
    if len(parts) == 1:
        return parts[0]
    if parts[0].device.type == "cpu":
        # numpy's single-threaded copy: torch.cat of images runs on torch's thread pool, which on a
        # small machine fights the CPU renderer's threads for the cores (measured: 3 ms a call, 7% of
        # a 4-env RGB step, against 0.1 ms this way)
        return torch.from_numpy(np.concatenate([p.numpy() for p in parts], 0))
    return torch.cat(parts, 0)


def _set_row(dst: Any, i: int, src: Any) -> None:
    if isinstance(dst, dict):
        for k in dst:
            _set_row(dst[k], i, src[k])
    else:
        dst[i] = src[0]


def _space_of(obs: Any) -> gym.Space:
    if isinstance(obs, dict):
        return gym.spaces.Dict({k: _space_of(v) for k, v in obs.items()})
    shape, dtype = tuple(obs.shape[1:]), obs.dtype
    if dtype == torch.uint8:
        return gym.spaces.Box(0, 255, shape, np.uint8)
    return gym.spaces.Box(-np.inf, np.inf, shape, np.float32)


class ManiSkillVectorEnv(Env):
    def __init__(self, env_id: str, num_envs: int, obs_mode: str = "state", sim_backend: str = "auto",
                 control_mode: str | None = DEFAULT_CONTROL_MODE, max_episode_steps: int | None = None,
                 camera_size: int | None = None, torch_obs: bool = False, ignore_terminations: bool = False,
                 reward_mode: str = "dense", rebuild_every: int | None = None, **kwargs):
        if obs_mode not in ("state", "rgb"):
            raise ValueError(f"obs_mode must be 'state' or 'rgb', got {obs_mode!r}")
        if sim_backend == "auto":
            sim_backend = "gpu" if torch.cuda.is_available() and physx_gpu_library().exists() else "cpu"
        if sim_backend not in ("cpu", "gpu"):
            raise ValueError(f"sim_backend must be 'auto', 'cpu' or 'gpu', got {sim_backend!r}")
        if sim_backend == "gpu":
            require_physx_gpu_library()
        self.env_id = maniskill_task_id(env_id)
        self.num_envs = int(num_envs)
        self.obs_mode, self.sim_backend, self.torch_obs = obs_mode, sim_backend, torch_obs
        self.ignore_terminations = ignore_terminations
        make_kwargs = dict(kwargs)
        make_kwargs.update(obs_mode=obs_mode, reward_mode=reward_mode,
                           sim_backend="physx_cuda" if sim_backend == "gpu" else "physx_cpu")
        if control_mode is not None:
            make_kwargs["control_mode"] = control_mode
        if camera_size is not None:
            if self.env_id in ZARL_TASKS:
                make_kwargs["camera_size"] = int(camera_size)
            else:
                make_kwargs["sensor_configs"] = {"width": int(camera_size), "height": int(camera_size)}
        if obs_mode == "state":
            make_kwargs.setdefault("render_mode", None)
        self._make_kwargs = make_kwargs
        spec_steps = gym.spec(self.env_id).max_episode_steps
        self.max_episode_steps = int(max_episode_steps or spec_steps or 1000)
        if rebuild_every is None:
            rebuild_every = 20_000 if (sim_backend == "cpu" and obs_mode == "rgb") else 0
        self.rebuild_every = int(rebuild_every)

        if sim_backend == "gpu":
            self.blocks = [self._make(self.num_envs)]
        else:
            self.blocks = [self._make(1) for _ in range(self.num_envs)]
        self._block_steps = [0] * len(self.blocks)
        base = self.blocks[0]
        if obs_mode != "state" or make_kwargs.get("render_mode"):  # it renders: its compiled shaders are kept
            keep_render_context(base)
        self.device = base.device
        self.has_instructions = self.env_id in ZARL_TASKS

        space = base.single_action_space
        if not isinstance(space, gym.spaces.Box):
            raise TypeError(f"unsupported ManiSkill action space {space}: Box expected")
        self.env_action_space = space
        self.discrete = False
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, space.shape, np.float32)
        self._low = torch.as_tensor(space.low, dtype=torch.float32, device=self.device)
        self._high = torch.as_tensor(space.high, dtype=torch.float32, device=self.device)

        n, dev = self.num_envs, self.device
        self._returns = torch.zeros(n, dtype=torch.float64, device=dev)
        self._lengths = torch.zeros(n, dtype=torch.long, device=dev)
        self._success_once = torch.zeros(n, dtype=torch.bool, device=dev)
        self.reports_success = True
        # env b's k-th episode after a reset gets episode_seed(stream[b], k): reproducible, vectorised
        self._streams = np.random.SeedSequence().generate_state(n, np.uint64)
        self._counts = np.zeros(n, np.uint64)
        self.episode_seeds = np.zeros(n, np.int64)
        raw, _ = self._reset_blocks(self._draw_seeds(range(n)))
        self._obs = self._convert(raw)
        self.single_observation_space = _space_of(self._obs)

    # ----------------------------------------------------------------- making
    def _make(self, n: int):
        return gym.make(self.env_id, num_envs=n, **self._make_kwargs).unwrapped

    # ------------------------------------------------------------- obs/state
    def _convert_one(self, env, raw: Any) -> Any:
        if self.obs_mode == "state":
            return raw.float()
        state = common.flatten_state_dict({"agent": raw["agent"], "extra": raw["extra"]}, use_torch=True,
                                          device=env.device).float()
        obs = {"state": state}
        for cam, data in raw["sensor_data"].items():
            obs[cam] = data["rgb"]
        if self.has_instructions:
            obs["instruction"] = env.instruction_tokens.clone()
        return obs

    def _convert(self, raws: list[Any]) -> Any:
        return _cat([self._convert_one(env, raw) for env, raw in zip(self.blocks, raws)])

    def _out(self, obs: Any) -> Any:
        return obs if self.torch_obs else to_host(obs)

    def instructions(self) -> list[str]:
        """The current episode's instruction per env (the Zarl tasks; empty strings otherwise)."""
        if not self.has_instructions:
            return [""] * self.num_envs
        return [s for env in self.blocks for s in env.instructions]

    def privileged_state(self) -> dict[str, torch.Tensor]:
        """Simulator state the scripted experts read ([B, ...] tensors on the sim device)."""
        from envs.maniskill.expert import privileged_state
        return _cat([privileged_state(env) for env in self.blocks])

    # ----------------------------------------------------------------- seeds
    def _draw_seeds(self, rows) -> dict[int, int]:
        rows = np.asarray(list(rows), np.int64)
        seeds = episode_seed(self._streams[rows], self._counts[rows])
        self._counts[rows] += np.uint64(1)
        self.episode_seeds[rows] = seeds
        return dict(zip(rows.tolist(), seeds.tolist()))

    def _partial_reset(self, env, local_rows: np.ndarray, seeds: np.ndarray):
        """Reset rows of one ManiSkill env, each with its own episode seed, touching only those rows.

        ManiSkill's own seeded reset re-seeds the RNGs of every env in the batch (and wants a seed for
        each): O(num_envs) per call, which at 1024 envs costs more than a step. So the reset rows' RNGs
        are set here (ManiSkill's per-env numpy RNGs, as its seeded path would set them) and ManiSkill
        resets them unseeded; torch's RNG is forked and seeded as ManiSkill does for a seeded reset."""
        env._episode_seed[local_rows] = seeds
        env._batched_episode_rng[local_rows] = [np.random.RandomState(int(s)) for s in seeds]
        env._episode_rng = env._batched_episode_rng[0]  # (ManiSkill's alias, which some scene builders draw from)
        idx = torch.as_tensor(local_rows, dtype=torch.long, device=self.device)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seeds[0]))
            return env.reset(options={"env_idx": idx})

    def _reset_blocks(self, seeds: dict[int, int], rows: Sequence[int] | None = None):
        """Reset the given rows (all when None) with their seeds; returns the raw obs of the reset blocks
        (GPU: the whole batch's)."""
        if self.sim_backend == "gpu":
            env = self.blocks[0]
            if rows is None:
                raw, info = env.reset(seed=[int(s) for s in self.episode_seeds])
            else:
                rows_np = np.asarray(list(rows), np.int64)
                raw, info = self._partial_reset(env, rows_np, self.episode_seeds[rows_np])
            return [raw], [info]
        raws, infos = [], []
        for i, env in enumerate(self.blocks):
            if rows is not None and i not in seeds:
                continue
            if self.rebuild_every and self._block_steps[i] >= self.rebuild_every:
                env.close()
                env = self.blocks[i] = self._make(1)
                self._block_steps[i] = 0
                raw, info = env.reset(seed=seeds[i])
            elif rows is None:
                raw, info = env.reset(seed=seeds[i])
            else:  # the same path as the GPU's partial resets
                raw, info = self._partial_reset(env, np.zeros(1, np.int64), np.array([seeds[i]], np.int64))
            raws.append(raw)
            infos.append(info)
        return raws, infos

    def reset(self, seed: int | Sequence[int] | None = None) -> Any:
        n = self.num_envs
        if seed is None:
            self._streams = np.random.SeedSequence().generate_state(n, np.uint64)
        else:
            if isinstance(seed, (int, np.integer)):
                env_seeds = [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(n, np.uint32)]
            else:  # seeds ManiSkill cannot take (it wants 31 bits) are hashed down to 31 bits
                env_seeds = [int(s) if 0 <= int(s) < 2**31 else int(episode_seed(np.uint64(int(s) & _M64), 0))
                             for s in seed]
                if len(env_seeds) != n:
                    raise ValueError(f"reset got {len(env_seeds)} seeds for {n} envs")
            self._streams = np.asarray(env_seeds, np.uint64)
        self._counts[:] = 0
        seeds = self._draw_seeds(range(n))
        if seed is not None and not isinstance(seed, (int, np.integer)):
            # explicit per-env seeds are the episodes' own seeds (e.g. a split's evaluation episodes)
            for i, s in enumerate(env_seeds):
                seeds[i] = s
                self.episode_seeds[i] = s
        raws, _ = self._reset_blocks(seeds)
        self._returns.zero_()
        self._lengths.zero_()
        self._success_once.zero_()
        self._obs = self._convert(raws)
        return self._out(self._obs)

    # ------------------------------------------------------------------ step
    def _to_env_action(self, actions: Any) -> torch.Tensor:
        a = torch.as_tensor(actions, dtype=torch.float32, device=self.device).clamp(-1.0, 1.0)
        return self._low + (a + 1.0) * 0.5 * (self._high - self._low)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        if len(actions) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions, got {len(actions)}")
        a = self._to_env_action(actions)
        raws, rewards, terms, successes = [], [], [], []
        if self.sim_backend == "gpu":
            raw, r, term, _, info = self.blocks[0].step(a)
            raws, rewards, terms = [raw], [r], [term]
            successes = [info.get("success", torch.zeros_like(term))]
        else:
            for i, env in enumerate(self.blocks):
                raw, r, term, _, info = env.step(a[i:i + 1])
                raws.append(raw)
                rewards.append(r)
                terms.append(term)
                successes.append(info.get("success", torch.zeros_like(term)))
                self._block_steps[i] += 1
        reward = torch.cat(rewards).float().reshape(self.num_envs)
        terminated = torch.cat(terms).bool().reshape(self.num_envs)
        success = torch.cat(successes).bool().reshape(self.num_envs)
        if self.ignore_terminations:
            terminated = torch.zeros_like(terminated)
        self._returns += reward
        self._lengths += 1
        self._success_once |= success
        truncated = (self._lengths >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        obs = self._convert(raws)
        ep_return = torch.where(done, self._returns, torch.zeros_like(self._returns)).float()
        ep_length = torch.where(done, self._lengths, torch.zeros_like(self._lengths))
        ep_success = done & self._success_once
        if bool(done.any()):
            final_obs = _tree_map(lambda t: t * done.view(-1, *([1] * (t.dim() - 1))).to(t.dtype), obs)
            if not self.torch_obs:
                final_obs = to_host(final_obs)
            rows = torch.nonzero(done).flatten().tolist()
            seeds = self._draw_seeds(rows)
            raws2, _ = self._reset_blocks(seeds, rows)
            if self.sim_backend == "gpu":  # a partial reset returns the whole batch's observation
                obs = self._convert(raws2)
            else:
                for i, raw in zip(rows, raws2):
                    _set_row(obs, i, self._convert_one(self.blocks[i], raw))
            self._returns[done] = 0
            self._lengths[done] = 0
            self._success_once[done] = False
        elif self.torch_obs:
            final_obs = _tree_map(torch.zeros_like, obs)
        else:  # no copy from the device: host zeros (np.zeros maps zeroed pages lazily, nearly free)
            final_obs = _tree_map(lambda t: np.zeros(tuple(t.shape), _NUMPY_DTYPES[t.dtype]), obs)
        self._obs = obs
        infos = {"done": done, "success": success, "episode_return": ep_return, "episode_length": ep_length,
                 "episode_success": ep_success}
        if not self.torch_obs:
            infos = to_host(infos)
        infos["final_obs"] = final_obs
        if self.has_instructions:
            infos["instruction"] = self.instructions()
        return self._out(obs), to_host(reward).astype(np.float32), to_host(terminated), to_host(truncated), infos

    def close(self) -> None:
        for env in getattr(self, "blocks", []):
            env.close()
        self.blocks = []
        self._obs = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def make_maniskill_vector_env(env_cfg: Any, num_envs: int | None = None, seed: int | None = None) -> ManiSkillVectorEnv:
    """From a config: ``env.id`` = ``ManiSkill/<task>`` or ``ZarlPutOnPlate-v1``; ``env.kwargs`` are
    ManiSkillVectorEnv's options (obs_mode, sim_backend, camera_size, control_mode, torch_obs, ...) and the
    task's own (e.g. split, differenced_reward); ``env.max_episode_steps`` overrides the task's limit."""
    kwargs = dict(getattr(env_cfg, "kwargs", None) or {})
    kwargs.pop("backend", None)
    if getattr(env_cfg, "max_episode_steps", None):
        kwargs["max_episode_steps"] = int(env_cfg.max_episode_steps)
    n = int(num_envs if num_envs is not None else env_cfg.num_envs)
    env = ManiSkillVectorEnv(env_cfg.id, n, **kwargs)
    if seed is not None:
        env.reset(seed=seed)
    return env


class ManiSkillGymEnv(gym.Env):
    """One ManiSkill env (CPU simulation) as a plain, unbatched gymnasium env with numpy observations
    laid out as ManiSkillVectorEnv's rows: for gymnasium tools (``check_env``, wrappers) and scripts."""

    metadata = {"render_modes": []}

    def __init__(self, env_id: str, **kwargs):
        self._vec = ManiSkillVectorEnv(env_id, 1, sim_backend="cpu", **kwargs)
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self._steps = 0

    @property
    def unwrapped_maniskill(self):
        return self._vec.blocks[0]

    def _row(self, obs: Any) -> Any:
        return _tree_map(lambda t: t[0].cpu().numpy(), obs)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        env = self._vec.blocks[0]
        if seed is None:
            seed = int(self.np_random.integers(2**31))
        raw, _ = env.reset(seed=int(seed))
        self._steps = 0
        info = {"instruction": env.instructions[0]} if self._vec.has_instructions else {}
        return self._row(self._vec._convert_one(env, raw)), info

    def step(self, action):
        env = self._vec.blocks[0]
        a = self._vec._to_env_action(np.asarray(action, np.float32)[None])
        raw, reward, terminated, _, info = env.step(a)
        self._steps += 1
        out_info = {"success": bool(info["success"][0]) if "success" in info else False}
        if self._vec.has_instructions:
            out_info["instruction"] = env.instructions[0]
        truncated = self._steps >= self._vec.max_episode_steps
        return (self._row(self._vec._convert_one(env, raw)), float(reward[0]), bool(terminated[0]), bool(truncated),
                out_info)

    def close(self):
        self._vec.close()
