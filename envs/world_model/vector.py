"""``WorldModel-v0``: a learned world model (envs/world_model/model.py) as a batch of B environments, with the
project's vector-env contract (core.roles.Env) and EVAC's interface (seed 004).

* Reset: each env draws a start (first frame, instruction, end-effector pose) from the trajectory buffer, the
  episodes of one split of a trajectory data set (envs/world_model/trajectories.py). The generator's memory is
  that frame repeated ``memory_frames`` times, as in training.
* ``chunk_step(actions[B, chunk, 7])`` (chunk = 8): the poses the actions reach, the next 8 frames, each frame's
  success probability, all for the whole batch in one pass (torch, on the GPU when there is one). Per step c:
  ``terminated`` = the classifier says success (probability above ``success_threshold``) at the first such
  frame of the episode; ``truncated`` = the episode reached ``max_episode_steps`` without success; ``reward`` =
  ``success_reward`` on the success step, else 0. Termination is the predicted success, not the reward tensor
  (RLinf's world-model env sets terminations to the rewards, so any reward ends an episode).
* Auto-reset per env: after the chunk, only the envs whose episode ended start a new one (their rows of the
  memory, pose and instruction are replaced); the others keep their memory. (RLinf resets every env at once.)
  The frames of an ended env after its last step belong to no episode: the generator makes a whole chunk at a
  time, so the next episode starts with the next chunk, not inside this one (the rollout actor ignores a
  decision's steps after its episode's end anyway).
* ``step`` (one action) is refused: the generator's unit is the chunk.

Observations (numpy, on the host): ``image`` uint8 [B, H, W, 3] (the last frame), ``state`` float32 [B, 7] (the
end-effector pose), ``instruction`` uint8 [B, 64] (core/instruction.py). ``infos[c]`` as the other backends:
done, success, episode_return / episode_length / episode_success (rows that ended at step c), final_obs, and
``success_prob``.

Seeding: ``reset(seed=int)`` derives one seed per env through a SeedSequence; ``reset(seed=[...])`` takes each
env's episode seed (the GRPO actor gives a group's members one seed: one start state). Each episode's start is
drawn from its seed; later episodes' seeds come from a generator of the env's first seed, and the sampler's
noise from a torch generator seeded from all of them: the same seeds and actions give the same frames.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from core.devices import resolve_device
from core.roles import Env
from envs.world_model import ENV_ID
from core.instruction import INSTRUCTION_BYTES, encode_instruction
from envs.world_model.model import WorldModel
from envs.world_model.trajectories import Episode, StartStates, load_episodes, split_episodes


class WorldModelVectorEnv(Env):
    def __init__(self, num_envs: int, model: str | Path | WorldModel | None,
                 trajectories: str | Path | list[Episode] | None,
                 max_episode_steps: int = 64, split: str = "train", held_out_fraction: float = 0.1,
                 split_seed: int = 0, success_reward: float = 5.0, flow_steps: int | None = None,
                 device: str = "auto"):
        if model is None or trajectories is None:
            raise ValueError("WorldModel-v0 needs env.kwargs.model (a directory saved by WorldModel.save_pretrained, "
                             "e.g. by python -m envs.world_model.train) and env.kwargs.trajectories (the trajectory "
                             "data set it was trained on, for its start states)")
        if split not in ("train", "held_out"):
            raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
        if int(max_episode_steps) < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self.device = torch.device(resolve_device(device))
        self.model = (model if isinstance(model, WorldModel) else WorldModel.from_pretrained(model)).to(self.device)
        self.model.eval()
        cfg = self.model.config
        self.num_envs, self.chunk = int(num_envs), cfg.chunk
        self.max_episode_steps, self.success_reward = int(max_episode_steps), float(success_reward)
        self.flow_steps = flow_steps
        if isinstance(trajectories, (str, Path)):
            episodes = load_episodes(trajectories, cfg.image_size, cfg.pose_dim, cfg.camera)
        else:  # episodes already loaded (trajectories.load_episodes), e.g. shared by several envs
            episodes = list(trajectories)
            if episodes and episodes[0].frames.shape[1:3] != (cfg.image_size, cfg.image_size):
                raise ValueError(f"the episodes' frames are {episodes[0].frames.shape[1:3]}, the world model's "
                                 f"{cfg.image_size} px")
        train, held_out = split_episodes(len(episodes), held_out_fraction, split_seed)
        chosen = train if split == "train" else held_out
        if not len(chosen):
            raise ValueError(f"the {split} split of the trajectories has no episodes ({len(episodes)} in all)")
        starts = StartStates.of([episodes[i] for i in chosen])
        self.starts = starts
        self._start_frames = torch.as_tensor(starts.frames, device=self.device)
        self._start_latents = self.model.encode_frames(self._start_frames)
        self._start_poses = torch.as_tensor(starts.poses, device=self.device)
        self._start_instructions = np.stack([encode_instruction(t) for t in starts.instructions])
        s = cfg.image_size
        self.single_observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (s, s, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (cfg.pose_dim,), np.float32),
            "instruction": gym.spaces.Box(0, 255, (INSTRUCTION_BYTES,), np.uint8)})
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (cfg.action_dim,), np.float32)
        self.discrete = False
        n = self.num_envs
        self.episode_seeds = np.zeros(n, np.uint64)
        self.start_index = np.zeros(n, np.int64)
        self._returns = torch.zeros(n, device=self.device)
        self._lengths = torch.zeros(n, dtype=torch.int64, device=self.device)
        self._memory = torch.zeros((n, cfg.memory_frames, cfg.latent_channels, cfg.latent_size, cfg.latent_size),
                                   device=self.device)
        self._frame = torch.zeros((n, s, s, 3), dtype=torch.uint8, device=self.device)
        self._pose = torch.zeros((n, cfg.pose_dim), device=self.device)
        self._instruction = np.zeros((n, INSTRUCTION_BYTES), np.uint8)
        self._seed_streams: list[np.random.Generator] = []
        self._noise = torch.Generator(device=self.device)
        self.reset()

    # -- resets ----------------------------------------------------------------------------------------------
    def _start(self, rows: np.ndarray, seeds: np.ndarray) -> None:
        """Rows `rows` begin episodes with seeds `seeds`: a start drawn from the buffer by each seed."""
        index = np.array([np.random.default_rng(int(s)).integers(len(self.starts)) for s in seeds], np.int64)
        self.episode_seeds[rows], self.start_index[rows] = seeds, index
        r = torch.as_tensor(rows, device=self.device)
        i = torch.as_tensor(index, device=self.device)
        self._memory[r] = self._start_latents[i][:, None].expand(-1, self.model.config.memory_frames, -1, -1, -1)
        self._frame[r] = self._start_frames[i]
        self._pose[r] = self._start_poses[i]
        self._instruction[rows] = self._start_instructions[index]
        self._returns[r] = 0.0
        self._lengths[r] = 0

    def reset(self, seed: int | Sequence[int] | None = None) -> dict:
        n = self.num_envs
        if seed is None:
            seeds = np.random.SeedSequence().generate_state(n, np.uint64)
        elif isinstance(seed, (int, np.integer)):
            seeds = np.random.SeedSequence(int(seed)).generate_state(n, np.uint64)
        else:
            seeds = np.asarray([int(s) & ((1 << 64) - 1) for s in seed], np.uint64)
            if len(seeds) != n:
                raise ValueError(f"reset got {len(seeds)} seeds for {n} envs")
        self._seed_streams = [np.random.default_rng(int(s)) for s in seeds]
        noise_seed = np.random.SeedSequence([int(s) for s in seeds]).generate_state(2, np.uint32)
        self._noise.manual_seed((int(noise_seed[0]) << 31) ^ int(noise_seed[1]))
        self._start(np.arange(n), seeds)
        return self._obs()

    def _obs(self) -> dict:
        return {"image": self._frame.cpu().numpy(), "state": self._pose.float().cpu().numpy(),
                "instruction": self._instruction.copy()}

    # -- steps -----------------------------------------------------------------------------------------------
    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        raise ValueError(f"{ENV_ID} generates {self.chunk} frames at a time: call chunk_step(actions[B, "
                         f"{self.chunk}, A]) (a policy that acts in chunks of {self.chunk}, e.g. vla.action_chunk=8)")

    def chunk_step(self, actions: Any) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        """See the module docstring and core.roles.Env.chunk_step."""
        cfg = self.model.config
        a = torch.as_tensor(np.asarray(actions) if not isinstance(actions, torch.Tensor) else actions,
                            dtype=torch.float32, device=self.device)
        if a.shape != (self.num_envs, self.chunk, cfg.action_dim):
            raise ValueError(f"chunk_step expects actions[B={self.num_envs}, {self.chunk}, {cfg.action_dim}], got "
                             f"shape {tuple(a.shape)}")
        if not bool(torch.isfinite(a).all()):
            raise ValueError("chunk_step got non-finite actions")
        pred = self.model.predict(self._memory, self._pose, a.clamp(-1.0, 1.0), self.flow_steps, self._noise)
        success = pred.success_prob > cfg.success_threshold  # [B, C]
        # per step: which envs are still in their episode, and which end there (first success or the horizon)
        c = self.chunk
        steps_taken = self._lengths[:, None] + torch.arange(1, c + 1, device=self.device)[None]  # [B, C]
        first_success = torch.cumsum(success.int(), 1) == success.int()  # no success before step c
        terminated = success & first_success & (steps_taken <= self.max_episode_steps)
        ended_before = torch.cumsum(terminated.int(), 1) - terminated.int() > 0
        truncated = (steps_taken == self.max_episode_steps) & ~terminated & ~ended_before
        active = ~ended_before & (steps_taken <= self.max_episode_steps)
        done = terminated | truncated
        reward = terminated.float() * self.success_reward
        returns = self._returns[:, None] + torch.cumsum(reward, 1)
        ended = done.any(1)
        # the memory goes on with the newest frames; the ended rows restart below
        self._memory = torch.cat([self._memory, pred.latents], 1)[:, -cfg.memory_frames:]
        self._frame = pred.frames[:, -1]
        self._pose = pred.poses[:, -1]
        self._returns = returns[:, -1]
        self._lengths = self._lengths + active.sum(1)
        host = {k: v.cpu().numpy() for k, v in dict(
            frames=pred.frames, poses=pred.poses.float(), prob=pred.success_prob.float(), success=success & active,
            terminated=terminated, truncated=truncated, done=done, reward=reward, returns=returns,
            lengths=steps_taken).items()}
        infos = []
        for k in range(c):
            d = host["done"][:, k]
            final_obs = {"image": np.where(d[:, None, None, None], host["frames"][:, k], 0).astype(np.uint8),
                         "state": np.where(d[:, None], host["poses"][:, k], 0).astype(np.float32),
                         "instruction": np.where(d[:, None], self._instruction, 0).astype(np.uint8)}
            infos.append({"done": d, "success": host["success"][:, k],
                          "episode_return": np.where(d, host["returns"][:, k], 0).astype(np.float32),
                          "episode_length": np.where(d, host["lengths"][:, k], 0).astype(np.int64),
                          "episode_success": d & host["terminated"][:, k], "final_obs": final_obs,
                          "success_prob": host["prob"][:, k]})
        rows = np.flatnonzero(ended.cpu().numpy())
        if len(rows):
            seeds = np.array([self._seed_streams[i].integers(2**63) for i in rows], np.uint64)
            self._start(rows, seeds)
        return (self._obs(), host["reward"].astype(np.float32), host["terminated"], host["truncated"], infos)

    def close(self) -> None:
        self.model = None


def make_world_model_vector_env(env_cfg: Any, num_envs: int | None = None,
                                seed: int | None = None) -> WorldModelVectorEnv:
    """From a config: ``env.id: WorldModel-v0``, ``env.kwargs`` WorldModelVectorEnv's options (model,
    trajectories, split, success_reward, flow_steps, device), ``env.max_episode_steps`` the horizon."""
    kwargs = dict(getattr(env_cfg, "kwargs", None) or {})
    if getattr(env_cfg, "max_episode_steps", None):
        kwargs["max_episode_steps"] = int(env_cfg.max_episode_steps)
    env = WorldModelVectorEnv(int(num_envs if num_envs is not None else env_cfg.num_envs), **kwargs)
    if seed is not None:
        env.reset(seed=seed)
    return env
