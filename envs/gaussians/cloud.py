"""A set of 3D Gaussians, stored as the standard 3DGS training code stores them.

Each Gaussian has a mean (x, y, z), a rotation (unit quaternion, w x y z), a scale per axis stored as
its log, an opacity stored as its logit, and a colour as real spherical-harmonics coefficients, K = (d + 1)^2
of them per colour channel for degree d (coefficient 0 is the "DC" term). Storing log-scales and
opacity logits keeps every value unconstrained, which is what gradient descent and the .ply format want;
``scales()`` and ``opacities()`` give the activated values a rasterizer takes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

SH_C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi))


def sh_degree_of(num_coeffs: int) -> int:
    degree = int(round(math.sqrt(num_coeffs))) - 1
    if (degree + 1) ** 2 != num_coeffs or not 0 <= degree <= 3:
        raise ValueError(f"{num_coeffs} SH coefficients per channel is not (d + 1)^2 for a degree d in 0..3")
    return degree


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """The DC coefficient that renders as `rgb` (renderers add 0.5 to the SH sum, as the 3DGS code does)."""
    return (rgb - 0.5) / SH_C0


@dataclass
class GaussianCloud:
    means: torch.Tensor  # [N, 3]
    quats: torch.Tensor  # [N, 4] w x y z (not necessarily normalised)
    log_scales: torch.Tensor  # [N, 3]
    opacity_logits: torch.Tensor  # [N]
    sh: torch.Tensor  # [N, K, 3]

    def __post_init__(self):
        n = self.means.shape[0]
        shapes = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,)}
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"GaussianCloud.{name} has shape {tuple(getattr(self, name).shape)}, expected {shape}")
        if self.sh.dim() != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise ValueError(f"GaussianCloud.sh has shape {tuple(self.sh.shape)}, expected ({n}, K, 3)")
        sh_degree_of(self.sh.shape[1])

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_of(self.sh.shape[1])

    def scales(self) -> torch.Tensor:
        return torch.exp(self.log_scales)

    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.opacity_logits)

    def map(self, fn) -> "GaussianCloud":
        return GaussianCloud(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device) -> "GaussianCloud":
        return self.map(lambda t: t.to(device))

    def detach(self) -> "GaussianCloud":
        return self.map(lambda t: t.detach())

    def select(self, index: torch.Tensor) -> "GaussianCloud":
        return self.map(lambda t: t[index])

    def with_sh_degree(self, degree: int) -> "GaussianCloud":
        """The same Gaussians with `degree` SH bands: extra bands zero, missing bands dropped."""
        k = (degree + 1) ** 2
        sh = self.sh[:, :k]
        if sh.shape[1] < k:
            sh = torch.cat([sh, sh.new_zeros(len(self), k - sh.shape[1], 3)], 1)
        return GaussianCloud(self.means, self.quats, self.log_scales, self.opacity_logits, sh)

    @staticmethod
    def cat(clouds: list["GaussianCloud"]) -> "GaussianCloud":
        if not clouds:
            raise ValueError("GaussianCloud.cat needs at least one cloud")
        degree = max(c.sh_degree for c in clouds)
        clouds = [c.with_sh_degree(degree) for c in clouds]
        return GaussianCloud(**{f.name: torch.cat([getattr(c, f.name) for c in clouds], 0) for f in fields(GaussianCloud)})

    @staticmethod
    def from_points(points: torch.Tensor, rgb: torch.Tensor, scale: torch.Tensor | float, opacity: float = 0.5,
                    sh_degree: int = 0) -> "GaussianCloud":
        """Isotropic Gaussians at `points` [N, 3] with colours `rgb` [N, 3] in [0, 1] (an initialisation)."""
        n = points.shape[0]
        scale = torch.as_tensor(scale, dtype=points.dtype, device=points.device).expand(n)
        sh = points.new_zeros(n, (sh_degree + 1) ** 2, 3)
        sh[:, 0] = rgb_to_sh_dc(rgb.to(points.dtype))
        quats = points.new_zeros(n, 4)
        quats[:, 0] = 1
        return GaussianCloud(points.clone(), quats, torch.log(scale)[:, None].repeat(1, 3).clone(),
                             points.new_full((n,), math.log(opacity / (1 - opacity))), sh)
