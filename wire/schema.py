"""What an actor's chunk holds: the one description both sides of the session read.

A `Spec` says what one env step observes and does (shape without batch/time, dtype); actors send it
when they register. A `ChunkSchema` adds the chunk's length T and its number of env rows B and is
the chunk layout itself::

    obs          [B, T+1, ...]  (a dict of such arrays for dict observations)  o_0 .. o_T
    action       [B, T, ...]    the Spec's action dtype
    reward       [B, T]         float32
    terminated   [B, T]         bool
    truncated    [B, T]         bool
    final_obs    [K, ...]       the final observation of each of the K episodes that ended inside
    final_index  [K, 2]         int32 (row b, step t) where each of them ended

Actors allocate chunks from it (actors/chunk.py) and size their shared-memory slots with it; the
replay service checks every chunk against it before the buffer stores one row of it. An actor
registers its B and T with its spec (`limits_meta`); the service bounds them by its configuration
(`registered`: T <= actor.chunk_len, B <= env.num_envs) and holds every chunk of that actor to exactly
that [B, T] (an actor that declares none: to at most the bounds): a chunk of zero steps, or of more
steps than registered, is refused whole.

Floats must be finite in the dtype they are stored in *and* in float32, the dtype the learner computes
in: a float64 value beyond float32's range would become Inf on the learner's device.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core import tree

PLAIN = ""  # the observation name of a plain (non-dict) array observation


class ChunkError(ValueError):
    """A chunk that does not fit the schema; it is rejected whole."""


FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Spec:
    """Shape (without batch/time) and dtype of each observation entry and of the action."""

    obs: dict  # name -> (shape tuple, dtype str); name "" = a plain array observation; "a/b" = nested dicts
    action: tuple  # (shape tuple, dtype str)

    @staticmethod
    def from_meta(meta: dict) -> "Spec":
        obs = {k: (tuple(int(d) for d in v[0]), str(v[1])) for k, v in meta["obs"].items()}
        return Spec(obs=obs, action=(tuple(int(d) for d in meta["action"][0]), str(meta["action"][1])))

    @staticmethod
    def from_spaces(obs_space, action_space) -> "Spec":
        """The spec of a gymnasium observation space (Box or Dict of Boxes) and action space."""
        import gymnasium as gym

        if isinstance(obs_space, gym.spaces.Dict):
            spaces = tree.flatten(_space_tree(obs_space))
            obs = {k: (tuple(s.shape), str(s.dtype)) for k, s in spaces.items()}
        else:
            obs = {PLAIN: (tuple(obs_space.shape), str(obs_space.dtype))}
        if isinstance(action_space, gym.spaces.Discrete):
            action = ((), "int64")
        else:
            action = (tuple(action_space.shape), "float32")
        return Spec(obs=obs, action=action)

    def to_meta(self) -> dict:
        return {"obs": {k: [list(s), d] for k, (s, d) in self.obs.items()},
                "action": [list(self.action[0]), self.action[1]]}

    def obs_bytes(self) -> int:
        return sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in self.obs.values())

    def action_bytes(self) -> int:
        return int(np.prod(self.action[0])) * np.dtype(self.action[1]).itemsize


def _space_tree(space):
    import gymnasium as gym

    if isinstance(space, gym.spaces.Dict):
        return {k: _space_tree(v) for k, v in space.spaces.items()}
    return space


def flat_obs(obs) -> dict:
    """A chunk's observations by spec name: {"front": a} -> {"front": a}, a plain array -> {"": a}."""
    return tree.flatten(obs) if isinstance(obs, dict) else {PLAIN: obs}


def nested_obs(flat: dict):
    """The inverse of `flat_obs`."""
    return flat[PLAIN] if set(flat) == {PLAIN} else tree.unflatten(flat)


@dataclass(frozen=True)
class ChunkSchema:
    spec: Spec
    chunk_len: int | None = None  # T; None: any (the service's view)
    num_envs: int | None = None  # B; None: any
    at_most: bool = False  # chunk_len and num_envs are bounds, not the exact [B, T] (an actor that declared none)

    def limits_meta(self) -> dict:
        """What an actor's registration says of its chunks (besides the spec)."""
        return {"chunk_len": int(self.chunk_len), "num_envs": int(self.num_envs)}

    @staticmethod
    def registered(spec: "Spec", meta: dict, max_len: int, max_envs: int) -> "ChunkSchema":
        """The schema of a registering actor's chunks: its declared [B, T] (`limits_meta`), within the service's
        bounds; an actor that declares none is held to the bounds themselves (at most [max_envs, max_len]).
        Raises ChunkError for a bad declaration."""
        declared = "chunk_len" in meta or "num_envs" in meta
        t, b = meta.get("chunk_len", max_len), meta.get("num_envs", max_envs)
        if type(t) is not int or not 1 <= t <= max_len:
            raise ChunkError(f"chunk_len {str(t)[:40]!r} is not an int in [1, actor.chunk_len={max_len}]")
        if type(b) is not int or not 1 <= b <= max_envs:
            raise ChunkError(f"num_envs {str(b)[:40]!r} is not an int in [1, env.num_envs={max_envs}]")
        return ChunkSchema(spec, t, b, at_most=not declared)

    def step_fields(self, b: int, t: int) -> dict[str, tuple[tuple, str]]:
        """Name -> (shape, dtype) of the per-step arrays of a [b, t] chunk (obs names as "obs" or "obs/<name>")."""
        fields = {("obs" if k == PLAIN else f"obs/{k}"): ((b, t + 1, *s), d) for k, (s, d) in self.spec.obs.items()}
        a_shape, a_dtype = self.spec.action
        fields.update(action=((b, t, *a_shape), a_dtype), reward=((b, t), "float32"),
                      terminated=((b, t), "bool"), truncated=((b, t), "bool"))
        return fields

    def allocate(self) -> dict:
        """Fresh, uninitialised per-step arrays of one chunk (final_obs/final_index are added when it is full)."""
        flat = {name: np.empty(shape, dtype) for name, (shape, dtype) in
                self.step_fields(self.num_envs, self.chunk_len).items()}
        return tree.unflatten(flat)

    def no_finals(self):
        """final_obs of a chunk in which no episode ended: [0, ...] arrays."""
        return nested_obs({k: np.zeros((0, *s), d) for k, (s, d) in self.spec.obs.items()})

    def array_bytes(self) -> list[int]:
        """Bytes of each per-step array of a full chunk (what a shared-memory slot must hold)."""
        return [int(np.prod(shape)) * np.dtype(dtype).itemsize
                for shape, dtype in self.step_fields(self.num_envs, self.chunk_len).values()]

    def check(self, arrays: dict) -> None:
        """Raise ChunkError unless `arrays` is a chunk of this schema, with finite floats."""
        if not isinstance(arrays, dict):
            raise ChunkError(f"a chunk is a dict of arrays, got {type(arrays).__name__}")
        reward = arrays.get("reward")
        if not isinstance(reward, np.ndarray) or reward.ndim != 2:
            raise ChunkError(f"reward must be [B, T], got {getattr(reward, 'shape', type(reward).__name__)}")
        b, t = reward.shape
        if b < 1 or t < 1:
            raise ChunkError(f"chunk of [{b}, {t}]: a chunk holds at least one step of one env")
        if self.at_most:
            if (self.num_envs is not None and b > self.num_envs) or (self.chunk_len is not None and t > self.chunk_len):
                raise ChunkError(f"chunk of [{b}, {t}], more than [{self.num_envs}, {self.chunk_len}]")
        elif (self.num_envs is not None and b != self.num_envs) or (self.chunk_len is not None
                                                                    and t != self.chunk_len):
            raise ChunkError(f"chunk of [{b}, {t}], expected [{self.num_envs}, {self.chunk_len}] (as registered)")
        obs = arrays.get("obs")
        obs = flat_obs(obs) if obs is not None else {}
        if set(obs) != set(self.spec.obs):
            raise ChunkError(f"observation keys {sorted(obs)} != expected {sorted(self.spec.obs)}")
        flat = {k: v for k, v in arrays.items() if k != "obs"}
        flat.update({("obs" if k == PLAIN else f"obs/{k}"): v for k, v in obs.items()})
        for name, (shape, dtype) in self.step_fields(b, t).items():
            expect_array(name, flat.get(name), shape, dtype)
        index = arrays.get("final_index", np.zeros((0, 2), np.int32))
        done = arrays["terminated"] | arrays["truncated"]
        if (not isinstance(index, np.ndarray) or index.ndim != 2 or index.shape[1] != 2
                or not np.issubdtype(index.dtype, np.integer) or len(index) != int(done.sum())):
            raise ChunkError(f"final_index must list the {int(done.sum())} episode ends as (b, t) rows of integers")
        if len(index) and ((index < 0).any() or (index[:, 0] >= b).any() or (index[:, 1] >= t).any()):
            raise ChunkError(f"'final_index' must hold non-negative integers inside [{b}, {t}]")
        if len(index) and not np.all(done[index[:, 0], index[:, 1]]):
            raise ChunkError("final_index points at steps that did not end an episode")
        finals = arrays.get("final_obs")
        finals = flat_obs(finals) if finals is not None else {}
        for k, (shape, dtype) in self.spec.obs.items():
            expect_array(f"final_obs '{k}'", finals.get(k, np.zeros((0, *shape), dtype)), (len(index), *shape), dtype)
        for name, array in tree.flatten(arrays).items():
            if np.issubdtype(array.dtype, np.floating) and not _finite_as_stored(array):
                raise ChunkError(f"'{name}' holds NaN or Inf, or values beyond float32's range")


def _finite_as_stored(array: np.ndarray) -> bool:
    """Finite in its own dtype (the one it is stored in: checked equal to the spec's) and in float32."""
    if not np.isfinite(array).all():
        return False
    if array.dtype.itemsize > 4 and array.size:
        return bool(np.abs(array).max() <= FLOAT32_MAX)
    return True


def expect_array(name: str, array, shape: tuple, dtype: str, error: type[Exception] = ChunkError,
                 holder: str = "chunk", types: tuple = (np.ndarray,)) -> None:
    """Raise ``error`` unless ``array`` is one of ``types`` with exactly ``shape`` and ``dtype`` (a torch
    tensor's dtype is named the same way: torch.uint8 is "uint8")."""
    if not isinstance(array, types):
        raise error(f"{holder} lacks array '{name}'")
    got = str(array.dtype).removeprefix("torch.")
    if tuple(array.shape) != tuple(shape) or got != np.dtype(dtype).name:
        raise error(f"{name} is {got}{list(array.shape)}, expected {dtype}{list(shape)}")
