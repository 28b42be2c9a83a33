"""sac.cuda_graph: the captured learner step computes what the eager one does (needs a CUDA GPU)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from learner.sac import SAC, SACConfig
from policies.config import PolicyConfig
from policies.sac_agent import SACAgent

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")


def batches(seed: int, n: int = 2, B: int = 64) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        b = {"obs": torch.randn(B, 3, generator=g), "next_obs": torch.randn(B, 3, generator=g),
             "action": torch.rand(B, 2, generator=g) * 2 - 1, "reward": torch.randn(B, generator=g),
             "terminated": torch.rand(B, generator=g) < 0.1}
        out.append({k: v.cuda() for k, v in b.items()})
    return out


def trained(seed_batches: list[list[dict]], cuda_graph: bool) -> tuple[dict, list[dict]]:
    agent = SACAgent(gym.spaces.Box(-1, 1, (3,), np.float32), 2, PolicyConfig(hidden=[32, 32]), 4, seed=0).cuda()
    sac = SAC(agent, 2, SACConfig(num_q=4, num_min_q=2, critic_actor_ratio=2, cuda_graph=cuda_graph),
              torch.device("cuda"))
    torch.cuda.manual_seed(123)
    metrics = [sac.update(b) for b in seed_batches]
    return {k: v.detach().clone() for k, v in agent.state_dict().items()}, metrics


def test_graphed_steps_equal_eager_steps_and_see_new_batches():
    steps = [batches(i) for i in range(8)]  # 3 warm-up steps, the capture, then replays on fresh batches
    eager, m_eager = trained(steps, cuda_graph=False)
    graphed, m_graph = trained(steps, cuda_graph=True)
    for k in eager:
        torch.testing.assert_close(graphed[k], eager[k], rtol=1e-4, atol=1e-5, msg=k)
    for a, b in zip(m_eager, m_graph):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([b[k] for k in a], [a[k] for k in a], rtol=1e-3, atol=1e-5)
