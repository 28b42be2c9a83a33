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
