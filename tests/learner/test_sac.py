"""SAC update: it learns a fixed target, and NaN inputs never reach the weights."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf

from learner.sac import SAC, SACConfig
from policies.config import PolicyConfig
from policies.sac_agent import SACAgent, SACPolicy


def make(num_q=4, **kw):
    cfg = OmegaConf.create({"policy": PolicyConfig(hidden=[32, 32])})
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    agent = SACAgent(space, 2, cfg.policy, num_q)
    return cfg, space, agent, SAC(agent, 2, SACConfig(num_q=num_q, batch_size=32, **kw), torch.device("cpu"))


def batch(B=32, reward=1.0):
    g = torch.Generator().manual_seed(0)
    return {"obs": torch.randn(B, 3, generator=g), "next_obs": torch.randn(B, 3, generator=g),
            "action": torch.rand(B, 2, generator=g) * 2 - 1, "reward": torch.full((B,), reward),
            "terminated": torch.ones(B, dtype=torch.bool)}


def test_critic_regresses_onto_terminal_rewards():
    _, _, agent, sac = make()
    b = batch(reward=1.0)
    for _ in range(300):
        m = sac.update([b])
    q = agent.critic(agent.encoder(b["obs"]), b["action"])
    assert q.shape == (4, 32)
    assert (q - 1).abs().mean() < 0.05, q
    assert m["train/skipped_updates"] == 0


def test_nan_rewards_skip_the_update_and_leave_weights_finite():
    _, _, agent, sac = make()
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    m = sac.update([batch(reward=float("nan"))])
    assert m["train/skipped_updates"] >= 1
    critic_after = {k: v for k, v in agent.state_dict().items() if k.startswith("critic.")}
    for k, v in critic_after.items():
        assert torch.equal(v, before[k]), f"{k} changed after a NaN update"
    assert all(torch.isfinite(v).all() for v in agent.state_dict().values())


def test_acting_policy_loads_the_learners_weights():
    cfg, space, agent, sac = make()
    sac.update([batch()])
    policy = SACPolicy(space, gym.spaces.Box(-1, 1, (2,), np.float32), cfg.policy, "cpu")
    policy.load_weights({k: v.numpy() for k, v in agent.acting_weights().items()})
    obs = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    expected, _ = agent.actor(agent.encoder(torch.from_numpy(obs)), deterministic=True)
    np.testing.assert_allclose(policy.act(obs, deterministic=True), expected.detach().numpy(), atol=1e-6)


def test_state_saved_by_unfused_optimisers_resumes_and_still_skips_nan_steps():
    """Checkpoints written before the optimisers were fused say fused=False; loading one keeps them fused."""
    _, _, agent, sac = make()
    sac.update([batch()])
    state = sac.state_dict()
    for name in ("critic_opt", "actor_opt", "alpha_opt"):
        for group in state[name]["param_groups"]:
            group["fused"] = False
        for param_state in state[name]["state"].values():
            param_state["step"] = param_state["step"].cpu()  # as unfused Adam kept it
    _, _, _, resumed = make()
    resumed.load_state_dict(state)
    assert all(g["fused"] for g in resumed.critic_opt.param_groups)
    resumed.update([batch()])
    before = {k: v.clone() for k, v in resumed.agent.state_dict().items() if k.startswith("critic.")}
    resumed.update([batch(reward=float("nan"))])
    assert resumed.skipped_updates >= 1
    assert all(torch.equal(v, resumed.agent.state_dict()[k]) for k, v in before.items())
    step = next(iter(resumed.critic_opt.state.values()))["step"]
    assert float(step) == 2  # the skipped step did not count
