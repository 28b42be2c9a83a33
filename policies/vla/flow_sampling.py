"""Samplers of a flow-matching action expert and the log-densities PPO needs of them.

Time runs from t = 1 (pure noise) to t = 0 (the action) in N Euler steps of size D = 1/N, on the grid
t_i = 1 - i/N, i = 0..N. At step i, with x = x_{t_i} and the expert's velocity v = v(x, t_i), the
model's two endpoint guesses are x0 = x - v t (the action) and x1 = x + v (1 - t) (the noise), and:

* ODE (evaluation, deterministic): x_{t_{i+1}} = x0 (1 - t + D) + x1 (t - D), which is x - D v.
* Flow-SDE (training rollouts): sigma_i = a sqrt(t_i / (1 - t_i)); at t = 1 the denominator would
  vanish, so there, as openpi-based RL code (RLinf) does, 1 - t is replaced by 1 - t_1 (t_1 = 1 - D,
  the grid's second time): sigma_0 = a sqrt(1 / D). The stochastic transition is Gaussian with mean
  x0 (1 - t + D) + x1 (t - D - sigma^2 D / (2 t)) (the drift correction that keeps the marginals of
  the ODE) and std sqrt(D) sigma. Only ONE step per env decision, k ~ U{0..N-1}, is stochastic; the
  others are ODE steps. The policy's log-prob is that one transition's Gaussian log-density. With
  N = 5, a = 0.5 the stds are 0.500, 0.447, 0.274, 0.183, 0.112.
* Flow-Noise: every step is stochastic, mean = the ODE mean, std = a learned noise head's output at
  that step (bounded by the model, modeling_pi0.py). The policy's log-prob is the mean of N + 1
  Gaussian terms: term 0 is the standard-normal log-density of the initial noise x_{t_0}, term i
  (i = 1..N) the log-density of x_{t_i} given x_{t_{i-1}}. Term 0 does not depend on the parameters
  (it cancels in a PPO ratio) but is counted so that the value is the chain's joint density / (N+1).

Every log-density is summed over the dims that reach the env (``valid``: the executed chunk's rows
and the env's action dims; the zero padding up to 32 dims and the unexecuted horizon are excluded)
and returned per action row [B, H] so callers can sum per action or per chunk. The recorded chain
(all N + 1 x's) and k are what the learner recomputes the log-density from (``chain_log_prob``);
the actor calls the same function on the chain it just sampled, so for an unchanged policy the
first PPO ratio is exactly 1.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

SAMPLERS = ("ode", "sde", "noise")
# velocity_fn(x [B, H, D], t [B]) -> (velocity [B, H, D], Flow-Noise std [B, H, D] or None)
VelocityFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor | None]]
LOG_2PI = math.log(2 * math.pi)


def check_sampler(sampler: str) -> str:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
    return sampler


def time_grid(num_steps: int, device=None) -> Tensor:
    """t_0 = 1 > t_1 > ... > t_N = 0, float32 [N + 1]."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return 1.0 - torch.arange(num_steps + 1, dtype=torch.float32, device=device) / num_steps


def sde_sigmas(num_steps: int, noise_level: float, device=None) -> Tensor:
    """sigma_i = a sqrt(t_i / (1 - t_i)) for i = 0..N-1, with 1 - t_1 in place of 1 - t_0 = 0 (see above)."""
    if num_steps < 2:
        raise ValueError("Flow-SDE needs num_steps >= 2 (sigma at t = 1 borrows the second grid time)")
    t = time_grid(num_steps, device)
    now = t[:-1]
    return noise_level * torch.sqrt(now / (1 - torch.where(now == 1, t[1], now)))


def sde_stds(num_steps: int, noise_level: float) -> Tensor:
    """The stochastic transition's std at each step, sqrt(D) sigma_i [N]."""
    return math.sqrt(1.0 / num_steps) * sde_sigmas(num_steps, noise_level)


def endpoints(x: Tensor, v: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """(x0, x1) = (x - v t, x + v (1 - t)); t broadcasts from [B]."""
    t = t.view(-1, *([1] * (x.ndim - 1)))
    return x - v * t, x + v * (1 - t)


def ode_mean(x: Tensor, v: Tensor, t: Tensor, dt: float) -> Tensor:
    x0, x1 = endpoints(x, v, t)
    t = t.view(-1, *([1] * (x.ndim - 1)))
    return x0 * (1 - t + dt) + x1 * (t - dt)


def sde_mean(x: Tensor, v: Tensor, t: Tensor, dt: float, sigma: Tensor) -> Tensor:
    x0, x1 = endpoints(x, v, t)
    shape = (-1, *([1] * (x.ndim - 1)))
    t, sigma = t.view(shape), sigma.view(shape)
    return x0 * (1 - t + dt) + x1 * (t - dt - sigma ** 2 * dt / (2 * t))


def gaussian_log_density(x: Tensor, mean: Tensor, std: Tensor, valid: Tensor) -> Tensor:
    """Diagonal Gaussian log-density summed over the valid dims of each action row: [B, H, D] -> [B, H]."""
    z = (x - mean) / std
    elem = -0.5 * z ** 2 - torch.log(std) - 0.5 * LOG_2PI
    return (elem * valid).sum(-1)


def gaussian_entropy(std: Tensor, valid: Tensor) -> Tensor:
    """0.5 log(2 pi e sigma^2) summed over the valid dims: [B, H, D] -> [B, H]."""
    return ((0.5 * (LOG_2PI + 1) + torch.log(std)) * valid).sum(-1)


@dataclass
class FlowChain:
    chain: Tensor  # [B, N + 1, H, D]: x at t_0 = 1 (the noise) ... t_N = 0 (the action)
    step: Tensor  # [B] int64: Flow-SDE's stochastic step k; -1 for ODE and Flow-Noise

    @property
    def actions(self) -> Tensor:
        return self.chain[:, -1]


def sample_chain(velocity_fn: VelocityFn, noise: Tensor, num_steps: int, sampler: str, noise_level: float = 0.5,
                 generator: torch.Generator | None = None, step: Tensor | None = None) -> FlowChain:
    """Integrate from ``noise`` [B, H, D] (x at t = 1) to t = 0 with the given sampler; ``step`` fixes Flow-SDE's
    stochastic step per sample (else drawn uniformly from 0..N-1 with ``generator``)."""
    check_sampler(sampler)
    b, dev = noise.shape[0], noise.device
    times, dt = time_grid(num_steps, dev), 1.0 / num_steps
    k = torch.full((b,), -1, dtype=torch.long, device=dev)
    if sampler == "sde":
        sigmas = sde_sigmas(num_steps, noise_level, dev)
        k = (step.to(dev).long() if step is not None
             else torch.randint(0, num_steps, (b,), generator=generator, device=dev))
        if ((k < 0) | (k >= num_steps)).any():
            raise ValueError(f"Flow-SDE step indices must lie in 0..{num_steps - 1}, got {k.tolist()}")
    x, chain = noise, [noise]
    for i in range(num_steps):
        t = times[i].expand(b)
        v, head_std = velocity_fn(x, t)
        mean = ode_mean(x, v, t, dt)
        if sampler == "ode":
            x = mean
        else:
            eps = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
            if sampler == "sde":
                hit = (k == i).view(-1, 1, 1)
                noisy = sde_mean(x, v, t, dt, sigmas[i].expand(b)) + math.sqrt(dt) * sigmas[i] * eps
                x = torch.where(hit, noisy, mean)
            else:
                if head_std is None:
                    raise ValueError("Flow-Noise needs the model's noise head (velocity_fn returned no std)")
                x = mean + head_std * eps
        chain.append(x)
    return FlowChain(torch.stack(chain, dim=1), k)


def chain_log_prob(velocity_fn: VelocityFn, chain: Tensor, step: Tensor, sampler: str, num_steps: int,
                   valid: Tensor, noise_level: float = 0.5) -> tuple[Tensor, Tensor]:
    """Log-density [B, H] and entropy [B, H] of a recorded chain [B, N + 1, H, D] under the current model, per
    action row summed over ``valid`` [H, D] dims; the model is evaluated only where the density needs it (Flow-SDE:
    once, at x_{t_k}; Flow-Noise: at every step)."""
    check_sampler(sampler)
    if chain.ndim != 4 or chain.shape[1] != num_steps + 1:
        raise ValueError(f"chain must be [B, {num_steps + 1}, H, D] for {num_steps} steps, got {tuple(chain.shape)}")
    b, dev = chain.shape[0], chain.device
    valid = valid.to(device=dev, dtype=chain.dtype)
    times, dt = time_grid(num_steps, dev), 1.0 / num_steps
    if sampler == "ode":
        raise ValueError("the ODE sampler is deterministic: its transitions have no density (use sde or noise)")
    if sampler == "sde":
        if noise_level <= 0:
            raise ValueError(f"Flow-SDE with noise level {noise_level} is deterministic: no density")
        k = step.to(dev).long()
        if ((k < 0) | (k >= num_steps)).any():
            raise ValueError(f"recorded Flow-SDE steps must lie in 0..{num_steps - 1}, got {k.unique().tolist()}")
        rows = torch.arange(b, device=dev)
        x, x_next, t = chain[rows, k], chain[rows, k + 1], times[k]
        sigma = sde_sigmas(num_steps, noise_level, dev)[k]
        v, _ = velocity_fn(x, t)
        std = (math.sqrt(dt) * sigma).view(-1, 1, 1).expand_as(x)
        return gaussian_log_density(x_next, sde_mean(x, v, t, dt, sigma), std, valid), gaussian_entropy(std, valid)
    ones = torch.ones_like(chain[:, 0])
    log_prob = gaussian_log_density(chain[:, 0], torch.zeros_like(ones), ones, valid)
    entropy = gaussian_entropy(ones, valid)
    for i in range(num_steps):
        t = times[i].expand(b)
        v, std = velocity_fn(chain[:, i], t)
        if std is None:
            raise ValueError("Flow-Noise needs the model's noise head (velocity_fn returned no std)")
        log_prob = log_prob + gaussian_log_density(chain[:, i + 1], ode_mean(chain[:, i], v, t, dt), std, valid)
        entropy = entropy + gaussian_entropy(std, valid)
    return log_prob / (num_steps + 1), entropy / (num_steps + 1)


def flow_matching_targets(actions: Tensor, noise: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """x_t = t eps + (1 - t) a and the velocity target u = eps - a."""
    tt = t.view(-1, *([1] * (actions.ndim - 1)))
    return tt * noise + (1 - tt) * actions, noise - actions


def sample_flow_time(batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """t ~ 0.999 Beta(1.5, 1) + 0.001. Beta(a, 1) has CDF x^a, so U^(1/a) samples it exactly (with a generator)."""
    u = torch.rand(batch, generator=generator, device=device)
    return 0.999 * u ** (1 / 1.5) + 0.001
