"""Off-policy replay storage: preallocated numpy rings, observations stored once.

A chunk row of T steps brings T+1 observations (o_0 .. o_T) and one extra
"final" observation for each episode that ended inside it. They go into the
observation ring once; each transition keeps two integers pointing at its
observation and its next observation. So images are stored once (plus about
1/T for the bootstrap observation at each chunk end), not twice as in a
(s, a, r, s') table.

Indices are absolute (they only grow); a slot is `index % capacity`. Rows are
evicted oldest first, as a whole, when either ring would overwrite them, so a
live transition never points at a reused observation slot.
"""
from __future__ import annotations

import collections
import math

import numpy as np

from wire.schema import ChunkError, ChunkSchema, Spec, flat_obs, nested_obs


class ReplayBuffer:
    def __init__(self, spec: Spec, capacity: int, chunk_len: int):
        if capacity <= 0:
            raise ValueError("replay capacity must be positive")
        self.spec, self.capacity, self.chunk_len = spec, int(capacity), int(chunk_len)
        self.schema = ChunkSchema(spec)  # chunks of any [B, T]
        # Room for the bootstrap observation of every row and one episode end per row, plus one spare row.
        self.obs_capacity = math.ceil(self.capacity * (chunk_len + 2) / chunk_len) + 2 * (chunk_len + 1)
        self.obs = {k: np.zeros((self.obs_capacity, *s), dtype=d) for k, (s, d) in spec.obs.items()}
        a_shape, a_dtype = spec.action
        self.action = np.zeros((self.capacity, *a_shape), dtype=a_dtype)
        self.reward = np.zeros(self.capacity, np.float32)
        self.terminated = np.zeros(self.capacity, bool)
        self.obs_index = np.zeros(self.capacity, np.int64)
        self.next_obs_index = np.zeros(self.capacity, np.int64)
        self.obs_written = 0  # absolute count of observation slots ever written
        self.written = 0  # absolute count of transitions ever written
        self.start = 0  # absolute index of the oldest live transition
        self._rows: collections.deque = collections.deque()  # (first transition, first obs slot) per stored row

    @staticmethod
    def step_bytes(spec: Spec) -> int:
        """What one transition holds besides its observation: action, reward (4), terminated (1), two indices (16)."""
        return spec.action_bytes() + 4 + 1 + 16

    @staticmethod
    def bytes_per_transition(spec: Spec, chunk_len: int) -> float:
        return spec.obs_bytes() * (chunk_len + 2) / chunk_len + ReplayBuffer.step_bytes(spec)

    def __len__(self) -> int:
        return self.written - self.start

    def nbytes(self) -> int:
        arrays = [*self.obs.values(), self.action, self.reward, self.terminated, self.obs_index, self.next_obs_index]
        return sum(a.nbytes for a in arrays)

    def add_chunk(self, arrays: dict, schema: ChunkSchema | None = None) -> int:
        """Check a chunk against `schema` (its actor's registered one; by default any [B, T] of the spec) -- raises
        ChunkError before anything is written -- then store it; returns the number of transitions added."""
        if schema is not None and schema.spec != self.spec:
            raise ChunkError("the chunk's schema is not of this buffer's spec")
        (schema or self.schema).check(arrays)
        obs = flat_obs(arrays["obs"])
        finals = flat_obs(arrays["final_obs"]) if "final_obs" in arrays else {}
        final_index = arrays.get("final_index", np.zeros((0, 2), np.int32))
        done = arrays["terminated"] | arrays["truncated"]
        B, T = arrays["reward"].shape
        for b in range(B):
            ends = np.flatnonzero(done[b])  # steps of row b that ended an episode, in time order
            rows_final = np.flatnonzero(final_index[:, 0] == b) if len(final_index) else np.zeros(0, int)
            rows_final = rows_final[np.argsort(final_index[rows_final, 1])]
            n_obs = T + 1 + len(ends)
            self._make_room(T, n_obs)
            base = self.obs_written
            slots = (base + np.arange(n_obs)) % self.obs_capacity
            for k in self.spec.obs:
                self.obs[k][slots[: T + 1]] = obs[k][b]
                if len(ends):
                    self.obs[k][slots[T + 1:]] = finals[k][rows_final]
            next_index = base + 1 + np.arange(T, dtype=np.int64)
            next_index[ends] = base + T + 1 + np.arange(len(ends))
            t_slots = (self.written + np.arange(T)) % self.capacity
            self.obs_index[t_slots] = base + np.arange(T)
            self.next_obs_index[t_slots] = next_index
            self.action[t_slots] = arrays["action"][b]
            self.reward[t_slots] = arrays["reward"][b]
            self.terminated[t_slots] = arrays["terminated"][b]
            self._rows.append((self.written, base))
            self.written += T
            self.obs_written += n_obs
        return B * T

    def _make_room(self, n_transitions: int, n_obs: int) -> None:
        """Evict whole rows, oldest first, until both rings have room for the new row."""
        if n_transitions > self.capacity or n_obs > self.obs_capacity:
            raise ChunkError(f"a chunk row of {n_transitions} steps does not fit a buffer of {self.capacity}")
        while self._rows:
            first_tr, first_obs = self._rows[0]
            if (self.written + n_transitions - first_tr <= self.capacity
                    and self.obs_written + n_obs - first_obs <= self.obs_capacity):
                break
            self._rows.popleft()
            self.start = self._rows[0][0] if self._rows else self.written

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict:
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        t = (self.start + rng.integers(0, len(self), size=batch_size)) % self.capacity
        o = self.obs_index[t] % self.obs_capacity
        n = self.next_obs_index[t] % self.obs_capacity
        obs = nested_obs({k: v[o] for k, v in self.obs.items()})
        next_obs = nested_obs({k: v[n] for k, v in self.obs.items()})
        return {"obs": obs, "next_obs": next_obs, "action": self.action[t], "reward": self.reward[t],
                "terminated": self.terminated[t]}

    # -- rows for a copy of the buffer elsewhere (the learner's, on its GPU: learner/device_replay.py) --------
    def rows_since(self, transition: int, max_bytes: float) -> list[tuple[int, int, int, int]]:
        """The live rows from absolute transition index `transition` on, oldest first, as (first transition, first
        observation, steps, observations), as many as fit `max_bytes` (always at least one, if there is one).

        A copy that applies these rows in order, at the same slots, holds exactly this buffer's live transitions
        from `max(self.start, first row)` to the last row's end: it needs no eviction logic of its own.
        """
        found = []
        ends = self.written, self.obs_written  # where the newest row ends
        for first_tr, first_obs in reversed(self._rows):
            if first_tr < transition:
                break
            found.append((first_tr, first_obs, ends[0] - first_tr, ends[1] - first_obs))
            ends = first_tr, first_obs
        found.reverse()
        obs_bytes, step_bytes = self.spec.obs_bytes(), self.step_bytes(self.spec)
        rows, total = [], 0.0
        for row in found:
            total += row[2] * step_bytes + row[3] * obs_bytes
            if rows and total > max_bytes:
                break
            rows.append(row)
        return rows

    def rows_reply(self, sent: int | None, max_bytes: float) -> tuple[dict, dict[str, np.ndarray], int]:
        """For a copy that has every row up to transition `sent` (None: none yet): what it lacks, at most `max_bytes`
        of it, as (meta, arrays, where the rows end: the next `sent`). The meta holds what the copy needs to place
        the rows: the buffer's geometry and spec, its oldest live transition and each row's place."""
        start = self.start if sent is None else max(sent, self.start)
        rows = self.rows_since(start, max_bytes)
        meta = {"capacity": self.capacity, "obs_capacity": self.obs_capacity, "spec": self.spec.to_meta(),
                "start": self.start, "rows": [list(r) for r in rows]}
        return meta, self.read_rows(rows), (rows[-1][0] + rows[-1][2] if rows else start)

    def read_rows(self, rows: list[tuple[int, int, int, int]]) -> dict[str, np.ndarray]:
        """The stored arrays of `rows` (from rows_since), each row's steps and observations one after the other."""
        t, o = row_slots(rows, self.capacity, self.obs_capacity)
        out = {"obs": nested_obs({k: v[o] for k, v in self.obs.items()})}
        out.update(action=self.action[t], reward=self.reward[t], terminated=self.terminated[t],
                   obs_index=self.obs_index[t], next_obs_index=self.next_obs_index[t])
        return out

    # -- snapshots: the buffer's arrays and counters, so a restarted service does not start empty --
    def state_arrays(self) -> dict[str, np.ndarray]:
        out = {f"obs/{k or '_'}": v for k, v in self.obs.items()}
        out.update(action=self.action, reward=self.reward, terminated=self.terminated, obs_index=self.obs_index,
                   next_obs_index=self.next_obs_index,
                   counters=np.array([self.obs_written, self.written, self.start], np.int64),
                   rows=np.array(list(self._rows), np.int64).reshape(-1, 2))
        return out

    def load_state_arrays(self, state: dict[str, np.ndarray]) -> None:
        for k in self.obs:
            src = state[f"obs/{k or '_'}"]
            if src.shape != self.obs[k].shape or src.dtype != self.obs[k].dtype:
                raise ValueError(f"snapshot obs '{k}' is {src.dtype}{src.shape}, buffer has "
                                 f"{self.obs[k].dtype}{self.obs[k].shape}")
            self.obs[k][...] = src
        for name in ("action", "reward", "terminated", "obs_index", "next_obs_index"):
            dst = getattr(self, name)
            if state[name].shape != dst.shape:
                raise ValueError(f"snapshot '{name}' has shape {state[name].shape}, buffer has {dst.shape}")
            dst[...] = state[name]
        self.obs_written, self.written, self.start = (int(x) for x in state["counters"])
        self._rows = collections.deque((int(a), int(b)) for a, b in state["rows"])


def row_slots(rows: list[tuple[int, int, int, int]], capacity: int, obs_capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """The ring slots of `rows` (as rows_since gives them): their transitions' and their observations', in order."""
    empty = [np.zeros(0, np.int64)]
    t = np.concatenate([first + np.arange(n, dtype=np.int64) for first, _, n, _ in rows] or empty)
    o = np.concatenate([first + np.arange(n, dtype=np.int64) for _, first, _, n in rows] or empty)
    return t % capacity, o % obs_capacity
