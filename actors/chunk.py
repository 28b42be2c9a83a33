"""Cuts a stream of vector-env steps into fixed-length chunks for the replay service."""
from __future__ import annotations

from typing import Any

import numpy as np


def _alloc(template: Any, lead: tuple) -> Any:
    if isinstance(template, dict):
        return {k: _alloc(v, lead) for k, v in template.items()}
    template = np.asarray(template)
    return np.empty((*lead, *template.shape[1:]), dtype=template.dtype)


def _write(dst: Any, t: int, src: Any) -> None:
    if isinstance(dst, dict):
        for k in dst:
            _write(dst[k], t, src[k])
    else:
        dst[:, t] = src


def _rows(src: Any, rows: np.ndarray) -> Any:
    if isinstance(src, dict):
        return {k: _rows(v, rows) for k, v in src.items()}
    return np.asarray(src)[rows]


def _concat(parts: list, template: Any) -> Any:
    if isinstance(template, dict):
        return {k: _concat([p[k] for p in parts], template[k]) for k in template}
    if not parts:
        return np.zeros((0, *np.asarray(template).shape[1:]), dtype=np.asarray(template).dtype)
    return np.concatenate(parts)


class ChunkBuilder:
    """Holds obs[B, T+1], action[B, T], reward/terminated/truncated[B, T], and the final observations.

    Fresh arrays per chunk: a sent chunk's buffers are handed to ZeroMQ without
    a copy, so they must not be reused while the socket may still read them.
    """

    def __init__(self, num_envs: int, chunk_len: int, action_shape: tuple, action_dtype: np.dtype):
        self.B, self.T = num_envs, chunk_len
        self.action_shape, self.action_dtype = tuple(action_shape), np.dtype(action_dtype)
        self.t = 0
        self._arrays: dict | None = None

    def start(self, obs: Any) -> None:
        self._arrays = {
            "obs": _alloc(obs, (self.B, self.T + 1)),
            "action": np.empty((self.B, self.T, *self.action_shape), self.action_dtype),
            "reward": np.empty((self.B, self.T), np.float32),
            "terminated": np.empty((self.B, self.T), bool),
            "truncated": np.empty((self.B, self.T), bool),
        }
        self._template = obs
        self._finals: list = []
        self._final_index: list = []
        self.t = 0
        _write(self._arrays["obs"], 0, obs)

    def add(self, action: np.ndarray, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
            next_obs: Any, final_obs: Any) -> bool:
        """Record one step (next_obs is after auto-reset); returns True when the chunk is full."""
        a, t = self._arrays, self.t
        a["action"][:, t] = action
        a["reward"][:, t] = reward
        a["terminated"][:, t] = terminated
        a["truncated"][:, t] = truncated
        done = np.flatnonzero(terminated | truncated)
        if len(done):
            self._finals.append(_rows(final_obs, done))
            self._final_index.extend((int(b), t) for b in done)
        self.t += 1
        _write(a["obs"], self.t, next_obs)
        return self.t == self.T

    def finish(self) -> dict:
        """The full chunk's arrays; call start() with the current obs to begin the next."""
        arrays = dict(self._arrays)
        arrays["final_obs"] = _concat(self._finals, self._template)
        arrays["final_index"] = np.asarray(self._final_index, np.int32).reshape(-1, 2)
        self._arrays = None
        return arrays
