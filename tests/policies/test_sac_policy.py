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
    policy = SACPolicy(OBS, ACTIONS, POLICY, device, seed=0)
    obs = np.random.default_rng(0).uniform(-1, 1, (8, 5)).astype(np.float32)
    pending = [policy.start_act(obs) for _ in range(3)]  # several in flight, as with two env groups
    for result in pending:
        action = result()
        assert action.shape == (8, 3) and action.dtype == np.float32
        assert np.all(np.abs(action) <= 1.0)
    deterministic = policy.act(obs, deterministic=True)
    assert deterministic.shape == (8, 3)
