"""Real spherical harmonics of degree 0-3, in the basis and sign convention of the 3DGS code (and gsplat):
a Gaussian's colour seen along unit direction d (from the camera centre to the Gaussian's mean) is
``max(0, 0.5 + sum_k sh[k] * Y_k(d))`` per channel."""
from __future__ import annotations

import torch

from envs.gaussians.cloud import SH_C0, sh_degree_of

SH_C1 = 0.4886025119029199  # sqrt(3 / (4 pi))
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
         1.445305721320277, -0.5900435899266435)


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """The (degree + 1)^2 basis functions at unit directions dirs [..., 3] -> [..., K]."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z,
                SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
                SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, -1)


def eval_sh(sh: torch.Tensor, dirs: torch.Tensor, degree: int | None = None) -> torch.Tensor:
    """Colours [..., 3] from coefficients sh [..., K, 3] seen along dirs [..., 3] (normalised here), using
    the first (degree + 1)^2 coefficients (all of them by default)."""
    if degree is None:
        degree = sh_degree_of(sh.shape[-2])
    k = (degree + 1) ** 2
    if sh.shape[-2] < k:
        raise ValueError(f"sh_degree {degree} needs {k} SH coefficients, the colours have {sh.shape[-2]}")
    basis = sh_basis(degree, torch.nn.functional.normalize(dirs, dim=-1))
    return torch.clamp_min((basis[..., None] * sh[..., :k, :]).sum(-2) + 0.5, 0.0)


def rotate_sh_degree1(sh: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Coefficients sh [N, K, 3] of Gaussians turned by rotation [3, 3] (or [N, 3, 3]): the degree-1 band is
    rotated exactly, degrees 2 and 3 are left as they are (an approximation: a rigid part's fitted
    higher bands are small, and the env's parts turn by modest angles between the capture and a step).

    The degree-1 term is C1 * d . v with v = (-sh[3], -sh[1], sh[2]); seen in the part's frame it is
    C1 * (R^T d) . v = C1 * d . (R v), so the world-frame v is R v."""
    if sh.shape[1] < 4:
        return sh
    v = torch.stack([-sh[:, 3], -sh[:, 1], sh[:, 2]], 1)  # [N, 3 (xyz), 3 (rgb)]
    v = rotation @ v if rotation.dim() == 3 else torch.einsum("ij,njc->nic", rotation, v)
    out = sh.clone()
    out[:, 1], out[:, 2], out[:, 3] = -v[:, 1], v[:, 2], -v[:, 0]
    return out
