"""Cuts a stream of vector-env steps into fixed-length chunks for the replay service (layout: wire/schema.py)."""
from __future__ import annotations

from typing import Any

import numpy as np

from core import tree
from wire.schema import ChunkSchema


class ChunkBuilder:
    """Holds obs[B, T+1], action[B, T], reward/terminated/truncated[B, T], and the final observations.

    Fresh arrays per chunk: a sent chunk's buffers are handed to ZeroMQ without
    a copy, so they must not be reused while the socket may still read them.
    """

    def __init__(self, schema: ChunkSchema):
        self.schema, self.T = schema, schema.chunk_len
        self.t = 0
        self._arrays: dict | None = None

    def start(self, obs: Any) -> None:
        self._arrays = self.schema.allocate()
        self._finals: list = []
        self._final_index: list = []
        self.t = 0
        tree.assign(self._arrays["obs"], (slice(None), 0), obs)

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
            self._finals.append(tree.map(lambda f: np.asarray(f)[done], final_obs))
            self._final_index.extend((int(b), t) for b in done)
        self.t += 1
        tree.assign(a["obs"], (slice(None), self.t), next_obs)
        return self.t == self.T

    def finish(self) -> dict:
        """The full chunk's arrays; call start() with the current obs to begin the next."""
        arrays = self._arrays
        arrays["final_obs"] = (tree.map(lambda *rows: np.concatenate(rows), *self._finals) if self._finals
                               else self.schema.no_finals())
        arrays["final_index"] = np.asarray(self._final_index, np.int32).reshape(-1, 2)
        self._arrays = None
        return arrays
