"""The on-policy rollout store: gathers, for one policy version at a time, every actor's rollout.

A rollout is a nested dict of arrays in three groups, by how they are indexed:

    steps   [B, T, ...]  one row per env, one column per step: obs, action, log_prob, reward,
                         terminated, truncated (and valid, for episode-shaped GRPO rollouts)
    finals  [K, ...]     one row per episode that ended inside the rollout: obs (its final
                         observation) and index [K, 2] = (env, step) where it ended
    envs    [B, ...]     one row per env: last_obs (the observation after the last step), ...

An actor sends its rollout in parts (time slices, so a large rollout never has to travel as one
message); the store joins the parts, and when the rollouts of all expected actors are there it
concatenates them along the env axis into the learner's rollout.

Progress is counted in env steps the learner has finished training on: the steps of version v count
once version v + 1 begins. So the run's stop condition (the monitor reads this count) fires after the
last update, not while the learner is still training on the last rollout.

Versions. The store's version is the newest it has seen, in a learner request or a chunk. A chunk
of version w proves the learner published w, which it only does after it finished with every
version before w; so seeing w begins version w, and anything older is stale: dropped and counted,
never mixed into an update. A version that was handed to the learner is closed: chunks for it
that come later are stale too.

Which actors a version waits for: those registered when it began, plus those that register while
it gathers (a newcomer receives the newest weights, i.e. this version's, so its rollout will
count). An actor that leaves (goodbye, or silent past the heartbeat time-out) is no longer waited
for. Once the first complete rollout is in, the others get ``timeout_s``; after that the version
is trained on what arrived, and the missing actors are reported.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from core import tree
from core.tree import leaves

GROUPS = ("steps", "finals", "envs")
MAX_PARTS = 100_000


class RolloutError(ValueError):
    """A chunk or rollout that does not fit the layout; the message says what is wrong."""


def num_envs(rollout: dict) -> int:
    return int(leaves(rollout["steps"])[0].shape[0])


def num_steps(rollout: dict) -> int:
    return int(leaves(rollout["steps"])[0].shape[1])


def check_layout(rollout: dict, with_envs: bool = True) -> None:
    """Raise RolloutError unless `rollout` has the three groups with consistent leading dimensions.

    with_envs=False: a part that is not the last, whose 'envs' arrays have no rows.
    """
    if not isinstance(rollout, dict) or set(rollout) != set(GROUPS):
        got = sorted(rollout) if isinstance(rollout, dict) else type(rollout).__name__
        raise RolloutError(f"a rollout has the groups {list(GROUPS)}, got {got}")
    steps = leaves(rollout["steps"])
    if not steps or any(a.ndim < 2 for a in steps):
        raise RolloutError("rollout 'steps' must hold arrays of shape [envs, steps, ...]")
    b, t = steps[0].shape[:2]
    if any(a.shape[:2] != (b, t) for a in steps):
        raise RolloutError(f"rollout 'steps' arrays disagree on [envs, steps]: {[a.shape[:2] for a in steps]}")
    env_rows = b if with_envs else 0
    if any(a.ndim < 1 or a.shape[0] != env_rows for a in leaves(rollout["envs"])):
        raise RolloutError(f"rollout 'envs' arrays must have {env_rows} rows here")
    finals = rollout["finals"]
    if not isinstance(finals, dict) or "index" not in finals:
        raise RolloutError("rollout 'finals' must hold 'index' [K, 2] (and the final observations)")
    index = finals["index"]
    if index.ndim != 2 or index.shape[1] != 2 or any(a.ndim < 1 or a.shape[0] != len(index) for a in leaves(finals)):
        raise RolloutError(f"rollout 'finals' must be [K, ...] arrays with index [K, 2], got index {index.shape}")
    if len(index) and (index[:, 0].min() < 0 or index[:, 0].max() >= b):
        raise RolloutError(f"rollout 'finals' index names envs outside [0, {b})")


# --------------------------------------------------------------------------------------------
# Parts and rollouts


def split_rollout(rollout: dict, part_len: int) -> list[dict]:
    """Time slices of at most `part_len` steps; finals go with the slice of their step, envs with the last."""
    if part_len < 1:
        raise ValueError(f"part_len must be >= 1, got {part_len}")
    t_total = num_steps(rollout)
    index = rollout["finals"]["index"]
    parts = []
    for t0 in range(0, t_total, part_len):
        t1 = min(t0 + part_len, t_total)
        rows = (index[:, 1] >= t0) & (index[:, 1] < t1)
        last = t1 == t_total
        parts.append({
            "steps": tree.map(lambda a: a[:, t0:t1], rollout["steps"]),
            "finals": tree.map(lambda a: a[rows], rollout["finals"]),
            "envs": rollout["envs"] if last else tree.map(lambda a: a[:0], rollout["envs"]),
        })
    return parts


def join_parts(parts: list[dict]) -> dict:
    """The inverse of split_rollout: parts in order -> one rollout."""
    try:
        rollout = {
            "steps": tree.map(lambda *a: np.concatenate(a, axis=1), *(p["steps"] for p in parts)),
            "finals": tree.map(lambda *a: np.concatenate(a, axis=0), *(p["finals"] for p in parts)),
            "envs": parts[-1]["envs"],
        }
    except ValueError as e:  # numpy's shape complaints, and RolloutError (a ValueError)
        raise RolloutError(f"rollout parts do not fit together: {e}") from None
    check_layout(rollout)
    return rollout


def concat_rollouts(rollouts: list[dict]) -> dict:
    """Several actors' rollouts -> one, along the env axis (finals' env indices shifted to match)."""
    offsets = np.cumsum([0] + [num_envs(r) for r in rollouts[:-1]])
    finals = [dict(r["finals"], index=r["finals"]["index"] + np.array([off, 0], np.int32))
              for r, off in zip(rollouts, offsets)]
    try:
        return {
            "steps": tree.map(lambda *a: np.concatenate(a, axis=0), *(r["steps"] for r in rollouts)),
            "finals": tree.map(lambda *a: np.concatenate(a, axis=0), *finals),
            "envs": tree.map(lambda *a: np.concatenate(a, axis=0), *(r["envs"] for r in rollouts)),
        }
    except ValueError as e:
        raise RolloutError(f"actors' rollouts do not fit together: {e}") from None


def _signature(rollout: dict) -> Any:
    """What two actors' rollouts must share to be concatenated: structure, dtypes, T, trailing shapes."""
    return {
        "steps": tree.map(lambda a: (a.dtype.str, a.shape[1:]), rollout["steps"]),
        "finals": tree.map(lambda a: (a.dtype.str, a.shape[1:]), rollout["finals"]),
        "envs": tree.map(lambda a: (a.dtype.str, a.shape[1:]), rollout["envs"]),
    }


# --------------------------------------------------------------------------------------------
# The store


@dataclasses.dataclass
class ActorRollout:
    """One actor's rollout for the current version, as its parts arrive."""

    num_parts: int
    parts: dict = dataclasses.field(default_factory=dict)  # part index -> arrays
    meta: dict = dataclasses.field(default_factory=dict)  # the last part's meta (env_steps, episodes)
    rollout: dict | None = None  # joined, once every part is in


@dataclasses.dataclass
class TakenRollout:
    rollout: dict
    version: int
    actors: list
    missing: list  # expected actors whose rollout did not come in time
    timed_out: bool
    env_steps: int
    episodes: list


class RolloutStore:
    def __init__(self, timeout_s: float):
        self.timeout_s = float(timeout_s)
        self.version = 0  # 0: no version seen yet
        self.closed = False  # this version was handed to the learner
        self.actors: set[str] = set()  # registered now
        self.expected: set[str] = set()
        self.gathering: dict[str, ActorRollout] = {}
        self.first_complete_at: float | None = None
        self.signature: Any = None  # shapes every actor's rollout must share (from the first one)
        # counters
        self.stale_chunks = 0
        self.stale_env_steps = 0
        self.duplicate_chunks = 0
        self.env_steps_served = 0  # env steps handed to the learner
        self.env_steps = 0  # env steps the learner has finished training on (the run's progress)
        self._handed_out_steps = 0  # of the version handed out last, trained on once the next version begins
        self.versions_served = 0
        self.timeouts = 0

    # -- membership --------------------------------------------------------------------------------
    def register(self, name: str) -> None:
        """An actor (re)joined. A rejoining actor starts a new rollout, so its unfinished parts go."""
        self.actors.add(name)
        entry = self.gathering.get(name)
        if entry is not None and entry.rollout is None:
            self._drop(self.gathering.pop(name))
        if self.version and not self.closed:
            self.expected.add(name)

    def leave(self, name: str) -> None:
        """An actor left: no longer waited for (a rollout it completed still counts)."""
        self.actors.discard(name)
        self.expected.discard(name)
        entry = self.gathering.get(name)
        if entry is not None and entry.rollout is None:
            self._drop(self.gathering.pop(name))

    # -- versions ----------------------------------------------------------------------------------
    def _begin(self, version: int) -> None:
        if self.closed:  # the learner moved on (it published `version`): it has finished training on the last one
            self.env_steps += self._handed_out_steps
            self._handed_out_steps = 0
        for entry in self.gathering.values():  # an older version's data, never to be trained on
            self._drop(entry)
        self.version, self.closed = version, False
        self.expected = set(self.actors)
        self.gathering = {}
        self.first_complete_at = None

    def _count_stale(self, chunks: int, steps: dict) -> None:
        self.stale_chunks += chunks
        self.stale_env_steps += int(np.prod(leaves(steps)[0].shape[:2]))

    def _drop(self, entry: ActorRollout) -> None:
        """Count an actor's rollout (whole or in parts) as stale; the caller forgets it."""
        if entry.rollout is not None:
            self._count_stale(entry.num_parts, entry.rollout["steps"])
        for part in entry.parts.values():
            self._count_stale(1, part["steps"])

    def request(self, version: int) -> None:
        """The learner asks for the rollout of `version` (it has published those weights)."""
        if version < self.version or (version == self.version and self.closed):
            raise RolloutError(f"the learner asked for version {version}, but the store is at version "
                               f"{self.version}{' (already handed out)' if self.closed else ''}")
        if version > self.version:
            self._begin(version)

    def add_chunk(self, name: str, version: int, part: int, num_parts: int, arrays: dict, meta: dict,
                  now: float) -> str:
        """File one part of `name`'s rollout. Returns 'accepted', 'stale' or 'duplicate'; raises RolloutError."""
        if not (isinstance(part, int) and isinstance(num_parts, int) and 0 <= part < num_parts <= MAX_PARTS):
            raise RolloutError(f"chunk part {part!r} of {num_parts!r}: need 0 <= part < parts <= {MAX_PARTS}")
        check_layout(arrays, with_envs=part == num_parts - 1)
        if version < self.version or (version == self.version and self.closed):
            self._count_stale(1, arrays["steps"])
            return "stale"
        if version > self.version:
            self._begin(version)
        if name not in self.actors:
            raise RolloutError(f"{name} sent a chunk without registering")
        entry = self.gathering.setdefault(name, ActorRollout(num_parts))
        if entry.num_parts != num_parts:
            raise RolloutError(f"{name} announced {entry.num_parts} parts for version {version}, now {num_parts}")
        if entry.rollout is not None or part in entry.parts:
            self.duplicate_chunks += 1
            return "duplicate"
        entry.parts[part] = arrays
        if part == num_parts - 1:
            entry.meta = dict(meta)
        if len(entry.parts) == num_parts:
            rollout = join_parts([entry.parts[i] for i in range(num_parts)])
            signature = _signature(rollout)
            if self.signature is not None and signature != self.signature:
                del self.gathering[name]
                raise RolloutError(f"{name}'s rollout has shapes {signature}, unlike the others' {self.signature}")
            self.signature = signature
            entry.rollout, entry.parts = rollout, {}
            if self.first_complete_at is None:
                self.first_complete_at = now
        return "accepted"

    def complete(self) -> list[str]:
        return sorted(n for n, e in self.gathering.items() if e.rollout is not None)

    def missing(self) -> list[str]:
        return sorted(self.expected - set(self.complete()))

    def ready(self, now: float) -> bool:
        """True when the current version can be handed out: everyone expected delivered, or the time-out passed."""
        if self.closed or self.first_complete_at is None:
            return False
        return not self.missing() or now - self.first_complete_at >= self.timeout_s

    def take(self) -> TakenRollout:
        """Hand the current version's rollout out (call when ready); the version is closed afterwards."""
        names = self.complete()
        if self.closed or not names:
            raise RolloutError(f"version {self.version} has no complete rollout to hand out")
        entries = [self.gathering[n] for n in names]
        missing = self.missing()
        env_steps = sum(int(e.meta.get("env_steps", num_envs(e.rollout) * num_steps(e.rollout))) for e in entries)
        episodes = [ep for e in entries for ep in e.meta.get("episodes", [])]
        taken = TakenRollout(rollout=concat_rollouts([e.rollout for e in entries]), version=self.version,
                             actors=names, missing=missing, timed_out=bool(missing), env_steps=env_steps,
                             episodes=episodes)
        for name in set(self.gathering) - set(names):  # unfinished parts of late actors: stale now
            self._drop(self.gathering[name])
        self.gathering, self.closed = {}, True
        self.env_steps_served += env_steps
        self._handed_out_steps = env_steps
        self.versions_served += 1
        self.timeouts += bool(missing)
        return taken
