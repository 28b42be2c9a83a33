"""The off-policy actor process: steps a vector of envs with the newest policy and pushes chunks to replay.

This is the env loop; the session with the replay service (registration, credits, the resend buffer,
shared-memory slots, heartbeats) is the replay writer's (actors/replay_writer.py, wire/session.py).
Its loop never blocks on the learner: new weights are picked up when they have arrived (a non-blocking
drain of the weights subscription). It blocks only in `writer.add`, when it holds no credit from the
replay service: the back-pressure that keeps memory bounded when the learner falls behind.

Nothing is lost when the replay service restarts: the writer keeps each chunk until a snapshot holds it
and resends what a restarted service lacks; the service stores each sequence number once. A replacement
actor (the launcher restarts a crashed one) continues its predecessor's sequence, and acts with the
newest weights at once when it joins a run that is already training.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from actors.chunk import ChunkBuilder
from actors.process import ActorProcess
from core import seeding, tree
from core.config import RunConfig
from core.roles import Policy
from envs import make_vector_env
from wire import protocol, shared_memory
from wire.schema import ChunkSchema, Spec


class ChunkedActor(ActorProcess):
    def __init__(self, cfg: RunConfig, index: int, make_policy: Callable[..., Policy]):
        super().__init__(cfg, index)
        # actor.pipeline_stages groups of envs take turns: while one group steps on the CPU, the policy computes
        # the next actions of the other on the actor's device (see run()).
        stages = int(cfg.actor.pipeline_stages)
        self.envs = [make_vector_env(cfg.env, num_envs=cfg.env.num_envs // stages) for _ in range(stages)]
        self.env = self.envs[0]
        self.spec = Spec.from_spaces(self.env.single_observation_space, self.env.single_action_space)
        self.schema = ChunkSchema(self.spec, int(cfg.actor.chunk_len), self.env.num_envs)  # a chunk holds one group
        self.policy = make_policy(self.env.single_observation_space, self.env.single_action_space, self.device,
                                  seed=seeding.seed_of(cfg.runner.seed, "actor_policy", index))
        self.connect(self.spec, slots=self._make_slots())
        self.skip_random_steps = False  # True once the first weights show the run is already training

    def _make_slots(self) -> shared_memory.SlotWriter | None:
        """Slots for the chunks in flight (credits + 1), sized for one chunk's large arrays; None for small chunks."""
        if not self.cfg.actor.shared_memory or not shared_memory.available():
            return None
        slot_bytes = shared_memory.slot_bytes_for(self.schema.array_bytes())
        if slot_bytes <= shared_memory.slot_bytes_for([]):
            return None  # nothing in a chunk is large enough to be worth it (state observations)
        name = shared_memory.segment_name(self.cfg.runner.run_id, self.name, os.getpid())
        try:
            return shared_memory.SlotWriter(name, int(self.cfg.actor.credits) + 1, slot_bytes)
        except OSError as e:
            self.log.warning(f"no shared memory for chunks ({e}): sending them through the socket")
            return None

    def _on_new_weights(self, weights: dict) -> None:
        """Act with new weights, unless they hold NaN/Inf or do not fit the policy: then keep the old ones."""
        problem = next((f"'{k}' holds NaN or Inf" for k, v in tree.flatten(weights).items()
                        if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()), None)
        if problem is None:
            try:
                self.policy.load_weights(weights)
            except (ValueError, RuntimeError, KeyError, TypeError) as e:
                problem = f"they do not fit the policy ({type(e).__name__}: {e})"
        if problem is not None:
            self.rt.rejects.reject(protocol.ProtocolError("bad_weights", f"weights version {self.weights.policy_version} "
                                                          f"ignored: {problem}"), "learner")
            return
        if not self.skip_random_steps and self.weights.updates > 0:
            # The first weights we see are already trained: this actor replaces one that crashed, or the run
            # resumed. Uniform random actions would only dilute the replay with data the run is past.
            self.skip_random_steps = True
            self.log.info(f"acting with weights version {self.weights.policy_version} "
                          f"({self.weights.updates:,} learner updates): no random warm-up")

    # -- the loop ----------------------------------------------------------------------------------
    def _start_actions(self, env, obs):
        """Begin choosing actions for one env group; returns a function that gives them (see Policy.start_act)."""
        if (self.env_steps < self._random_steps and not self.skip_random_steps) or self.weights.policy_version == 0:
            action = np.stack([env.single_action_space.sample() for _ in range(env.num_envs)])
            return lambda: action
        return self.policy.start_act(obs)

    def run(self) -> int:
        cfg = self.cfg
        self.writer.register()
        stages = len(self.envs)
        self.log.info(f"{cfg.env.num_envs} x {cfg.env.id} on {self.device}; chunks of {cfg.actor.chunk_len} steps"
                      + (f"; {stages} env groups take turns with inference" if stages > 1 else ""))
        self._random_steps = int(cfg.actor.random_steps)  # config lookups cost ~10 us: none inside the step loop
        poll_every = float(cfg.actor.weights_poll_s)
        next_poll = 0.0
        # One entry per env group: its current observation, chunk in the making, finished episodes, and the
        # actions being computed for it. Each env of each group has a reset stream of its own.
        groups = []
        for g, env in enumerate(self.envs):
            obs = env.reset(seed=seeding.seeds(cfg.runner.seed, "actor_envs", self.index, g, count=env.num_envs))
            env.single_action_space.seed(seeding.seed_of(cfg.runner.seed, "actor_random_actions", self.index, g))
            chunk = ChunkBuilder(self.schema)
            chunk.start(obs)
            groups.append({"env": env, "chunk": chunk, "episodes": [],
                           "actions": self._start_actions(env, obs)})
        running = True
        while running and not self.rt.should_stop():
            # Sockets are looked at every `actor.weights_poll_s` (10 ms), not every env step: a fast env
            # would otherwise spend a tenth of its time asking sockets that have nothing to say.
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + poll_every
                new = self.weights.poll()
                if new is not None:
                    self._on_new_weights(new)
                self.writer.poll()
                self.report()
            for group in groups:
                # This group's actions were started at the end of its last turn; with two groups, the other
                # group's env steps ran meanwhile, so a GPU policy has usually finished them by now.
                env, action = group["env"], group["actions"]()
                obs, reward, terminated, truncated, info = env.step(action)
                group["actions"] = self._start_actions(env, obs)
                self.env_steps += env.num_envs
                for b in np.flatnonzero(info["done"]):
                    group["episodes"].append([float(info["episode_return"][b]), int(info["episode_length"][b]),
                                              bool(info["episode_success"][b])])
                if group["chunk"].add(action, reward, terminated, truncated, obs, info["final_obs"]):
                    meta = {"policy_version": self.weights.policy_version, "episodes": group["episodes"]}
                    if not self.writer.add(group["chunk"].finish(), meta, self.weights.policy_version):
                        running = False
                        break
                    group["chunk"].start(obs)
                    group["episodes"] = []
        for env in self.envs:
            env.close()
        return self.close(f"{self.env_steps:,} env steps")
