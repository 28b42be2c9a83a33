"""The actor of an on-policy run: one rollout per policy version, then wait for the next version.

    wait for weights newer than the last rollout's -> collect a rollout with them -> send it to
    the rollout store in parts, each tagged with the version -> wait again

Two shapes of rollout (layout in replay/rollout_store.py):

* PPO: ``ppo.rollout_len`` steps of every env. Episodes run on across rollouts; where one ends
  inside a rollout, its final observation is recorded so the learner can bootstrap time-outs.
* GRPO: exactly one episode per env. The envs form groups of ``grpo.group_size``; all members of
  a group are reset with the same seed, so they start from the same state and differ only by the
  policy's sampling. The rollout runs until every env's episode has ended; steps after an env's
  episode ended are marked invalid (``steps/valid``).

Box actions are recorded as the raw Gaussian samples (what the log-probabilities are of) and
clipped to [-1, 1] for the environment; see policies/actor_critic.py.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np
import zmq

from actors.actor import observation_spec
from actors.weights import WeightsSubscriber
from core import seeding
from core.config import RunConfig
from core.devices import actor_device
from core.net import endpoint, make_socket
from core.role_runtime import RoleRuntime
from core.roles import Actor, Policy
from envs import make_vector_env
from envs.vector import SyncVectorEnv
from replay.rollout_store import split_rollout, tree_map
from wire import protocol
from wire.protocol import Kind

LOG_FIRST_STALE = 5


def _row(tree: Any, b: int) -> Any:
    return tree_map(lambda a: np.asarray(a)[b], tree)


def _stack_rows(rows: list, template: Any) -> Any:
    """Stack per-episode rows ([K, ...]); K = 0 gives empty arrays shaped like `template`'s rows."""
    if rows:
        return tree_map(lambda *r: np.stack(r), *rows)
    return tree_map(lambda a: np.zeros((0, *np.asarray(a).shape[1:]), np.asarray(a).dtype), template)


def reset_groups(env: SyncVectorEnv, group_seeds: np.ndarray, group_size: int) -> Any:
    """Reset every env, the `group_size` envs of group g with seed group_seeds[g]; returns the observations."""
    if len(group_seeds) * group_size != env.num_envs:
        raise ValueError(f"{len(group_seeds)} groups of {group_size} do not make {env.num_envs} envs")
    obs = env.reset()  # clears the vector env's episode statistics; the seeded resets below pick the states
    for i, sub_env in enumerate(env.envs):
        row, _ = sub_env.reset(seed=int(group_seeds[i // group_size]))

        def put(dst, src, i=i):
            dst[i] = src
        tree_map(put, obs, row)
    return obs


def _finals(rows: list, index: list, template: Any) -> dict:
    """The rollout's 'finals' group: final observations [K, ...] and where each episode ended, (env, step)."""
    return {"obs": _stack_rows(rows, template), "index": np.asarray(index, np.int32).reshape(-1, 2)}


class StoppedError(Exception):
    """The run is stopping: abandon the rollout in progress."""


class RolloutActor(Actor):
    def __init__(self, cfg: RunConfig, index: int, make_policy: Callable[..., Policy], rollout_len: int = 0,
                 group_size: int = 0):
        """The rollout's shape: `rollout_len` steps of every env (PPO), or with `group_size` > 0 one episode per env,
        the envs in groups of `group_size` that start from one state (GRPO)."""
        self.cfg, self.index = cfg, index
        self.name = f"actor-{index}"
        self.rt = RoleRuntime(cfg, "actor", self.name)
        self.log = self.rt.log
        self.device = actor_device(cfg.actor, index)
        self.env = make_vector_env(cfg.env)
        self.spec = observation_spec(self.env.single_observation_space, self.env.single_action_space)
        self.discrete = self.env.discrete
        self.policy = make_policy(self.env.single_observation_space, self.env.single_action_space, self.device,
                                  seed=seeding.seed_of(cfg.runner.seed, "actor_policy", index))
        self.group_size = int(group_size)
        if self.group_size:
            group = self.group_size
            if group < 2 or self.env.num_envs % group:
                raise ValueError(f"GRPO needs env.num_envs ({self.env.num_envs}) to be a multiple of "
                                 f"grpo.group_size ({group}), and a group of at least 2")
            limit = self.env.envs[0].spec.max_episode_steps if self.env.envs[0].spec else None
            if not limit:
                raise ValueError(f"GRPO runs whole episodes: {cfg.env.id} has no time limit, set env.max_episode_steps")
            self.rollout_len = int(limit)
        else:
            self.rollout_len = int(rollout_len)
        self.weights = WeightsSubscriber(self.rt.ctx, endpoint(cfg, "weights", bind=False))
        self.replay = make_socket(self.rt.ctx, zmq.DEALER, curve="client")
        self.replay.connect(endpoint(cfg, "replay_actors", bind=False))
        self.seq = 0
        self.unacked: dict[int, tuple[dict, dict, int]] = {}  # seq -> (arrays, meta, version), resent on re-register
        self.registered = False
        self.env_steps = 0
        self.rollouts = 0
        self.stale = 0
        self._last_register = self._last_heartbeat = self._last_report = 0.0

    # -- talking to the rollout store ---------------------------------------------------------------
    def _register(self) -> None:
        protocol.send(self.replay, Kind.REGISTER, sender=self.name,
                      meta={"spec": self.spec.to_meta(), "pid": os.getpid(), "device": self.device})
        self._last_register = time.time()

    def _send_part(self, seq: int, arrays: dict, meta: dict, version: int) -> None:
        protocol.send(self.replay, Kind.CHUNK, arrays, sender=self.name, seq=seq, policy_version=version, meta=meta)

    def _handle_replies(self, timeout_ms: int = 0) -> None:
        if not self.replay.poll(timeout_ms):
            return
        for _, msg in protocol.recv_ready(self.replay, self.rt.rejects, "replay", kinds={Kind.ACK}):
            meta = msg.meta
            if meta.get("refused"):
                raise RuntimeError(f"the rollout store refused {self.name}: {meta['refused']}")
            if meta.get("reregister"):
                if self.registered:
                    self.log.info("the rollout store does not know this actor (it dropped it, or restarted): "
                                  "registering again")
                self.registered = False
                if time.time() - self._last_register > 1.0:
                    self._register()
            elif meta.get("registered"):
                self.registered = True
                for seq, (arrays, part_meta, version) in sorted(self.unacked.items()):  # parts that were lost
                    self._send_part(seq, arrays, part_meta, version)
            elif "outcome" in meta:
                self.unacked.pop(int(meta.get("seq", -1)), None)
                if meta["outcome"] == "stale":
                    self.stale += 1
                    if self.stale <= LOG_FIRST_STALE:
                        self.log.info(f"the store dropped part of a rollout as stale (store at version "
                                      f"{msg.policy_version}): this actor was too slow for that version")
                elif meta["outcome"] == "rejected":
                    self.log.error(f"the store rejected part of a rollout: {meta.get('reason')}")

    def _tick(self) -> None:
        """Between env steps: stop check, replies, heartbeats, progress reports."""
        if self.rt.should_stop():
            raise StoppedError
        self._handle_replies(0)
        now = time.time()
        if now - self._last_heartbeat >= self.cfg.actor.heartbeat_s:
            protocol.send(self.replay, Kind.HEARTBEAT, sender=self.name, flags=zmq.NOBLOCK)
            self._last_heartbeat = now
            if not self.registered and now - self._last_register > 2.0:
                self._register()
        if now - self._last_report >= self.cfg.runner.log_every_s:
            self.rt.report(counters={"actor_env_steps": self.env_steps, "actor_rollouts": self.rollouts},
                           scalars={"actor/policy_version": self.weights.version})
            self._last_report = now

    def _wait_for_weights(self, newer_than: int) -> dict:
        """Block (heartbeating) until weights of a version above `newer_than` arrive."""
        while True:
            new = self.weights.poll(timeout_ms=50)
            if new is not None and self.weights.version > newer_than:
                return new
            self._tick()

    def _send_rollout(self, rollout: dict, version: int, env_steps: int, episodes: list) -> None:
        parts = split_rollout(rollout, int(self.cfg.actor.chunk_len))
        for i, arrays in enumerate(parts):
            meta = {"part": i, "parts": len(parts)}
            if i == len(parts) - 1:
                meta.update(env_steps=env_steps, episodes=episodes)
            self.seq += 1
            self.unacked[self.seq] = (arrays, meta, version)
            self._send_part(self.seq, arrays, meta, version)

    # -- collecting ---------------------------------------------------------------------------------
    def _allocate(self, obs: Any, zeros: bool) -> dict:
        b, t = self.env.num_envs, self.rollout_len
        new = np.zeros if zeros else np.empty
        action_shape, action_dtype = self.spec.action
        steps = {
            "obs": tree_map(lambda a: new((b, t, *a.shape[1:]), a.dtype), obs),
            "action": new((b, t, *action_shape), action_dtype),
            "log_prob": new((b, t), np.float32),
            "reward": new((b, t), np.float32),
            "terminated": new((b, t), bool),
            "truncated": new((b, t), bool),
        }
        return steps

    def _step(self, steps: dict, t: int, obs: Any) -> tuple:
        """Act in every env at step t, record it, and return what the env returned."""
        action, log_prob = self.policy.sample(obs)

        def record(dst, src):
            dst[:, t] = src
        tree_map(record, steps["obs"], obs)
        steps["action"][:, t], steps["log_prob"][:, t] = action, log_prob
        env_action = action if self.discrete else np.clip(action, -1.0, 1.0)
        next_obs, reward, terminated, truncated, info = self.env.step(env_action)
        steps["reward"][:, t], steps["terminated"][:, t], steps["truncated"][:, t] = reward, terminated, truncated
        self.env_steps += self.env.num_envs
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
        obs = reset_groups(self.env, seeds, group)
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
            ep_length += running
            ep_success |= running & info["success"]
            for i in np.flatnonzero(info["done"] & running):
                finals.append(_row(info["final_obs"], i))
                final_index.append((i, t))
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
        self._register()
        shape = (f"one episode per env, groups of {self.group_size}" if self.group_size
                 else f"rollouts of {self.rollout_len} steps")
        self.log.info(f"{self.env.num_envs} x {cfg.env.id} on {self.device}; {shape}")
        obs = self.env.reset(seed=seeding.seeds(cfg.runner.seed, "actor_envs", self.index, 0, count=self.env.num_envs))
        version = 0
        try:
            while True:
                self.policy.load_weights(self._wait_for_weights(newer_than=version))
                version = self.weights.version
                if self.group_size:
                    rollout, env_steps, episodes = self.collect_group_episodes(version)
                else:
                    rollout, obs, episodes = self.collect_steps(obs)
                    env_steps = self.env.num_envs * self.rollout_len
                self._send_rollout(rollout, version, env_steps, episodes)
                self.rollouts += 1
        except StoppedError:
            pass
        self.log.info(f"stopping ({self.rt.stop_reason}) after {self.rollouts} rollouts, {self.env_steps:,} env steps"
                      f"{f', {self.stale} stale part(s)' if self.stale else ''}")
        protocol.send(self.replay, Kind.BYE, sender=self.name, meta={"reason": self.rt.stop_reason},
                      flags=zmq.NOBLOCK)
        self.replay.close(linger=500)
        self.weights.close()
        self.env.close()
        self.rt.close()
        return 0
