"""What a VLA policy publishes and loads: the parameters training changes (LoRA adapters and heads, or a small
model's trainable parts), by name. Shared by VLAPolicy (policy.py) and Pi0Policy (pi0_policy.py)."""
from __future__ import annotations

import numpy as np
import torch


class TrainedWeights:
    """Mixin for a policy whose network is ``self.model``; ``WEIGHTS_OF`` names it in errors."""

    WEIGHTS_OF = "the VLA policy"
    model: torch.nn.Module

    def trainable_weights(self) -> dict[str, np.ndarray]:
        """What training changes, by parameter name: the parameters that require grad."""
        # copies: on the CPU .numpy() of a float32 parameter would alias it, and change with the next step
        return {n: p.detach().float().cpu().numpy().copy() for n, p in self.model.named_parameters()
                if p.requires_grad}

    def load_weights(self, weights: dict) -> None:
        params = dict(self.model.named_parameters())
        unknown = sorted(set(weights) - set(params))
        if unknown:
            raise ValueError(f"weights do not fit {self.WEIGHTS_OF}: unknown parameters {unknown[:5]}"
                             f"{' ...' if len(unknown) > 5 else ''}")
        with torch.no_grad():
            for name, value in weights.items():
                value = torch.as_tensor(np.array(value))  # np.array: received arrays are read-only
                if value.shape != params[name].shape:
                    raise ValueError(f"weight {name} has shape {tuple(value.shape)}, the policy "
                                     f"{tuple(params[name].shape)}")
                params[name].copy_(value)
