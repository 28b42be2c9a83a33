"""The actor process: steps a vector of envs with the newest policy and pushes chunks to replay.

Its loop never blocks on the learner: new weights are picked up when they have
arrived (a non-blocking drain of the weights subscription). It blocks only
when it holds no credit from the replay service, which is the back-pressure
that keeps memory bounded when the learner falls behind.

Nothing is lost when the replay service restarts. Every chunk carries (actor name, sequence number).
The actor keeps each chunk it sent until the service says a snapshot holds it ("durable_seq" in every
credit message), up to actor.resend_buffer_mb; after re-registering it resends the chunks the service
does not have, and the service stores each sequence number once. A replacement actor (the launcher
restarts a crashed one) continues its predecessor's sequence, and acts with the newest weights at once
when it joins a run that is already training.
"""
from __future__ import annotations

import collections
import os
import time
from typing import Callable

import numpy as np
import zmq

from actors.chunk import ChunkBuilder
from actors.weights import WeightsSubscriber
from core import seeding
from core.config import RunConfig
from core.devices import actor_device
from core.net import endpoint, make_socket
from core.role_runtime import RoleRuntime
from core.roles import Actor, Policy
from envs import make_vector_env
from replay.buffer import Spec, flatten
from wire import protocol, shared_memory
from wire.protocol import Kind


def observation_spec(obs_space, action_space) -> Spec:
    import gymnasium as gym

    if isinstance(obs_space, gym.spaces.Dict):
        obs = {k: (tuple(s.shape), str(s.dtype)) for k, s in flatten(dict(obs_space.spaces), "").items()}
    else:
        obs = {"": (tuple(obs_space.shape), str(obs_space.dtype))}
    if isinstance(action_space, gym.spaces.Discrete):
        action = ((), "int64")
    else:
        action = (tuple(action_space.shape), "float32")
    return Spec(obs=obs, action=action)


class ChunkedActor(Actor):
    def __init__(self, cfg: RunConfig, index: int, make_policy: Callable[..., Policy]):
        self.cfg, self.index = cfg, index
        self.name = f"actor-{index}"
        self.rt = RoleRuntime(cfg, "actor", self.name)
        self.log = self.rt.log
        self.device = actor_device(cfg.actor, index)
        self.heartbeat_s, self.log_every_s = float(cfg.actor.heartbeat_s), float(cfg.runner.log_every_s)
        # actor.pipeline_stages groups of envs take turns: while one group steps on the CPU, the policy computes
        # the next actions of the other on the actor's device (see run()).
        stages = int(cfg.actor.pipeline_stages)
        self.envs = [make_vector_env(cfg.env, num_envs=cfg.env.num_envs // stages) for _ in range(stages)]
        self.env = self.envs[0]
        self.spec = observation_spec(self.env.single_observation_space, self.env.single_action_space)
        self.policy = make_policy(self.env.single_observation_space, self.env.single_action_space, self.device,
                                  seed=seeding.seed_of(cfg.runner.seed, "actor_policy", index))
        self.weights = WeightsSubscriber(self.rt.ctx, endpoint(cfg, "weights", bind=False))
        self.replay = make_socket(self.rt.ctx, zmq.DEALER, curve="client")
        self.replay.connect(endpoint(cfg, "replay_actors", bind=False))
        self.credits = 0
        self.seq = 0  # sequence number of the last chunk sent
        # Sent chunks no snapshot holds yet, oldest first: seq -> (arrays, meta, bytes).
        self.unacked: collections.OrderedDict[int, tuple[dict, dict, int]] = collections.OrderedDict()
        self.unacked_bytes = 0
        self.stored_seq = 0  # the replay service has stored every chunk up to this one
        self.durable_seq = 0  # ... and a snapshot of it holds every chunk up to this one
        self.resent = 0  # chunks sent again after a re-registration
        self.released_unsnapshotted = 0  # stored chunks dropped from the resend buffer to respect its bound
        self.env_steps = 0
        self.registered = False
        self._last_register = 0.0
        self.skip_random_steps = False  # True once the first weights show the run is already training
        self._weights_rejected_logged = 0
        self.slots = self._make_slots()  # shared-memory slots for large chunks, if this host allows
        self.slots_confirmed: bool | None = None  # whether the replay service can read them (None: not asked yet)

    def _make_slots(self) -> shared_memory.SlotWriter | None:
        """Slots for the chunks in flight (credits + 1), sized for one chunk's large arrays; None for small chunks."""
        if not self.cfg.actor.shared_memory or not shared_memory.available():
            return None
        b, t = self.env.num_envs, self.cfg.actor.chunk_len  # a chunk holds one env group
        sizes = [b * (t + 1) * int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in self.spec.obs.values()]
        shape, dtype = self.spec.action
        sizes += [b * t * int(np.prod(shape)) * np.dtype(dtype).itemsize, b * t * 4, b * t, b * t]
        slot_bytes = shared_memory.slot_bytes_for(sizes)
        if slot_bytes <= shared_memory.slot_bytes_for([]):
            return None  # nothing in a chunk is large enough to be worth it (state observations)
        name = shared_memory.segment_name(self.cfg.runner.run_id, self.name, os.getpid())
        try:
            return shared_memory.SlotWriter(name, int(self.cfg.actor.credits) + 1, slot_bytes)
        except OSError as e:
            self.log.warning(f"no shared memory for chunks ({e}): sending them through the socket")
            return None

    # -- talking to the replay service -------------------------------------------------------------
    # Every send to the service is non-blocking: while it is down, ZeroMQ queues messages up to the socket's
    # high-water mark, and a blocking send past that would hang this process (and its shutdown) for good.
    def _register(self) -> None:
        self._last_register = time.time()
        try:
            meta = {"spec": self.spec.to_meta(), "pid": os.getpid(), "device": self.device}
            if self.slots is not None:
                meta["shm"] = {"segment": self.slots.name, "token": self.slots.token}
            protocol.send(self.replay, Kind.REGISTER, sender=self.name, flags=zmq.NOBLOCK, meta=meta)
        except zmq.Again:
            pass  # the service is unreachable; _wait_for_credit tries again

    def _handle_replay_messages(self, timeout_ms: int) -> None:
        if not self.replay.poll(timeout_ms):
            return
        for _, msg in protocol.recv_ready(self.replay, self.rt.rejects, "replay", kinds={Kind.CREDIT}):
            try:
                self._on_credit_message(msg.meta)
            except (KeyError, TypeError, ValueError) as e:
                self.rt.rejects.reject(protocol.ProtocolError("bad_meta", f"credit message: {e}"), "replay")

    def _on_credit_message(self, meta: dict) -> None:
        if meta.get("refused"):
            raise RuntimeError(f"replay service refused {self.name}: {meta['refused']}")
        if meta.get("reregister"):
            # One reply per message sent while the service did not know us: register once, not once each.
            if self.registered or time.time() - self._last_register > 1.0:
                self.log.info("replay service does not know this actor (it restarted?): registering again")
                self.registered = False
                self._register()
            return
        if meta.get("registered"):
            self._on_registered(meta)
        elif self.registered:
            self._on_acks(int(meta["last_seq"]), int(meta["durable_seq"]))
            if "rejected_seq" in meta and self.slots is not None:
                self.slots.release(int(meta["rejected_seq"]))  # the service will not read that slot again
            self.credits += int(meta.get("credits", 0))

    def _on_registered(self, meta: dict) -> None:
        """The reply to a registration: fresh credits, and resend whatever the service does not hold."""
        stored = int(meta["last_seq"])
        self.registered = True
        self.credits = int(meta["credits"])
        # A replacement process continues its predecessor's sequence; a service restarted from a snapshot
        # may know less than we were told before, so its word replaces ours.
        self.seq = max(self.seq, stored)
        self.stored_seq, self.durable_seq = stored, min(int(meta["durable_seq"]), stored)
        self._release()
        if self.slots is not None:
            confirmed = meta.get("shm") is True
            if confirmed != self.slots_confirmed:
                self.log.info("chunks go through shared memory (/dev/shm)" if confirmed else
                              f"chunks go through the socket: {meta.get('shm_problem', 'the service did not confirm')}")
            self.slots_confirmed = confirmed
            self.slots.release_through(stored)
        resend = [(seq, entry) for seq, entry in self.unacked.items() if seq > stored]
        if resend:
            self.log.info(f"registered; resending {len(resend)} chunk(s) the replay service does not hold "
                          f"(#{resend[0][0]}..#{resend[-1][0]})")
        for seq, (arrays, chunk_meta, _) in resend:
            if not self._send_chunk(seq, arrays, chunk_meta):
                break
            self.resent += 1

    def _on_acks(self, stored: int, durable: int) -> None:
        self.stored_seq = max(self.stored_seq, stored)
        if self.slots is not None:
            self.slots.release_through(self.stored_seq)
        self.durable_seq = max(self.durable_seq, min(durable, self.stored_seq))
        self._release()

    def _release(self) -> None:
        """Drop chunks a snapshot holds; then, over the memory bound, the oldest ones the service has stored.
        A chunk the service has not stored is never dropped (there are at most `credits` of those)."""
        limit = self.cfg.actor.resend_buffer_mb * 2**20
        while self.unacked:
            seq, (_, _, nbytes) = next(iter(self.unacked.items()))
            if seq > self.durable_seq and (self.unacked_bytes <= limit or seq > self.stored_seq):
                break
            if seq > self.durable_seq:
                self.released_unsnapshotted += 1
            del self.unacked[seq]
            self.unacked_bytes -= nbytes

    def _send_chunk(self, seq: int, arrays: dict, meta: dict) -> bool:
        """Send one chunk (it stays in the resend buffer); False if the service is unreachable."""
        placed = None
        if self.slots is not None and self.slots_confirmed:
            arrays, placed = self.slots.place(arrays, seq)
            if placed is not None:
                meta = {**meta, "shm": placed}
        try:
            protocol.send(self.replay, Kind.CHUNK, arrays, sender=self.name, seq=seq, flags=zmq.NOBLOCK,
                          policy_version=meta["policy_version"], meta=meta)
        except zmq.Again:
            if placed is not None:
                self.slots.release(seq)
            # The queue towards the service is full: it is down. Stop producing (no credit) and register again
            # until it answers; the chunk is resent then.
            self.credits, self.registered = 0, False
            return False
        self.credits -= 1
        return True

    def _wait_for_credit(self) -> None:
        waited_since = time.time()
        said = False
        while self.credits <= 0 and not self.rt.should_stop():
            self._handle_replay_messages(100)
            self._housekeeping()
            if not said and time.time() - waited_since > 30:
                self.log.info("waiting for the replay service (no credit: learner behind or replay down)")
                said = True
            if not self.registered and time.time() - self._last_register > 2:
                self._register()

    def _housekeeping(self) -> None:
        now = time.time()
        if now - self._last_heartbeat >= self.heartbeat_s:
            try:
                protocol.send(self.replay, Kind.HEARTBEAT, sender=self.name, flags=zmq.NOBLOCK)
            except zmq.Again:
                pass  # the service is gone and the queue is full: nothing to tell it anyway
            self._last_heartbeat = now
        if now - self._last_report >= self.log_every_s:
            if self.weights.rejected > self._weights_rejected_logged:
                self.log.warning(f"rejected {self.weights.rejected - self._weights_rejected_logged} malformed "
                                 f"weights message(s) ({self.weights.rejected} in all)")
                self._weights_rejected_logged = self.weights.rejected
            self.rt.report(counters={"actor_env_steps": self.env_steps, "chunks_sent": self.seq,
                                     "chunks_resent": self.resent, "weights_rejected": self.weights.rejected,
                                     "released_unsnapshotted": self.released_unsnapshotted,
                                     "chunks_shared_memory": self.slots.placed if self.slots else 0},
                           scalars={"actor/policy_version": self.weights.version,
                                    "actor/resend_buffer_mb": self.unacked_bytes / 2**20,
                                    "actor/resend_buffer_chunks": len(self.unacked)})
            self._last_report = now

    def _on_new_weights(self, weights: dict) -> None:
        """Act with new weights, unless they hold NaN/Inf or do not fit the policy: then keep the old ones."""
        flat = protocol.flatten_arrays(weights)
        problem = next((f"'{k}' holds NaN or Inf" for k, v in flat.items()
                        if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()), None)
        if problem is None:
            try:
                self.policy.load_weights(weights)
            except (ValueError, RuntimeError, KeyError, TypeError) as e:
                problem = f"they do not fit the policy ({type(e).__name__}: {e})"
        if problem is not None:
            self.rt.rejects.reject(protocol.ProtocolError("bad_weights", f"weights version {self.weights.version} "
                                                          f"ignored: {problem}"), "learner")
            return
        if not self.skip_random_steps and self.weights.updates > 0:
            # The first weights we see are already trained: this actor replaces one that crashed, or the run
            # resumed. Uniform random actions would only dilute the replay with data the run is past.
            self.skip_random_steps = True
            self.log.info(f"acting with weights version {self.weights.version} "
                          f"({self.weights.updates:,} learner updates): no random warm-up")

    # -- the loop ----------------------------------------------------------------------------------
    def _start_actions(self, env, obs):
        """Begin choosing actions for one env group; returns a function that gives them (see Policy.start_act)."""
        if (self.env_steps < self._random_steps and not self.skip_random_steps) or self.weights.version == 0:
            action = np.stack([env.single_action_space.sample() for _ in range(env.num_envs)])
            return lambda: action
        return self.policy.start_act(obs)

    def _send_full_chunk(self, chunk: ChunkBuilder, episodes: list) -> bool:
        """Wait for credit and send one group's full chunk; False if the run is stopping."""
        self._wait_for_credit()
        if self.rt.should_stop():
            return False
        self.seq += 1
        meta = {"policy_version": self.weights.version, "episodes": list(episodes)}
        arrays = chunk.finish()
        nbytes = sum(a.nbytes for a in protocol.flatten_arrays(arrays).values())
        self.unacked[self.seq] = (arrays, meta, nbytes)
        self.unacked_bytes += nbytes
        self._send_chunk(self.seq, arrays, meta)
        episodes.clear()
        return True

    def run(self) -> int:
        cfg = self.cfg
        self._last_heartbeat = self._last_report = 0.0
        self._register()
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
            chunk = ChunkBuilder(env.num_envs, cfg.actor.chunk_len, self.spec.action[0], self.spec.action[1])
            chunk.start(obs)
            groups.append({"env": env, "obs": obs, "chunk": chunk, "episodes": [],
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
                self._handle_replay_messages(0)
                self._housekeeping()
            for group in groups:
                # This group's actions were started at the end of its last turn; with two groups, the other
                # group's env steps ran meanwhile, so a GPU policy has usually finished them by now.
                env, action = group["env"], group["actions"]()
                obs, reward, terminated, truncated, info = env.step(action)
                group["obs"] = obs
                group["actions"] = self._start_actions(env, obs)
                self.env_steps += env.num_envs
                for b in np.flatnonzero(info["done"]):
                    group["episodes"].append([float(info["episode_return"][b]), int(info["episode_length"][b]),
                                              bool(info["episode_success"][b])])
                if group["chunk"].add(action, reward, terminated, truncated, obs, info["final_obs"]):
                    if not self._send_full_chunk(group["chunk"], group["episodes"]):
                        running = False
                        break
                    group["chunk"].start(obs)
        self.log.info(f"stopping ({self.rt.stop_reason}) after {self.env_steps:,} env steps")
        protocol.send(self.replay, Kind.BYE, sender=self.name, meta={"reason": self.rt.stop_reason},
                      flags=zmq.NOBLOCK)
        self.replay.close(linger=500)
        if self.slots is not None:
            self.slots.close()
        self.weights.close()
        for env in self.envs:
            env.close()
        self.rt.close()
        return 0
