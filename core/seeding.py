"""Every random stream of a run, derived from `runner.seed` through one `np.random.SeedSequence`.

A stream is named by what uses it (`STREAMS`) and a key of non-negative integers (actor index,
env group, policy version, ...). Its seed comes from ``SeedSequence(runner.seed, spawn_key=(stream,
*key))``: streams with different names or keys are statistically independent, and none is an
offset of another. (Offsets such as ``seed * 1000 + 100 * index + env`` collide as soon as an actor
has more than 100 envs: actor i's env 100 is actor i+1's env 0.)

Seeds handed to environments and torch are 63-bit integers, so that among millions of env streams
a collision is as likely as a 63-bit hash collision (about 1e-7 for two million streams).
"""
from __future__ import annotations

import numpy as np

# Stream names -> the first entry of their spawn key. Append only: renumbering changes every run.
STREAMS: dict[str, int] = {
    "learner": 0,  # network initialisation and the learner's own sampling (torch)
    "actor_policy": 1,  # an actor's action sampling; key: (actor index,)
    "actor_envs": 2,  # an actor's env resets; key: (actor index, env group), one seed per env
    "actor_random_actions": 3,  # the uniform warm-up actions; key: (actor index, env group)
    "evaluator_policy": 4,
    "evaluator_envs": 5,  # key: (evaluation number,), one seed per env
    "replay_sample": 6,  # which transitions a batch holds
    "group_resets": 7,  # GRPO: the shared reset seed of each group; key: (actor index, policy version)
    "calvin_chains": 8,  # the play table's evaluation chains; key: (chain index,): its start state and subtasks
    "sft_demos": 9,  # the episode seeds of the demonstrations an SFT run records
    "sft_batches": 10,  # which demonstration frames each SFT minibatch holds (torch)
    "libero_expert": 11,  # the LIBERO expert's trials (benchmarks/libero_expert.py); key: (task, trial)
    "appearance_gap": 12,  # the episode seeds launch/appearance_gap.py evaluates every policy and rendering on
}


def sequence(seed: int, stream: str, *key: int) -> np.random.SeedSequence:
    """The SeedSequence of stream `stream` under `key`, for `runner.seed` = seed."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; streams are {', '.join(STREAMS)}")
    if seed < 0 or any(int(k) < 0 for k in key):
        raise ValueError(f"seeds and stream keys must be non-negative integers, got seed {seed} and key {key}")
    return np.random.SeedSequence(int(seed), spawn_key=(STREAMS[stream], *(int(k) for k in key)))


def seeds(seed: int, stream: str, *key: int, count: int) -> list[int]:
    """`count` 63-bit seeds of one stream (e.g. one per env of an env group)."""
    words = sequence(seed, stream, *key).generate_state(count, np.uint64)
    return [int(w >> np.uint64(1)) for w in words]


def seed_of(seed: int, stream: str, *key: int) -> int:
    """One 63-bit seed (for torch.manual_seed, a torch.Generator or a gymnasium space)."""
    return seeds(seed, stream, *key, count=1)[0]


def generator(seed: int, stream: str, *key: int) -> np.random.Generator:
    """A numpy Generator on the stream."""
    return np.random.default_rng(sequence(seed, stream, *key))
