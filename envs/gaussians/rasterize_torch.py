"""The reference 3DGS rasterizer in plain PyTorch: differentiable, runs anywhere, and defines the image
the gsplat back end (rasterize_gsplat.py) must reproduce. Same arguments and results as
``gsplat.rasterization`` for the options used here.

Per camera:

1. EWA splatting (Zwicker et al. 2002, as 3DGS uses it): a Gaussian with mean m and covariance
   S = R diag(s)^2 R^T in the world is, in the camera frame, mean t = W m + w and covariance W S W^T; the
   perspective projection, linearised at t (its Jacobian J = [[fx/z, 0, -fx x/z^2], [0, fy/z, -fy y/z^2]]),
   turns it into an image-plane Gaussian with mean (fx x/z + cx, fy y/z + cy) and covariance
   J W S W^T J^T. As gsplat and 3DGS do, x/z and y/z in J are clamped to 1.3 times the half field of
   view, so that Gaussians far outside the image do not get huge footprints.
2. A low-pass filter: eps2d (0.3) pixels^2 added to the 2D covariance's diagonal, so that no splat is
   thinner than about a pixel (the anti-aliasing term of EWA, with gsplat's and 3DGS's constant).
3. Gaussians in front of the near plane or behind the far plane, or with a degenerate 2D covariance,
   are dropped; the rest are sorted by camera depth z (front first).
4. At a pixel centre p, Gaussian i has alpha_i = min(0.99, o_i exp(-0.5 (p - mu_i)^T S2_i^-1 (p - mu_i)));
   alphas under 1/255 are skipped, and pixels are composited front to back,
   C = sum_i c_i alpha_i T_i with T_i = prod_{j<i} (1 - alpha_j), stopping before the Gaussian that
   would bring the transmittance to 1e-4 or below (3DGS's rule; gsplat's alpha cap is 0.999, not 0.99,
   which only matters for Gaussians of opacity above 0.99). The background colour fills the rest:
   C + T_final * background; the alpha image is 1 - T_final.

Memory: the image is cut into tiles and only the Gaussians whose footprint (the box where alpha can
reach 1/255) meets a tile are composited there, so memory is pixels-per-tile x Gaussians-per-tile.
"""
from __future__ import annotations

import torch

from envs.gaussians.camera import camera_centres
from envs.gaussians.sh import eval_sh

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
TRANSMITTANCE_MIN = 1e-4
FOV_CLAMP = 1.3


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] of quaternions [..., 4] (w x y z; normalised here)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(*quats.shape[:-1], 3, 3)


def covariances(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """World covariances R diag(s)^2 R^T [N, 3, 3]."""
    m = quat_to_rotmat(quats) * scales[:, None, :]
    return m @ m.transpose(1, 2)


def project(means: torch.Tensor, covs: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
            eps2d: float):
    """Image-plane means [N, 2], 2D covariances [N, 2, 2] (with the low-pass term) and depths [N]."""
    rot, trans = viewmat[:3, :3], viewmat[:3, 3]
    t = means @ rot.T + trans
    x, y, z = t.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    zs = torch.where(z.abs() > 1e-9, z, torch.full_like(z, 1e-9))  # culled below; keeps the maths finite
    lim_x_neg = cx / fx + (FOV_CLAMP - 1) * 0.5 * width / fx
    lim_x_pos = (width - cx) / fx + (FOV_CLAMP - 1) * 0.5 * width / fx
    lim_y_neg = cy / fy + (FOV_CLAMP - 1) * 0.5 * height / fy
    lim_y_pos = (height - cy) / fy + (FOV_CLAMP - 1) * 0.5 * height / fy
    tx = zs * torch.clamp(x / zs, -lim_x_neg, lim_x_pos)
    ty = zs * torch.clamp(y / zs, -lim_y_neg, lim_y_pos)
    zero = torch.zeros_like(zs)
    jac = torch.stack([fx / zs, zero, -fx * tx / zs ** 2, zero, fy / zs, -fy * ty / zs ** 2], -1).reshape(-1, 2, 3)
    cov_cam = rot @ covs @ rot.T
    cov2d = jac @ cov_cam @ jac.transpose(1, 2) + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    mean2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    return mean2d, cov2d, z


def _composite(pix: torch.Tensor, mean2d, conic, opac, colors, background):
    """Front-to-back compositing of depth-sorted splats at pixel centres pix [P, 2] -> rgb [P, 3], alpha [P]."""
    d = pix[:, None, :] - mean2d[None]  # [P, G, 2]
    sigma = 0.5 * (conic[:, 0] * d[..., 0] ** 2 + conic[:, 2] * d[..., 1] ** 2) + conic[:, 1] * d[..., 0] * d[..., 1]
    alpha = torch.clamp_max(opac * torch.exp(-sigma), ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    t_incl = torch.cumprod(1 - alpha, 1)
    t_excl = torch.cat([torch.ones_like(t_incl[:, :1]), t_incl[:, :-1]], 1)
    weight = alpha * t_excl * (t_incl > TRANSMITTANCE_MIN)
    acc = weight.sum(1)
    return weight @ colors + (1 - acc)[:, None] * background, acc


def rasterize_reference(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
                        colors: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int,
                        near_plane: float = 0.01, far_plane: float = 1e10, sh_degree: int | None = None,
                        backgrounds: torch.Tensor | None = None, eps2d: float = 0.3, tile_size: int = 16):
    """Render C cameras -> (rgb [C, H, W, 3], alpha [C, H, W, 1]).

    means [N, 3], quats [N, 4] (w x y z), scales [N, 3] and opacities [N] (activated, not logs/logits);
    colors: [N, K, 3] SH coefficients with ``sh_degree`` set, else RGB [N, 3] or [C, N, 3];
    viewmats [C, 4, 4] world -> camera (OpenCV axes), Ks [C, 3, 3]; backgrounds [C, 3] (default black)."""
    n_cams = viewmats.shape[0]
    dev, dtype = means.device, means.dtype
    if backgrounds is None:
        backgrounds = torch.zeros(n_cams, 3, device=dev, dtype=dtype)
    covs = covariances(quats, scales)
    centres = camera_centres(viewmats)
    ys, xs = torch.meshgrid(torch.arange(height, device=dev, dtype=dtype), torch.arange(width, device=dev, dtype=dtype),
                            indexing="ij")
    pixels = torch.stack([xs, ys], -1) + 0.5  # [H, W, 2] pixel centres
    rgb_out, alpha_out = [], []
    for c in range(n_cams):
        if sh_degree is not None:
            col = eval_sh(colors, means - centres[c], sh_degree)
        else:
            col = colors[c] if colors.dim() == 3 else colors
        mean2d, cov2d, depth = project(means, covs, viewmats[c], Ks[c], width, height, eps2d)
        a, b, d_ = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
        det = a * d_ - b * b
        keep = (depth > near_plane) & (depth < far_plane) & (det > 0) & (opacities >= ALPHA_MIN)
        idx = torch.nonzero(keep).flatten()
        idx = idx[torch.argsort(depth[idx].detach(), stable=True)]
        mean2d, a, b, d_, det = mean2d[idx], a[idx], b[idx], d_[idx], det[idx]
        conic = torch.stack([d_ / det, -b / det, a / det], -1)
        opac, col = opacities[idx], col[idx]
        # where alpha can reach 1/255: sigma <= log(255 o), an ellipse whose bounding box has half-sides
        # sqrt(2 log(255 o) S2_xx) and sqrt(2 log(255 o) S2_yy)
        with torch.no_grad():
            extent = torch.sqrt(2 * torch.log(torch.clamp_min(opac * 255.0, 1.0)))
            rx, ry = extent * torch.sqrt(a), extent * torch.sqrt(d_)
            x0, x1 = mean2d[:, 0] - rx, mean2d[:, 0] + rx
            y0, y1 = mean2d[:, 1] - ry, mean2d[:, 1] + ry
        bg = backgrounds[c]
        rgb_tiles, acc_tiles = [], []
        for ty in range(0, height, tile_size):
            row_rgb, row_acc = [], []
            ty1 = min(ty + tile_size, height)
            in_row = (y1 > ty) & (y0 < ty1)
            for tx in range(0, width, tile_size):
                tx1 = min(tx + tile_size, width)
                pix = pixels[ty:ty1, tx:tx1].reshape(-1, 2)
                sel = torch.nonzero(in_row & (x1 > tx) & (x0 < tx1)).flatten()
                if len(sel) == 0:
                    row_rgb.append(bg.expand(ty1 - ty, tx1 - tx, 3))
                    row_acc.append(torch.zeros(ty1 - ty, tx1 - tx, device=dev, dtype=dtype))
                    continue
                tile_rgb, tile_acc = _composite(pix, mean2d[sel], conic[sel], opac[sel], col[sel], bg)
                row_rgb.append(tile_rgb.reshape(ty1 - ty, tx1 - tx, 3))
                row_acc.append(tile_acc.reshape(ty1 - ty, tx1 - tx))
            rgb_tiles.append(torch.cat(row_rgb, 1))
            acc_tiles.append(torch.cat(row_acc, 1))
        rgb, acc = torch.cat(rgb_tiles, 0), torch.cat(acc_tiles, 0)
        rgb_out.append(rgb)
        alpha_out.append(acc[..., None])
    return torch.stack(rgb_out), torch.stack(alpha_out)

