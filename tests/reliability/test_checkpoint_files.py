"""Learner checkpoints: the whole SAC state comes back, writes are atomic, damage is named and survived."""
from __future__ import annotations

import logging

import pytest
import torch
from reliability_helpers import batch, make_sac

from core.atomic_dir import CorruptError
from learner.checkpoint import (CheckpointError, list_checkpoints, load_checkpoint, load_latest_checkpoint,
                                save_checkpoint)
from learner.sac import SAC

def learner_state(sac: SAC, updates: int) -> dict:
    """What learner/off_policy.py checkpoints (minus the config)."""
    return {"sac": sac.state_dict(), "updates": updates, "steps": updates, "env_steps": 10 * updates,
            "weights_version": updates // 2, "rng": {"torch": torch.get_rng_state()}}


def logger_into(records: list) -> logging.Logger:
    log = logging.getLogger(f"test-{id(records)}")
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    log.addHandler(handler)
    return log


def test_the_whole_learner_state_comes_back_and_training_continues_identically(tmp_path):
    sac = make_sac()
    for i in range(3):  # optimiser moments, step counts and the temperature all move away from their start
        sac.update([batch(i)])
    torch.manual_seed(123)
    path = save_checkpoint(learner_state(sac, updates=3), tmp_path, label="u3", meta={"run_id": "r1"})
    state = load_checkpoint(path)

    assert state["updates"] == 3 and state["env_steps"] == 30 and state["weights_version"] == 1
    restored = make_sac(seed=99)  # different initial weights: everything must come from the checkpoint
    restored.load_state_dict(state["sac"])
    # Types survive: int keys of the optimiser state, Adam's betas tuple.
    assert set(state["sac"]["critic_opt"]["state"]) == set(sac.critic_opt.state_dict()["state"])
    assert isinstance(state["sac"]["actor_opt"]["param_groups"][0]["betas"], tuple)

    # Continuing from the restored state is bit-for-bit the same as continuing from the original.
    torch.set_rng_state(state["rng"]["torch"])
    after_restore = restored.update([batch(7)])
    torch.manual_seed(123)
    after_original = sac.update([batch(7)])
    assert after_restore == after_original
    for (name, a), b in zip(sac.agent.state_dict().items(), restored.agent.state_dict().values()):
        assert torch.equal(a, b), name  # networks and target networks
    assert torch.equal(sac.raw_alpha, restored.raw_alpha)
    for opt in ("critic_opt", "actor_opt", "alpha_opt"):
        for (k, a), b in zip(getattr(sac, opt).state.items(), getattr(restored, opt).state.values()):
            assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["step"], b["step"])


def test_a_crash_mid_write_leaves_the_previous_checkpoint_untouched(tmp_path):
    sac = make_sac()
    good = save_checkpoint(learner_state(sac, 1), tmp_path, label="u1")

    class Unsaveable:  # an object a checkpoint cannot hold: the writer fails after it started
        pass

    with pytest.raises(TypeError, match="sac.oops"):
        save_checkpoint({"sac": {"weights": torch.ones(3), "oops": Unsaveable()}}, tmp_path)
    # What a kill -9 during a write leaves behind: a hidden temporary directory, never a half checkpoint.
    (tmp_path / ".tmp-ckpt-123-u2-abcd").mkdir()
    (tmp_path / ".tmp-ckpt-123-u2-abcd" / "tensors.safetensors").write_bytes(b"half a file")

    assert list_checkpoints(tmp_path) == [good]
    state, path = load_latest_checkpoint(tmp_path)
    assert path == good and state["updates"] == 1
    save_checkpoint(learner_state(sac, 2), tmp_path, label="u2")
    assert not list(tmp_path.glob(".tmp-*")), "the next write removes what a crashed writer left"


@pytest.mark.parametrize("damage, damaged_file, problem", [
    ("truncate", "tensors.safetensors", "truncated"),
    ("flip", "tensors.safetensors", "CRC-32 mismatch"),
    ("truncate", "state.json", "truncated"),
    ("truncate", "manifest.json", "unreadable or truncated"),
    ("delete", "tensors.safetensors", "missing"),
])
def test_a_damaged_checkpoint_is_named_and_the_previous_one_is_used(tmp_path, damage, damaged_file, problem):
    sac = make_sac()
    previous = save_checkpoint(learner_state(sac, 1), tmp_path, label="u1")
    sac.update([batch(0)])
    newest = save_checkpoint(learner_state(sac, 2), tmp_path, label="u2")
    target = newest / damaged_file
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        target.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    else:
        target.unlink()

    with pytest.raises(CorruptError, match=problem) as error:
        load_checkpoint(newest)
    assert str(target) in str(error.value)

    messages: list[str] = []
    state, path = load_latest_checkpoint(tmp_path, logger_into(messages))
    assert path == previous and state["updates"] == 1
    assert len(messages) == 1 and str(target) in messages[0] and "trying the previous one" in messages[0]
    assert list_checkpoints(tmp_path) == [previous], "the damaged one is set aside (*.corrupt), not tried again"
    assert newest.with_name(newest.name + ".corrupt").is_dir()


def test_when_no_checkpoint_is_intact_resuming_fails_loudly(tmp_path):
    assert load_latest_checkpoint(tmp_path) is None  # nothing there: a fresh start is right
    path = save_checkpoint(learner_state(make_sac(), 1), tmp_path)
    (path / "state.json").write_text("{")
    with pytest.raises(CheckpointError, match="state.json"):
        load_latest_checkpoint(tmp_path)


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    sac = make_sac()
    paths = [save_checkpoint(learner_state(sac, i), tmp_path, keep=2, label=f"u{i}") for i in range(4)]
    assert list_checkpoints(tmp_path) == [paths[3], paths[2]]
