"""Flow-matching samplers and their log-densities (policies/vla/flow_sampling.py), on a fixed analytic velocity
field and on a tiny pi0 model."""
import math

import pytest
import torch

from policies.vla import flow_sampling as fs

H, D, N = 3, 8, 5


def linear_field(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w, b = 0.3 * torch.randn(D, D, generator=g), torch.randn(D, generator=g)

    def fn(x, t):
        return x @ w + t.view(-1, 1, 1) * b, None
    return fn


def valid_mask(rows: int = 2, dims: int = 7):
    m = torch.zeros(H, D)
    m[:rows, :dims] = 1
    return m


def test_sde_std_schedule_n5_a05():
    stds = fs.sde_stds(5, 0.5)
    expected = torch.tensor([0.5, math.sqrt(0.2), 0.5 * math.sqrt(1.5 * 0.2), 0.5 * math.sqrt(0.4 / 0.6 * 0.2),
                             0.5 * 0.5 * math.sqrt(0.2)])
    assert torch.allclose(stds, expected, atol=1e-6)
    assert torch.allclose(stds, torch.tensor([0.50, 0.447, 0.274, 0.183, 0.112]), atol=1e-3)


def test_sde_with_zero_noise_level_equals_ode():
    fn, noise = linear_field(), torch.randn(4, H, D, generator=torch.Generator().manual_seed(1))
    ode = fs.sample_chain(fn, noise, N, "ode")
    for k in range(N):
        sde = fs.sample_chain(fn, noise, N, "sde", noise_level=0.0, generator=torch.Generator().manual_seed(2),
                              step=torch.full((4,), k))
        assert torch.equal(sde.chain, ode.chain)
    # the ODE mean is x - D v
    v, _ = fn(noise, torch.ones(4))
    assert torch.allclose(ode.chain[:, 1], noise - v / N, atol=1e-6)


def test_sde_log_prob_is_the_gaussian_density_of_the_transition():
    fn, noise = linear_field(), torch.randn(6, H, D, generator=torch.Generator().manual_seed(3))
    steps = torch.tensor([0, 1, 2, 3, 4, 0])
    out = fs.sample_chain(fn, noise, N, "sde", noise_level=0.5, generator=torch.Generator().manual_seed(4),
                          step=steps)
    valid = valid_mask()
    log_prob, entropy = fs.chain_log_prob(fn, out.chain, out.step, "sde", N, valid, noise_level=0.5)
    dt = 1 / N
    for b, k in enumerate(steps.tolist()):
        t = 1 - k / N
        x, x_next = out.chain[b, k], out.chain[b, k + 1]
        v, _ = fn(x[None], torch.tensor([t]))
        x0, x1 = x - v[0] * t, x + v[0] * (1 - t)
        sigma = 0.5 * math.sqrt(t / (1 - (1 - dt if t == 1 else t)))
        mean = x0 * (1 - t + dt) + x1 * (t - dt - sigma ** 2 * dt / (2 * t))
        dist = torch.distributions.Normal(mean, math.sqrt(dt) * sigma)
        direct = (dist.log_prob(x_next) * valid).sum(-1)
        assert torch.allclose(log_prob[b], direct, atol=1e-5), (k, log_prob[b], direct)
        assert torch.allclose(entropy[b], (dist.entropy() * valid).sum(-1), atol=1e-5)
        # the other steps were deterministic ODE steps
        for i in range(N):
            if i != k:
                ti = 1 - i / N
                vi, _ = fn(out.chain[b, i][None], torch.tensor([ti]))
                assert torch.allclose(out.chain[b, i + 1], out.chain[b, i] - dt * vi[0], atol=1e-5)
    assert (log_prob[:, 2:] == 0).all()  # rows outside the executed chunk are not counted


def test_flow_noise_log_prob_averages_n_plus_1_terms():
    base = linear_field()
    std = torch.full((H, D), 0.1)

    def fn(x, t):
        return base(x, t)[0], std.expand_as(x)
    noise = torch.randn(2, H, D, generator=torch.Generator().manual_seed(5))
    out = fs.sample_chain(fn, noise, N, "noise", generator=torch.Generator().manual_seed(6))
    valid = valid_mask()
    log_prob, _ = fs.chain_log_prob(fn, out.chain, out.step, "noise", N, valid)
    terms = [(torch.distributions.Normal(0.0, 1.0).log_prob(out.chain[:, 0]) * valid).sum(-1)]
    for i in range(N):
        t = torch.full((2,), 1 - i / N)
        v, _ = base(out.chain[:, i], t)
        mean = out.chain[:, i] - v / N
        terms.append((torch.distributions.Normal(mean, 0.1).log_prob(out.chain[:, i + 1]) * valid).sum(-1))
    assert torch.allclose(log_prob, torch.stack(terms).mean(0), atol=1e-5)


def test_flow_time_distribution_and_targets():
    t = fs.sample_flow_time(200000, torch.Generator().manual_seed(0))
    assert t.min() >= 0.001 and t.max() <= 1.0
    # E[Beta(1.5, 1)] = 0.6
    assert abs(t.mean().item() - (0.999 * 0.6 + 0.001)) < 3e-3
    a, eps, tt = torch.randn(2, H, D), torch.randn(2, H, D), torch.tensor([0.25, 0.75])
    x_t, u = fs.flow_matching_targets(a, eps, tt)
    assert torch.allclose(x_t[1], 0.75 * eps[1] + 0.25 * a[1]) and torch.allclose(u, eps - a)


def test_bad_sampler_and_steps_are_rejected():
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        fs.sample_chain(linear_field(), torch.zeros(1, H, D), N, "euler")
    with pytest.raises(ValueError, match=r"step indices must lie in 0\.\.4"):
        fs.sample_chain(linear_field(), torch.zeros(1, H, D), N, "sde", step=torch.tensor([5]))
    with pytest.raises(ValueError, match="deterministic"):
        fs.chain_log_prob(linear_field(), torch.zeros(1, N + 1, H, D), torch.tensor([0]), "sde", N, valid_mask(),
                          noise_level=0.0)
    with pytest.raises(ValueError, match=r"chain must be \[B, 6, H, D\]"):
        fs.chain_log_prob(linear_field(), torch.zeros(1, N, H, D), torch.tensor([0]), "sde", N, valid_mask())
