"""The SAC acting policy: actions in range, and start_act (the pipelined actor's call) on CPU and, if present, GPU."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from policies.config import PolicyConfig
from policies.sac_agent import SACPolicy

POLICY = OmegaConf.structured(PolicyConfig(hidden=[16, 16]))
OBS = gym.spaces.Box(-1, 1, (5,), np.float32)
ACTIONS = gym.spaces.Box(-1, 1, (3,), np.float32)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_start_act_gives_what_act_gives(device):
    """start_act samples the very actions act samples: same observations, same torch RNG state (the actor's
    Gaussian noise comes from torch's global generator of the policy's device, which manual_seed resets)."""
    policy = SACPolicy(OBS, ACTIONS, POLICY, device, seed=0)
    obs = np.random.default_rng(0).uniform(-1, 1, (8, 5)).astype(np.float32)
    torch.manual_seed(123)
    acted = [policy.act(obs) for _ in range(3)]
    torch.manual_seed(123)
    pending = [policy.start_act(obs) for _ in range(3)]  # several in flight, as with two env groups
    started = [result() for result in pending]
    for a, s in zip(acted, started):
        assert s.shape == (8, 3) and s.dtype == np.float32
        assert np.all(np.abs(s) <= 1.0)
        np.testing.assert_array_equal(s, a)
    # The comparison is of samples: three different draws, none of them the deterministic action.
    deterministic = policy.act(obs, deterministic=True)
    assert deterministic.shape == (8, 3)
    assert not np.array_equal(started[0], started[1]) and not np.array_equal(started[1], started[2])
    assert not np.allclose(started[0], deterministic)
