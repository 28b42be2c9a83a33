"""Every env stream of a run has a seed of its own."""
import numpy as np
import pytest

from core import seeding


def test_no_two_env_streams_share_a_seed():
    """1,000 actors x 2 env groups x 1,000 envs: two million reset streams, none seeded alike."""
    all_seeds = np.concatenate([
        np.asarray(seeding.seeds(7, "actor_envs", actor, group, count=1000), np.uint64)
        for actor in range(1000) for group in range(2)])
    assert len(all_seeds) == 2_000_000
    assert len(np.unique(all_seeds)) == len(all_seeds)
    # ... nor with the evaluator's envs or the GRPO group resets of the same run
    others = seeding.seeds(7, "evaluator_envs", count=1000) + seeding.seeds(7, "group_resets", 0, 1, count=1000)
    assert not set(others) & set(all_seeds.tolist())


def test_streams_are_deterministic_and_depend_on_every_part_of_the_key():
    assert seeding.seeds(3, "actor_envs", 1, 0, count=4) == seeding.seeds(3, "actor_envs", 1, 0, count=4)
    base = seeding.seed_of(3, "actor_policy", 1)
    assert base != seeding.seed_of(4, "actor_policy", 1)  # another run seed
    assert base != seeding.seed_of(3, "actor_policy", 2)  # another actor
    assert base != seeding.seed_of(3, "evaluator_policy", 1)  # another stream
    assert 0 <= base < 2**63


def test_bad_stream_names_and_keys_are_refused():
    with pytest.raises(ValueError, match="unknown random stream"):
        seeding.seed_of(0, "actors_envs")
    with pytest.raises(ValueError, match="non-negative"):
        seeding.seed_of(0, "actor_envs", -1)
