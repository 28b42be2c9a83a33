"""The actor of an on-policy run: one rollout per policy version, then wait for the next version.

    wait for weights newer than the last rollout's -> collect a rollout with them -> send it to
    the rollout store in parts, each tagged with the version -> wait again

The parts go through the same replay writer as the off-policy actor's chunks (actors/replay_writer.py):
one credit per part in flight, each returned as the store files the part.

Two shapes of rollout (layout in replay/rollout_store.py):

* PPO: ``ppo.rollout_len`` steps of every env. Episodes run on across rollouts; where one ends
  inside a rollout, its final observation is recorded so the learner can bootstrap time-outs.
* GRPO: exactly one episode per env. The envs form groups of ``grpo.group_size``; all members of
  a group are reset with the same seed, so they start from the same state and differ only by the
  policy's sampling. The rollout runs until every env's episode has ended; steps after an env's
  episode ended are marked invalid (``steps/valid``).

What a rollout records as the action is what the policy's log-probabilities are of; the env gets
``policy.env_actions(recorded)``. For the actor-critic MLP (policies/actor_critic.py) the record is
the raw Gaussian sample and the env action its clip to [-1, 1]. A policy may declare another record
(``recorded_action = (shape, dtype)``, ``recorded_log_prob_shape``): a VLA (policies/vla/policy.py)
records its action token ids (int64 [7], OFT's [8 * 7]) with per-token log-probabilities, and its
env actions are the decoded, un-normalised actions [B, chunk, 7]. A chunk of C actions is executed
as C env steps within one rollout step (one decision): the step's reward is the sum over the executed
steps, and an episode that ends inside the chunk ends that decision (its reward sum stops there, its
final observation is the ended step's). The chunk's remaining actions then run in the next episode
(the env auto-resets), unrecorded; with the episode limit a multiple of C, time-outs never cut a chunk.

Where the env names each episode's subtask (the play table drawing one per episode, ``infos["episode_task"]``),
the actor counts ended episodes and successes per subtask in its reported counters (``subtask_episodes/<task>``,
``subtask_successes/<task>``).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from actors.process import ActorProcess
from core import seeding, tree
from core.config import RunConfig
from core.roles import Policy, acts_in_chunks
from envs import make_vector_env
from envs.vector import SyncVectorEnv
from replay.rollout_store import split_rollout
from wire.schema import Spec


def _row(obs: Any, b: int) -> Any:
    return tree.map(lambda a: np.asarray(a)[b], obs)


def _stack_rows(rows: list, template: Any) -> Any:
    """Stack per-episode rows ([K, ...]); K = 0 gives empty arrays shaped like `template`'s rows."""
    if rows:
        return tree.map(lambda *r: np.stack(r), *rows)
    return tree.map(lambda a: np.zeros((0, *np.asarray(a).shape[1:]), np.asarray(a).dtype), template)


def reset_groups(env: SyncVectorEnv, group_seeds: np.ndarray, group_size: int,
                 between: Callable[[], None] | None = None) -> Any:
    """Reset every env, the `group_size` envs of group g with seed group_seeds[g]; returns the observations.
    `between` is called after each env's reset (the actor's heartbeats and stop check: a reset may take seconds,
    e.g. the play table's expert setting a subtask up)."""
    if len(group_seeds) * group_size != env.num_envs:
        raise ValueError(f"{len(group_seeds)} groups of {group_size} do not make {env.num_envs} envs")
    if not isinstance(env, SyncVectorEnv):
        # The ManiSkill backend takes one seed per env as that env's episode seed; 31 bits, as ManiSkill takes
        # (its reset hashes larger ones down, the same way for every member of a group)
        return env.reset(seed=[int(group_seeds[i // group_size]) for i in range(env.num_envs)])
    return env.reset(seed=[int(group_seeds[i // group_size]) for i in range(env.num_envs)], after_each=between)


def _finals(rows: list, index: list, template: Any) -> dict:
    """The rollout's 'finals' group: final observations [K, ...] and where each episode ended, (env, step)."""
    return {"obs": _stack_rows(rows, template), "index": np.asarray(index, np.int32).reshape(-1, 2)}


class StoppedError(Exception):
    """The run is stopping: abandon the rollout in progress."""


class RolloutActor(ActorProcess):
    def __init__(self, cfg: RunConfig, index: int, make_policy: Callable[..., Policy], rollout_len: int = 0,
                 group_size: int = 0):
        """The rollout's shape: `rollout_len` steps of every env (PPO), or with `group_size` > 0 one episode per env,
        the envs in groups of `group_size` that start from one state (GRPO)."""
        super().__init__(cfg, index)
        self.env = make_vector_env(cfg.env)
        self.spec = Spec.from_spaces(self.env.single_observation_space, self.env.single_action_space)
        self.discrete = self.env.discrete
        self.policy = make_policy(self.env.single_observation_space, self.env.single_action_space, self.device,
                                  seed=seeding.seed_of(cfg.runner.seed, "actor_policy", index))
        recorded = getattr(self.policy, "recorded_action", None)
        if recorded is not None:  # e.g. a VLA's token ids
            self.spec = Spec(obs=self.spec.obs, action=(tuple(recorded[0]), str(np.dtype(recorded[1]))))
        self.log_prob_shape = tuple(getattr(self.policy, "recorded_log_prob_shape", ()))
        self.action_chunk = int(getattr(self.policy, "action_chunk", 1))  # env steps per rollout step
        self.group_size = int(group_size)
        if self.group_size:
            group = self.group_size
            if group < 2 or self.env.num_envs % group:
                raise ValueError(f"GRPO needs env.num_envs ({self.env.num_envs}) to be a multiple of "
                                 f"grpo.group_size ({group}), and a group of at least 2")
            if isinstance(self.env, SyncVectorEnv):
                limit = self.env.envs[0].spec.max_episode_steps if self.env.envs[0].spec else None
            else:
                limit = getattr(self.env, "max_episode_steps", None)
            if not limit:
                raise ValueError(f"GRPO runs whole episodes: {cfg.env.id} has no time limit, set env.max_episode_steps")
            self.rollout_len = -(-int(limit) // self.action_chunk)  # decisions per episode at most
        else:
            self.rollout_len = int(rollout_len)
        self.connect(self.spec)  # no shared memory: a part goes once per policy version, through the socket
        self.rollouts = 0
        self.subtask_episodes: dict[str, int] = {}  # per subtask (envs that draw one per episode): ended episodes
        self.subtask_successes: dict[str, int] = {}  # ... and those that succeeded

    def _tick(self) -> None:
        """Between env steps: stop check, replies, heartbeats, progress reports."""
        if self.rt.should_stop():
            raise StoppedError
        self.writer.poll()
        self.report()

    def counters(self) -> dict:
        return {"actor_rollouts": self.rollouts,
                **{f"subtask_episodes/{t}": n for t, n in sorted(self.subtask_episodes.items())},
                **{f"subtask_successes/{t}": n for t, n in sorted(self.subtask_successes.items())}}

    def _count_episode(self, task: str | None, success: bool) -> None:
        """An ended episode of subtask `task` (None: the env has no subtasks) in the per-subtask counters."""
        if task is not None:
            self.subtask_episodes[task] = self.subtask_episodes.get(task, 0) + 1
            self.subtask_successes[task] = self.subtask_successes.get(task, 0) + int(success)

    def _wait_for_weights(self, newer_than: int) -> dict:
        """Block (heartbeating) until weights of a version above `newer_than` arrive."""
        while True:
            new = self.weights.poll(timeout_ms=50)
            if new is not None and self.weights.policy_version > newer_than:
                return new
            self._tick()

    def _send_rollout(self, rollout: dict, version: int, env_steps: int, episodes: list) -> None:
        parts = split_rollout(rollout, int(self.cfg.actor.chunk_len))
        for i, arrays in enumerate(parts):
            meta = {"part": i, "parts": len(parts)}
            if i == len(parts) - 1:
                meta.update(env_steps=env_steps, episodes=episodes)
            if not self.writer.add(arrays, meta, version):
                raise StoppedError

    # -- collecting ---------------------------------------------------------------------------------
    def _allocate(self, obs: Any, zeros: bool) -> dict:
        b, t = self.env.num_envs, self.rollout_len
        new = np.zeros if zeros else np.empty
        action_shape, action_dtype = self.spec.action
        steps = {
            "obs": tree.map(lambda a: new((b, t, *a.shape[1:]), a.dtype), obs),
            "action": new((b, t, *action_shape), action_dtype),
            "log_prob": new((b, t, *self.log_prob_shape), np.float32),
            "reward": new((b, t), np.float32),
            "terminated": new((b, t), bool),
            "truncated": new((b, t), bool),
        }
        return steps

    def _env_action(self, action: np.ndarray) -> np.ndarray:
        env_actions = getattr(self.policy, "env_actions", None)
        if env_actions is not None:
            return env_actions(action)
        return action if self.discrete else np.clip(action, -1.0, 1.0)

    def _step_chunk(self, actions: np.ndarray) -> tuple:
        """Execute actions [B, C, A] as C env steps (one env.chunk_step: a world model makes the C frames in one
        pass); one step's worth of what env.step returns, the rewards summed up to each env's episode end, and
        info["executed"] [B]: the steps that belong to the decision."""
        b, c = actions.shape[:2]
        reward = np.zeros(b, np.float32)
        terminated, truncated, ended = np.zeros(b, bool), np.zeros(b, bool), np.zeros(b, bool)
        success, executed = np.zeros(b, bool), np.zeros(b, np.int64)
        merged = None
        obs, rewards, terms, truncs, infos = self.env.chunk_step(actions)
        for k, info in enumerate(infos):
            r, term, trunc = rewards[:, k], terms[:, k], truncs[:, k]
            active = ~ended
            reward += np.where(active, r, 0.0).astype(np.float32)
            executed += active
            success |= active & np.asarray(info["success"], bool)
            terminated |= active & term
            truncated |= active & trunc
            now = active & np.asarray(info["done"], bool)
            if merged is None:
                merged = {k2: (np.array(v, copy=True) if k2 != "final_obs" else tree.map(np.array, v))
                          for k2, v in info.items() if k2 in ("done", "episode_return", "episode_length",
                                                              "episode_success", "final_obs")}
                merged["episode_task"] = list(info.get("episode_task", [None] * b))
            else:  # the rows whose episode ended at this step take this step's episode statistics
                for key in ("episode_return", "episode_length", "episode_success"):
                    merged[key][now] = np.asarray(info[key])[now]
                for i in np.flatnonzero(now):
                    merged["episode_task"][i] = info.get("episode_task", [None] * b)[i]
                for i in np.flatnonzero(now):
                    tree.assign(merged["final_obs"], i, _row(info["final_obs"], i))
            ended |= now
        merged.update(done=ended, success=success, executed=executed)
        return obs, reward, terminated, truncated, merged

    def _step(self, steps: dict, t: int, obs: Any) -> tuple:
        """Act in every env at step t, record it, and return what the env returned."""
        action, log_prob = self.policy.sample(obs)
        tree.assign(steps["obs"], (slice(None), t), obs)
        steps["action"][:, t], steps["log_prob"][:, t] = action, log_prob
        env_action = self._env_action(action)
        if acts_in_chunks(self.policy):
            next_obs, reward, terminated, truncated, info = self._step_chunk(np.asarray(env_action))
            self.env_steps += int(env_action.shape[0] * env_action.shape[1])
        else:
            next_obs, reward, terminated, truncated, info = self.env.step(env_action)
            info["executed"] = np.ones(self.env.num_envs, np.int64)
            info.setdefault("episode_task", [None] * self.env.num_envs)
            self.env_steps += self.env.num_envs
        steps["reward"][:, t], steps["terminated"][:, t], steps["truncated"][:, t] = reward, terminated, truncated
        return next_obs, info

    def collect_steps(self, obs: Any) -> tuple[dict, Any, list]:
        """PPO: rollout_len steps of every env from `obs`; returns (rollout, the obs to continue from, episodes)."""
        steps = self._allocate(obs, zeros=False)
        finals, final_index, episodes = [], [], []
        for t in range(self.rollout_len):
            obs, info = self._step(steps, t, obs)
            for b in np.flatnonzero(info["done"]):
                finals.append(_row(info["final_obs"], b))
                final_index.append((b, t))
                episodes.append([float(info["episode_return"][b]), int(info["episode_length"][b]),
                                 bool(info["episode_success"][b])])
                self._count_episode(info["episode_task"][b], bool(info["episode_success"][b]))
            self._tick()
        rollout = {"steps": steps,
                   "finals": _finals(finals, final_index, obs),
                   "envs": {"last_obs": obs}}
        return rollout, obs, episodes

    def collect_group_episodes(self, version: int) -> tuple[dict, int, list]:
        """GRPO: one episode per env, groups from shared reset seeds; returns (rollout, env steps, episodes).

        The env steps counted are the episodes' steps. Envs whose episode ended keep being stepped
        (the vector env steps all envs together) until the longest episode ends; those steps are
        masked out and not counted, so a GRPO run's env steps compare with PPO's.
        """
        group = self.group_size
        seeds = seeding.seeds(self.cfg.runner.seed, "group_resets", self.index, version,
                              count=self.env.num_envs // group)
        obs = reset_groups(self.env, seeds, group, between=self._tick)
        b = self.env.num_envs
        steps = self._allocate(obs, zeros=True)
        steps["valid"] = np.zeros((b, self.rollout_len), bool)
        running = np.ones(b, bool)
        ep_return, ep_length, ep_success = np.zeros(b, np.float32), np.zeros(b, np.int64), np.zeros(b, bool)
        finals, final_index = [], []
        for t in range(self.rollout_len):
            if not running.any():
                break
            steps["valid"][:, t] = running
            obs, info = self._step(steps, t, obs)
            ep_return += np.where(running, steps["reward"][:, t], 0.0)
            ep_length += np.where(running, info["executed"], 0)
            ep_success |= running & info["success"]
            for i in np.flatnonzero(info["done"] & running):
                finals.append(_row(info["final_obs"], i))
                final_index.append((i, t))
                self._count_episode(info["episode_task"][i], bool(ep_success[i]))
            running &= ~info["done"]
            self._tick()
        episodes = [[float(r), int(n), bool(s)] for r, n, s in zip(ep_return, ep_length, ep_success)]
        rollout = {"steps": steps,
                   "finals": _finals(finals, final_index, obs),
                   "envs": {"last_obs": obs, "episode_return": ep_return, "episode_length": ep_length,
                            "episode_success": ep_success}}
        return rollout, int(ep_length.sum()), episodes

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> int:
        cfg = self.cfg
        self.writer.register()
        shape = (f"one episode per env, groups of {self.group_size}" if self.group_size
                 else f"rollouts of {self.rollout_len} steps")
        self.log.info(f"{self.env.num_envs} x {cfg.env.id} on {self.device}; {shape}")
        # GRPO resets its groups at every rollout; PPO's episodes run on from these resets
        obs = None if self.group_size else self.env.reset(
            seed=seeding.seeds(cfg.runner.seed, "actor_envs", self.index, 0, count=self.env.num_envs))
        version = 0
        try:
            while True:
                self.policy.load_weights(self._wait_for_weights(newer_than=version))
                version = self.weights.policy_version
                if self.group_size:
                    rollout, env_steps, episodes = self.collect_group_episodes(version)
                else:
                    rollout, obs, episodes = self.collect_steps(obs)
                    env_steps = self.env.num_envs * self.rollout_len * self.action_chunk
                self._send_rollout(rollout, version, env_steps, episodes)
                self.rollouts += 1
        except StoppedError:
            pass
        self.env.close()
        stale = self.writer.session.outcomes["stale"]
        return self.close(f"{self.rollouts} rollouts, {self.env_steps:,} env steps"
                          f"{f', {stale} stale part(s)' if stale else ''}")
