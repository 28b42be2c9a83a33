"""learner.compile: the SAC networks compiled in place train like the eager ones and keep their parameter names."""
from __future__ import annotations

import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from policies.config import PolicyConfig
from learner.sac import SAC, SACConfig
from policies.sac_agent import SACAgent

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="torch.compile on the CPU needs a C++ compiler")


def batch(n: int = 32) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"obs": torch.randn(n, 5, generator=g), "next_obs": torch.randn(n, 5, generator=g),
            "action": torch.rand(n, 2, generator=g) * 2 - 1, "reward": torch.randn(n, generator=g),
            "terminated": torch.zeros(n, dtype=torch.bool)}


def test_compiled_networks_compute_what_the_eager_ones_do_and_train():
    policy = OmegaConf.structured(PolicyConfig(hidden=[16, 16], activation="relu"))
    space = gym.spaces.Box(-1, 1, (5,), np.float32)
    eager, compiled = (SACAgent(space, 2, policy, num_q=2, seed=0) for _ in range(2))
    names = compiled.compile_networks()
    assert names == ["actor", "critic", "target_critic"]  # the state encoder has nothing to compile
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints and weights unchanged
    data = batch()
    with torch.no_grad():
        for a, b in ((eager.critic(data["obs"], data["action"]), compiled.critic(data["obs"], data["action"])),
                     (eager.actor(data["obs"], deterministic=True)[0], compiled.actor(data["obs"], deterministic=True)[0])):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    # Training: the compiled graph samples with its own random numbers, so losses differ from eager ones in value,
    # not in kind: finite, and the weights move.
    sac = SAC(compiled, 2, SACConfig(num_q=2, num_min_q=2), torch.device("cpu"))
    before = {k: v.clone() for k, v in compiled.acting_weights().items()}
    for _ in range(3):
        metrics = sac.update([batch()])
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert any(not torch.equal(before[k], v) for k, v in compiled.acting_weights().items())
    assert set(compiled.acting_weights()) == set(eager.acting_weights())  # published under the same names
