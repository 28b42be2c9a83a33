"""Device names from config to torch devices."""
from __future__ import annotations


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda:0' when a GPU is visible, else 'cpu'; 'cuda' without a GPU is an error."""
    import torch

    name = str(name)
    if name == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' was asked for but no CUDA GPU is visible "
                           f"(CUDA_VISIBLE_DEVICES or the driver); use 'cpu' or 'auto'")
    return name


def learner_cpu_threads(requested: int) -> int:
    """Torch threads for a learner on the CPU: as asked, else all cores but one.

    The actors, the evaluator and replay share the machine; a learner that takes
    every core makes OpenMP threads spin against them and runs many times slower.
    """
    import os

    cores = len(os.sched_getaffinity(0))  # the cores this process may use (taskset, cgroups)
    return requested or max(1, cores - 1)


def prepare_learner_device(learner_cfg, seed: int):
    """The learner's torch device, with the global seed set and CPU threads limited (see learner_cpu_threads)."""
    import torch

    device = torch.device(resolve_device(learner_cfg.device))
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.set_num_threads(learner_cpu_threads(learner_cfg.num_threads))
    return device


def actor_device(actor_cfg, index: int) -> str:
    """Device of actor `index`: actor.devices[index % len] when given, else actor.device."""
    devices = list(actor_cfg.devices)
    return resolve_device(devices[index % len(devices)] if devices else actor_cfg.device)
