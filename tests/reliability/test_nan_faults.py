"""Numerical faults in the learner: a NaN/Inf loss or gradient skips the update and is counted; no parameter,
and so none of the weights the actors receive, ever becomes NaN. (The replay service's rejection of NaN
rewards and the learner process's counters are checked with real processes in test_fuzzing.py.)"""
from __future__ import annotations

import math

import pytest
import torch

from reliability_helpers import batch, make_sac

# The skip happens on the device (fused Adam's found_inf), so it is checked on every device there is.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def snapshot(sac) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in sac.agent.state_dict().items()} | {"raw_alpha": sac.raw_alpha.detach().clone()}


def all_finite(sac) -> bool:
    return all(torch.isfinite(v).all() for v in snapshot(sac).values())


@pytest.mark.parametrize("device", DEVICES)
def test_nan_rewards_skip_the_critic_update_and_never_reach_the_weights(device):
    sac = make_sac(device=device)
    sac.update([batch(0, device=device)])
    before = snapshot(sac)
    metrics = sac.update([batch(1, reward=float("nan"), device=device)])

    assert sac.skipped_updates == 1 and metrics["train/skipped_updates"] == 1
    assert not math.isfinite(metrics["train/critic/grad_norm"])
    after = snapshot(sac)
    for name in before:
        if name.startswith("critic."):
            assert torch.equal(before[name], after[name]), f"{name} changed on a NaN loss"
    assert all_finite(sac)
    assert all(torch.isfinite(v).all() for v in sac.agent.acting_weights().values())
    critic_weight = next(k for k in after if k.startswith("critic."))
    sac.update([batch(2, device=device)])  # the next clean batch trains as usual
    assert sac.skipped_updates == 1
    assert not torch.equal(after[critic_weight], snapshot(sac)[critic_weight])


@pytest.mark.parametrize("device", DEVICES)
def test_infinite_observations_skip_every_update_of_the_step(device):
    sac = make_sac(device=device)
    before = snapshot(sac)
    poisoned = batch(0, device=device)
    poisoned["obs"][0, 0] = float("inf")
    sac.update([poisoned])
    assert sac.skipped_updates == 3  # critic, actor and temperature losses are all NaN
    after = snapshot(sac)
    # Only the target networks move (Polyak averaging toward unchanged online networks).
    for name in before:
        if not name.startswith("target_"):
            assert torch.equal(before[name], after[name]), name
    assert all_finite(sac)


@pytest.mark.parametrize("device", DEVICES)
def test_an_infinite_gradient_with_a_finite_loss_is_skipped(device):
    sac = make_sac(device=device)
    weight = next(sac.agent.actor.parameters())
    before = weight.detach().clone()
    # sqrt at 0: the loss is 0, its gradient is infinite.
    loss = torch.sqrt(weight - weight.detach()).sum()
    assert torch.isfinite(loss)
    assert not torch.isfinite(torch.as_tensor(sac._step(sac.actor_opt, loss)))
    assert sac.skipped_updates == 1
    assert torch.equal(weight, before)
    # The optimiser skipped the whole step: no moment and no step count moved.
    assert all(float(state["step"]) == 0 and not state["exp_avg"].any() for state in sac.actor_opt.state.values())
