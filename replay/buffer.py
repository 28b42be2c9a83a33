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
from dataclasses import dataclass

import numpy as np


def flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """{"obs": {"front": a}} -> {"obs/front": a}; a bare array under prefix p -> {p: a}."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}/{k}" if prefix else k))
        return out
    return {prefix: tree}


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for name, v in flat.items():
        node = out
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


@dataclass(frozen=True)
class Spec:
    """Shape (without batch/time) and dtype of each observation entry and of the action."""

    obs: dict  # name -> (shape tuple, dtype str); name "" = a plain array observation
    action: tuple  # (shape tuple, dtype str)

    @staticmethod
    def from_meta(meta: dict) -> "Spec":
        obs = {k: (tuple(int(d) for d in v[0]), str(v[1])) for k, v in meta["obs"].items()}
        return Spec(obs=obs, action=(tuple(int(d) for d in meta["action"][0]), str(meta["action"][1])))

    def to_meta(self) -> dict:
        return {"obs": {k: [list(s), d] for k, (s, d) in self.obs.items()},
                "action": [list(self.action[0]), self.action[1]]}

    def obs_bytes(self) -> int:
        return sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in self.obs.values())


class ChunkError(ValueError):
    """A chunk that does not fit the buffer's spec; it is rejected whole."""


class ReplayBuffer:
    def __init__(self, spec: Spec, capacity: int, chunk_len: int):
        if capacity <= 0:
            raise ValueError("replay capacity must be positive")
        self.spec, self.capacity, self.chunk_len = spec, int(capacity), int(chunk_len)
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
    def bytes_per_transition(spec: Spec, chunk_len: int) -> float:
        a_shape, a_dtype = spec.action
        obs = spec.obs_bytes() * (chunk_len + 2) / chunk_len
        return obs + int(np.prod(a_shape)) * np.dtype(a_dtype).itemsize + 4 + 1 + 16

    def __len__(self) -> int:
        return self.written - self.start

    def nbytes(self) -> int:
        arrays = [*self.obs.values(), self.action, self.reward, self.terminated, self.obs_index, self.next_obs_index]
        return sum(a.nbytes for a in arrays)

    def check_chunk(self, arrays: dict) -> None:
        """Raise ChunkError unless the chunk matches the spec; called before anything is written."""
        obs = flatten(arrays.get("obs"), "") if isinstance(arrays.get("obs"), dict) else {"": arrays.get("obs")}
        if set(obs) != set(self.spec.obs):
            raise ChunkError(f"observation keys {sorted(obs)} != expected {sorted(self.spec.obs)}")
        for name in ("action", "reward", "terminated", "truncated"):
            if not isinstance(arrays.get(name), np.ndarray):
                raise ChunkError(f"chunk lacks array '{name}'")
        B, T = arrays["reward"].shape[:2] if arrays["reward"].ndim == 2 else (None, None)
        if B is None:
            raise ChunkError(f"reward must be [B, T], got shape {arrays['reward'].shape}")
        for k, (shape, dtype) in self.spec.obs.items():
            a = obs[k]
            if a.shape != (B, T + 1, *shape) or a.dtype != np.dtype(dtype):
                raise ChunkError(f"obs '{k}' is {a.dtype}{list(a.shape)}, expected {dtype}{[B, T + 1, *shape]}")
        a_shape, a_dtype = self.spec.action
        if arrays["action"].shape != (B, T, *a_shape):
            raise ChunkError(f"action shape {arrays['action'].shape} != {(B, T, *a_shape)}")
        for name in ("terminated", "truncated"):
            if arrays[name].shape != (B, T):
                raise ChunkError(f"{name} shape {arrays[name].shape} != {(B, T)}")
        if not np.all(np.isfinite(arrays["reward"])):
            raise ChunkError("reward holds NaN or Inf")
        idx = arrays.get("final_index", np.zeros((0, 2), np.int32))
        done = arrays["terminated"] | arrays["truncated"]
        if idx.ndim != 2 or idx.shape[1] != 2 or len(idx) != int(done.sum()):
            raise ChunkError(f"final_index must list the {int(done.sum())} episode ends as (b, t) rows")
        if len(idx) and not np.all(done[idx[:, 0], idx[:, 1]]):
            raise ChunkError("final_index points at steps that did not end an episode")
        finals = arrays.get("final_obs")
        finals = {} if finals is None else (flatten(finals, "") if isinstance(finals, dict) else {"": finals})
        for k, (shape, dtype) in self.spec.obs.items():
            f = finals.get(k, np.zeros((0, *shape), dtype))
            if f.shape != (len(idx), *shape) or f.dtype != np.dtype(dtype):
                raise ChunkError(f"final_obs '{k}' is {f.dtype}{list(f.shape)}, expected {dtype}{[len(idx), *shape]}")

    def add_chunk(self, arrays: dict) -> int:
        """Store a validated chunk; returns the number of transitions added."""
        self.check_chunk(arrays)
        obs = flatten(arrays["obs"], "") if isinstance(arrays["obs"], dict) else {"": arrays["obs"]}
        finals = arrays.get("final_obs")
        finals = {} if finals is None else (flatten(finals, "") if isinstance(finals, dict) else {"": finals})
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
        obs = {k: v[o] for k, v in self.obs.items()}
        next_obs = {k: v[n] for k, v in self.obs.items()}
        if set(obs) == {""}:
            obs, next_obs = obs[""], next_obs[""]
        else:
            obs, next_obs = unflatten(obs), unflatten(next_obs)
        return {"obs": obs, "next_obs": next_obs, "action": self.action[t], "reward": self.reward[t],
                "terminated": self.terminated[t]}

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
