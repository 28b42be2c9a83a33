"""The critic of the VLA policies: an MLP on one hidden state of the language model.

RLinf's OpenVLA PPO reads the last-layer hidden state at the last prompt token (the state the
first action token is predicted from) through 4096 -> 512 -> 128 -> 1 with GELU; the widths
here are configurable so that tiny and small models keep the same structure.
"""
from __future__ import annotations

from torch import Tensor, nn


class ValueHead(nn.Module):
    def __init__(self, in_dim: int, hidden: tuple[int, ...] | list[int] = (512, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.GELU()]
            width = int(h)
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1))
        # A zero last layer: a freshly built head's values are 0, so the first advantages are the returns themselves.
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, hidden_state: Tensor) -> Tensor:
        """[B, in_dim] -> [B] in float32 (a bfloat16 LM still gives fp32 values for the value loss)."""
        return self.mlp(hidden_state.to(self.mlp[0].weight.dtype)).squeeze(-1).float()
