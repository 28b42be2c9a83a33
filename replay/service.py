"""The off-policy replay service: ingests actors' chunks into the ring buffer, serves batches to the learner.

The process, its two sockets and its poll loop are replay/role.py's; the session with each actor is
wire/session.py's. This is what the buffer adds: chunks checked and stored, sample requests (each says
its batch_size) served when the rate limiter agrees, snapshots.
Flow control is by credits: an actor may only send a chunk it holds a credit
for. Credits come back when a chunk is stored and the rate limiter allows
more data, so with a paused learner the actors stop instead of filling RAM.

Reliability:
  * Exactly once. Chunks carry (actor name, sequence number). A chunk whose number the service has
    already stored is acknowledged and dropped (a resend after a reconnect); a jump in the numbers is
    counted as lost chunks. The numbers survive an actor's restart (the registration reply tells the new
    process where its predecessor stopped) and the service's restart (they are part of the snapshot).
  * Snapshots. Every replay.snapshot_every_s and on exit the buffer is written to <run_dir>/replay/
    (replay/snapshot.py). Each credit tells the actor the last chunk a snapshot holds ("durable_seq"); the
    actor keeps newer chunks and resends them if the service restarts from that snapshot, so a crash of
    the service loses nothing. A restarted service (same launch) or a resumed run starts from the newest
    intact snapshot.
  * Bounds and bad input. Every message is validated; chunks with NaN/Inf values, wrong dtypes or
    malformed metadata are rejected whole, counted and logged (rate-limited). Registered actors, queued
    sample requests and batch sizes are bounded by replay.max_actors / max_pending_samples / max_batch_size.
"""
from __future__ import annotations

import collections
import math
import secrets
import time
from pathlib import Path

import psutil
import zmq

from core import seeding, tree
from core.atomic_dir import CorruptError
from core.config import RunConfig
from replay.buffer import ReplayBuffer
from replay.rate_limiter import RateLimiter
from replay.role import ReplayRole
from replay.snapshot import (
    BackgroundSnapshot,
    SnapshotDone,
    list_snapshots,
    load_latest_snapshot,
    save_snapshot,
    snapshot_meta,
)
from wire import protocol, shared_memory
from wire.protocol import Kind
from wire.schema import ChunkError, ChunkSchema, Spec
from wire.session import ActorSession, Reply
from wire.shared_memory import SlotReader


def _spec_problem(spec: Spec, capacity: int, capacity_gb: float, chunk_len: int) -> str | None:
    """Why a registration's spec cannot make a buffer here (bad dtype, empty shape, too big), or None."""
    for name, (shape, dtype) in [*spec.obs.items(), ("action", spec.action)]:
        if dtype not in protocol.ALLOWED_DTYPES:
            return f"'{name}' has dtype {dtype!r}"
        if len(shape) > protocol.MAX_RANK or any(d <= 0 for d in shape):
            return f"'{name}' has shape {list(shape)}"
    per = ReplayBuffer.bytes_per_transition(spec, chunk_len)
    if capacity_gb > 0:
        capacity = int(capacity_gb * 1e9 / per)
        if capacity < chunk_len:
            return f"one transition takes {per:,.0f} bytes: replay.capacity_gb={capacity_gb} holds less than a chunk"
    need, total = capacity * per, psutil.virtual_memory().total
    if need > total:
        return f"a buffer of {capacity:,} transitions needs {need / 1e9:.1f} GB, this machine has {total / 1e9:.1f} GB"
    return None


def _episodes_problem(episodes) -> str | None:
    """Chunk metadata lists finished episodes as [return, length, success]; anything else is refused."""
    if not isinstance(episodes, list):
        return f"episodes is a {type(episodes).__name__}, not a list"
    for episode in episodes:
        if not (isinstance(episode, list) and len(episode) == 3
                and all(isinstance(x, (int, float)) and math.isfinite(x) for x in episode)):
            return f"episode entry {protocol._short(episode)} is not [return, length, success]"
    return None


class OffPolicyReplayService(ReplayRole):
    def __init__(self, cfg: RunConfig):
        rl = cfg.replay.rate_limit
        self.limiter = RateLimiter(rl.updates_per_step, cfg.replay.min_size, rl.slack_steps)
        # With periodic snapshots, actors keep each chunk until a snapshot holds it; without, nothing is ever
        # durable, so they may drop a chunk as soon as it is stored.
        self.periodic_snapshots = cfg.replay.snapshot_every_s > 0
        super().__init__(cfg, snapshots=self.periodic_snapshots, can_grant=self.limiter.can_insert)
        self.buffer: ReplayBuffer | None = None
        self.spec: Spec | None = None
        self.pending_samples: collections.deque = collections.deque()
        # The learner's session: the one route whose sample requests are served and counted as updates. Another
        # route takes it over only once this one is silent past replay.heartbeat_timeout_s with nothing pending
        # (a restarted learner); requests from any other sender or route are refused and counted.
        self.learner_route: list | None = None
        self.learner_seen = 0.0
        self.batches_undeliverable = 0  # batches whose requester's queue was full or gone: not counted as updates
        # A learner that keeps its own copy of the buffer (learner/device_replay.py) asks for rows instead of batches:
        # each reply carries the rows stored since the previous one (and one update's permission, as a batch does).
        # `rows_sent` is how far the learner's session has been sent; the epoch, new for every process, tells a
        # learner that this service's buffer is not the one its copy was made from (after a restart or restore).
        self.rows_epoch = secrets.token_hex(8)
        self.rows_sent: int | None = None  # absolute transition index; None: from the oldest live row
        self.rows_bytes_sent = 0
        self.learner_sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a full or gone peer fails (NOBLOCK)
        self.rng = seeding.generator(cfg.runner.seed, "replay_sample")
        self.episodes: collections.deque = collections.deque(maxlen=1000)  # until the next report
        self.snapshots = 0
        self.snapshot_failures = 0
        self.shm = SlotReader()  # same-host actors' shared-memory segments (wire/shared_memory.py)
        self.schemas: dict[str, ChunkSchema] = {}  # each registered actor's chunk schema: its spec and [B, T]
        self.torn_chunks = 0
        self.snapshot_dir = Path(cfg.runner.run_dir) / "replay"
        self.snapshot_writer = BackgroundSnapshot(self.snapshot_dir, cfg.replay.keep_snapshots, cfg.runner.run_id,
                                                  self.log)
        self.last_snapshot, self.last_wait_log = time.time(), 0.0
        if self._should_restore():
            self._restore()

    # -- actors (the session is replay/actor_port.py's; these are the buffer's parts of it) ----------
    def spec_problem(self, spec: Spec) -> str | None:
        if self.spec is None:
            problem = _spec_problem(spec, int(self.cfg.replay.capacity), self.cfg.replay.capacity_gb,
                                    self.cfg.actor.chunk_len)
            if not problem:
                self._create_buffer(spec)
            return problem
        return None if spec == self.spec else f"spec {spec} differs from the buffer's {self.spec}"

    def limits_problem(self, name: str, spec: Spec, meta: dict) -> str | None:
        """The actor's chunks: exactly its declared [B, T], within actor.chunk_len and env.num_envs."""
        try:
            self.schemas[name] = ChunkSchema.registered(spec, meta, int(self.cfg.actor.chunk_len),
                                                        int(self.cfg.env.num_envs))
        except ChunkError as e:
            self.schemas.pop(name, None)
            return str(e)
        return None

    def on_registered(self, name: str, meta: dict) -> dict:
        """A same-host actor offers its shared-memory segment: say whether we can read it (else it sends frames)."""
        if not isinstance(meta.get("shm"), dict):
            self.shm.detach(name)
            return {}
        schema = self.schemas.get(name)
        need = shared_memory.slot_bytes_for(schema.array_bytes()) if schema is not None else 0
        offer = meta["shm"]
        problem = self.shm.attach(name, offer.get("segment"), offer.get("token"), offer.get("pid"), offer.get("fd"),
                                  max_slot_bytes=need)
        return {"shm": problem is None, **({"shm_problem": problem} if problem else {})}

    def on_left(self, name: str) -> None:
        self.shm.detach(name)
        self.schemas.pop(name, None)

    def _capacity_for(self, spec: Spec) -> int:
        cfg = self.cfg.replay
        if cfg.capacity_gb > 0:
            return int(cfg.capacity_gb * 1e9 / ReplayBuffer.bytes_per_transition(spec, self.cfg.actor.chunk_len))
        return int(cfg.capacity)

    def _create_buffer(self, spec: Spec) -> ReplayBuffer:
        per = ReplayBuffer.bytes_per_transition(spec, self.cfg.actor.chunk_len)
        capacity = self._capacity_for(spec)
        self.spec = spec
        self.buffer = ReplayBuffer(spec, capacity, self.cfg.actor.chunk_len)
        self.log.info(f"replay buffer: capacity {capacity:,} transitions, {per:,.0f} bytes per transition "
                      f"(raw observation {spec.obs_bytes():,} bytes, stored once), "
                      f"{self.buffer.nbytes() / 1e9:.2f} GB preallocated")
        return self.buffer

    def on_chunk(self, actor: ActorSession, msg: protocol.Message) -> list[Reply]:
        episodes = msg.meta.get("episodes", [])
        shm = msg.meta.get("shm")
        try:
            # Large arrays may wait in the actor's shared-memory slot rather than in frames: views on them.
            arrays = msg.arrays if shm is None else self.shm.resolve(msg.sender, msg.seq, shm, msg.arrays)
            problem = _episodes_problem(episodes)
            if problem:
                raise ChunkError(problem)
            schema = self.schemas.get(msg.sender)
            if schema is None:
                raise ChunkError("no registered chunk schema for this sender")
            n = self.buffer.add_chunk(arrays, schema)  # checks the chunk against the schema before it writes anything
            del arrays  # no views on the slot may outlive this: the actor reuses it once we acknowledge
        # The other types are arrays of a kind the schema's checks did not expect.
        except (ChunkError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:  # ProtocolError too
            self.rt.rejects.reject(protocol.ProtocolError("bad_chunk", f"chunk #{msg.seq}: {e}"), msg.sender)
            return [self.sessions.rejected(actor, msg.seq)]
        if shm is not None and not self.shm.check(msg.sender, msg.seq, shm):
            # The actor wrote into the slot while we copied (it breaks the protocol: slots are reused only after
            # an acknowledgement). The rows are stored already; say so loudly rather than pretend.
            self.torn_chunks += 1
            self.log.error(f"{msg.sender}: chunk #{msg.seq}'s shared-memory slot changed while it was copied "
                           f"({self.torn_chunks} torn chunk(s) in all)")
        self.limiter.inserted += n
        self.episodes.extend(episodes)
        first = actor.last_seq + 1
        replies, gap = self.sessions.filed(actor, msg.seq)
        if gap:
            self.log.warning(f"{msg.sender}: chunks #{first}..#{msg.seq - 1} never arrived "
                             f"({self.sessions.lost_chunks} lost in all)")
        return replies

    # -- learner -----------------------------------------------------------------------------------
    def _learner_session(self, route: list, msg: protocol.Message) -> bool:
        if msg.sender != "learner":
            self.rt.rejects.reject(protocol.ProtocolError(
                "not_learner", f"sample request from {msg.sender!r}: only the learner samples"), msg.sender)
            return False
        now = time.time()
        if route != self.learner_route:
            live = now - self.learner_seen <= self.cfg.replay.heartbeat_timeout_s or self.pending_samples
            if self.learner_route is not None and live:
                self.rt.rejects.reject(protocol.ProtocolError(
                    "learner_session_live", "sample request from a second connection while the learner's "
                                            "session is live"), msg.sender)
                return False
            if self.learner_route is not None:
                self.log.info("a new learner connection takes over the learner's session")
            self.learner_route = route
            self.pending_samples.clear()
            self.rows_sent = None  # a new learner: its copy starts empty
        self.learner_seen = now
        return True

    def on_sample(self, route: list, msg: protocol.Message) -> None:
        if not self._learner_session(route, msg):
            return
        size = msg.meta.get("batch_size")  # the learner says how many transitions it trains on
        if type(size) is not int or not 1 <= size <= self.cfg.replay.max_batch_size:
            self.rt.rejects.reject(protocol.ProtocolError(
                "bad_meta", f"batch_size {protocol._short(size)} is not an int in [1, replay.max_batch_size="
                            f"{self.cfg.replay.max_batch_size}]"), msg.sender)
            return
        rows = msg.meta.get("rows", False)
        if type(rows) is not bool:
            self.rt.rejects.reject(protocol.ProtocolError("bad_meta", f"rows {protocol._short(rows)} is not a bool"),
                                   msg.sender)
            return
        if len(self.pending_samples) >= self.cfg.replay.max_pending_samples:
            # More requests than a learner keeps in flight: stale ones of a learner that restarted, or a
            # misbehaving peer. Drop the oldest.
            self.pending_samples.popleft()
            self.rt.rejects.reject(protocol.ProtocolError(
                "too_many_requests", f"more than replay.max_pending_samples={self.cfg.replay.max_pending_samples} "
                                     "sample requests queued; dropped the oldest"), msg.sender)
        self.pending_samples.append((route, size, msg.seq, rows))

    def _serve_samples(self) -> None:
        while self.pending_samples and self.buffer is not None and self.limiter.can_sample():
            route, size, seq, rows = self.pending_samples.popleft()
            meta = {"env_steps": self.limiter.inserted, "size": len(self.buffer)}
            if rows:
                kind, arrays, end = Kind.ROWS, *self._rows_reply(meta)
            else:
                kind, arrays, end = Kind.BATCH, self.buffer.sample(size, self.rng), None
            try:
                protocol.send(self.learner_sock, kind, arrays, sender="replay", seq=seq, route=route, meta=meta,
                              flags=zmq.NOBLOCK)
            except zmq.ZMQError:  # zmq.Again (the requester does not read its batches) or EHOSTUNREACH (gone)
                self.batches_undeliverable += 1
                continue  # rows not sent are sent with the next reply: rows_sent did not move
            if end is not None:
                self.rows_sent = end
                self.rows_bytes_sent += sum(a.nbytes for a in tree.flatten(arrays).values())
            self.limiter.updates += 1
        self.actors.send(self.sessions.grant_owed())

    def _rows_reply(self, meta: dict) -> tuple[dict, int]:
        """The rows the learner's copy lacks, at most replay.rows_max_mb of them, and where they end; `meta` gains
        their places and this process's epoch."""
        rows_meta, arrays, end = self.buffer.rows_reply(self.rows_sent, self.cfg.replay.rows_max_mb * 1e6)
        meta["rows"] = {"epoch": self.rows_epoch, **rows_meta}
        return arrays, end

    # -- snapshots ---------------------------------------------------------------------------------
    def _service_state(self) -> dict:
        return {"limiter": self.limiter.state(), **self.sessions.state()}

    def _snapshot(self, background: bool = False) -> None:
        """Write a snapshot: in a forked child when `background` (finished in _finish_snapshot), else here."""
        if self.buffer is None:
            return
        state = self._service_state()
        if background and self.snapshot_writer.start(self.buffer, state):
            return
        t0 = time.time()
        try:
            save_snapshot(self.snapshot_dir, self.buffer, state, keep=self.cfg.replay.keep_snapshots,
                          run_id=self.cfg.runner.run_id)
        except OSError as e:  # a full disk: the previous snapshots are untouched (written whole or not at all)
            self.snapshot_failures += 1
            self.log.error(f"snapshot not written ({e.strerror or e}): the previous snapshot stays the newest")
            return
        self._snapshot_written(SnapshotDone(ok=True, seconds=time.time() - t0, service=state,
                                            transitions=len(self.buffer)), "")

    def _finish_snapshot(self, done: SnapshotDone | None) -> None:
        """Take note of a background snapshot that ended (the child logs its own errors)."""
        if done is None:
            return
        if done.ok:
            self._snapshot_written(done, " in the background")
        else:
            self.snapshot_failures += 1
            self.log.error(f"background snapshot failed after {done.seconds:.2f} s: actors keep their chunks "
                           "until a later snapshot holds them")

    def _snapshot_written(self, done: SnapshotDone, how: str) -> None:
        # Actors may now drop the chunks the snapshot holds: those up to each one's last_seq when it was taken.
        self.sessions.snapshot_written(done.service)
        self.snapshots += 1
        newest = list_snapshots(self.snapshot_dir)
        self.log.info(f"snapshot written{how}: {newest[0].name if newest else '?'} ({done.transitions:,} "
                      f"transitions, {done.service['limiter'].get('inserted', 0):,} env steps, {done.seconds:.2f} s)")

    def _should_restore(self) -> bool:
        """Restore when resuming, or when this process replaces a replay service of the same launch."""
        if self.cfg.runner.resume:
            return True
        newest = list_snapshots(self.snapshot_dir)
        if not newest or not self.cfg.runner.run_id:
            return False
        try:
            return snapshot_meta(newest[0]).get("run_id") == self.cfg.runner.run_id
        except CorruptError:  # load_latest_snapshot reports it and falls back to the previous one
            return True

    def _restore(self) -> None:
        t0 = time.time()
        found = load_latest_snapshot(self.snapshot_dir, self._create_buffer, self.log)
        if found is None:
            self.spec = self.buffer = None
            self.log.warning(f"no usable replay snapshot in {self.snapshot_dir}: starting with an empty buffer")
            return
        self.buffer, snapshot = found
        service = snapshot.service
        self.limiter.inserted = int(service["limiter"]["inserted"])
        self.limiter.updates = int(service["limiter"]["updates"])
        self.sessions.load_state(service, time.time())
        snapshot.arrays.clear()  # release the memory maps
        self.log.info(f"restored {snapshot.path.name}: {len(self.buffer):,} transitions, "
                      f"{self.limiter.inserted:,} env steps, {len(self.sessions.actors)} actor sequence(s), "
                      f"{time.time() - t0:.2f} s")

    # -- the loop's turns (replay/role.py) -------------------------------------------------------------
    def tick(self) -> None:
        self._serve_samples()
        now = time.time()
        self._finish_snapshot(self.snapshot_writer.poll())
        if (self.periodic_snapshots and not self.snapshot_writer.running
                and now - self.last_snapshot >= self.cfg.replay.snapshot_every_s):
            self._snapshot(background=self.cfg.replay.background_snapshots)
            self.last_snapshot = now = time.time()
        waiting = [n for n, a in self.sessions.connected().items() if a.waiting_since and now - a.waiting_since > 30]
        if waiting and now - self.last_wait_log > 60:
            self.log.info(f"{', '.join(waiting)} waiting: the learner is behind the update-to-data ratio "
                          f"(debt {self.limiter.debt():.0f} updates)")
            self.last_wait_log = now

    def finish(self) -> None:
        self.log.info(f"stopping ({self.rt.stop_reason}); stored {self.limiter.inserted:,} env steps")
        if self.snapshot_writer.running and self.cfg.replay.snapshot_on_exit:
            self.snapshot_writer.stop()  # it is older than the exit snapshot: stop it rather than wait for it
        self._finish_snapshot(self.snapshot_writer.wait(5))
        if self.cfg.replay.snapshot_on_exit:
            self._snapshot()

    def report(self) -> None:
        episodes = list(self.episodes)
        self.episodes.clear()
        connected = self.sessions.connected()
        self.rt.report(
            counters={"env_steps": self.limiter.inserted, "updates_served": self.limiter.updates,
                      **self.sessions.counters(), "snapshots": self.snapshots,
                      "snapshot_failures": self.snapshot_failures, "torn_chunks": self.torn_chunks,
                      "batches_undeliverable": self.batches_undeliverable, "rows_bytes_sent": self.rows_bytes_sent},
            scalars={"replay/size": len(self.buffer) if self.buffer else 0,
                     "replay/actors": len(connected),
                     "replay/actors_waiting": sum(1 for a in connected.values() if a.owed_credits),
                     "replay/mem_gb": self.buffer.nbytes() / 1e9 if self.buffer else 0.0},
            episodes=episodes,
            actors={name: {"chunks": a.chunks, "last_seq": a.last_seq, "lost": a.lost, "waiting": bool(a.owed_credits)}
                    for name, a in connected.items()})

