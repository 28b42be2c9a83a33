"""The Gaussian-splatting library (envs/gaussians/) on the CPU: the reference rasterizer against closed-form
renders of single Gaussians, depth ordering, the .ply format, rigid posing, fitting; and, on a GPU with
gsplat, gsplat against the reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from envs.gaussians import Cameras, GaussianCloud, intrinsics, look_at, read_ply, render, write_ply
from envs.gaussians.fit import FitConfig, evaluate, fit
from envs.gaussians.losses import psnr
from envs.gaussians.posing import invert_pose, pose_cloud, pose_matrix
from envs.gaussians.rasterize_torch import ALPHA_MIN, covariances, quat_to_rotmat, rasterize_reference
from envs.gaussians.sh import SH_C1, eval_sh
from envs.gaussians.views import Views

W = H = 40
EPS2D = 0.3


def _pixel_centres():
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    return torch.stack([xs, ys], -1) + 0.5


def _analytic(mean2d, cov2d, opacity, colour, background):
    """Closed form of one splat: alpha = o exp(-d^T S^-1 d / 2) (0 under 1/255), rgb = alpha c + (1 - alpha) bg."""
    d = _pixel_centres() - mean2d
    inv = torch.linalg.inv(cov2d)
    sigma = 0.5 * torch.einsum("hwi,ij,hwj->hw", d, inv, d)
    alpha = opacity * torch.exp(-sigma)
    alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))
    return alpha[..., None] * colour + (1 - alpha[..., None]) * background, alpha


def _random_quat(rng):
    q = torch.as_tensor(rng.normal(size=4), dtype=torch.float64)
    return q / q.norm()


@pytest.mark.parametrize("anisotropic", [False, True])
def test_single_gaussian_matches_closed_form(anisotropic):
    """On the optical axis the projection's Jacobian is diag(f/z, f/z) (its depth column vanishes), so the
    splat's 2D covariance is (f/z)^2 times the camera-frame covariance's xy block, plus the 0.3 px^2 filter."""
    rng = np.random.default_rng(1)
    z, f = 2.0, 60.0
    K = torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], dtype=torch.float64)
    if anisotropic:
        quat, scales = _random_quat(rng), torch.tensor([0.12, 0.04, 0.07], dtype=torch.float64)
    else:
        quat, scales = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64), torch.full((3,), 0.08, dtype=torch.float64)
    means = torch.tensor([[0.0, 0.0, z]], dtype=torch.float64)
    colour = torch.tensor([0.9, 0.4, 0.1], dtype=torch.float64)
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    rgb, alpha = rasterize_reference(means, quat[None], scales[None], torch.tensor([0.8], dtype=torch.float64),
                                     colour[None], torch.eye(4, dtype=torch.float64)[None], K[None], W, H,
                                     backgrounds=bg[None], eps2d=EPS2D, tile_size=16)
    cov3 = covariances(quat[None], scales[None])[0]
    cov2d = (f / z) ** 2 * cov3[:2, :2] + EPS2D * torch.eye(2, dtype=torch.float64)
    want_rgb, want_alpha = _analytic(torch.tensor([W / 2, H / 2], dtype=torch.float64), cov2d, 0.8, colour, bg)
    assert float(want_alpha.max()) > 0.5 and float((want_alpha > 0).double().mean()) > 0.05
    torch.testing.assert_close(alpha[0, ..., 0], want_alpha, atol=1e-10, rtol=0)
    torch.testing.assert_close(rgb[0], want_rgb, atol=1e-10, rtol=0)


def test_depth_order_and_front_to_back_compositing():
    """Two splats on the axis, given back first: the nearer one is composited first,
    C = a1 c1 + (1 - a1) a2 c2 + (1 - a1)(1 - a2) bg at every pixel."""
    f = 30.0
    K = torch.tensor([[[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]]], dtype=torch.float64)
    means = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 1.5]], dtype=torch.float64)
    scales = torch.tensor([[0.3] * 3, [0.05] * 3], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=torch.float64)
    opac = torch.tensor([0.9, 0.6], dtype=torch.float64)
    cols = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    rgb, alpha = rasterize_reference(means, quats, scales, opac, cols, torch.eye(4, dtype=torch.float64)[None], K, W, H)
    centre = torch.tensor([W / 2, H / 2], dtype=torch.float64)
    eye = EPS2D * torch.eye(2, dtype=torch.float64)
    _, a_back = _analytic(centre, (f / 3.0 * 0.3) ** 2 * torch.eye(2, dtype=torch.float64) + eye, 0.9, cols[0], 0)
    _, a_front = _analytic(centre, (f / 1.5 * 0.05) ** 2 * torch.eye(2, dtype=torch.float64) + eye, 0.6, cols[1], 0)
    want = a_front[..., None] * cols[1] + ((1 - a_front) * a_back)[..., None] * cols[0]
    torch.testing.assert_close(rgb[0], want, atol=1e-10, rtol=0)
    torch.testing.assert_close(alpha[0, ..., 0], 1 - (1 - a_front) * (1 - a_back), atol=1e-10, rtol=0)
    assert float(rgb[0, H // 2, W // 2, 0]) > float(rgb[0, H // 2, W // 2, 2])  # red in front of blue


def test_opaque_stack_stops_at_transmittance_floor():
    """Many near-opaque splats at one pixel: compositing stops before the transmittance would reach 1e-4,
    so alpha saturates at 1 - 0.01^2 (two splats of alpha 0.99) and the third and later add nothing."""
    f = 30.0
    K = torch.tensor([[[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]]], dtype=torch.float64)
    n = 5
    means = torch.tensor([[0.0, 0.0, 1.0 + 0.1 * i] for i in range(n)], dtype=torch.float64)
    scales = torch.full((n, 3), 0.2, dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * n, dtype=torch.float64)
    cols = torch.eye(3, dtype=torch.float64)[torch.arange(n) % 3]
    rgb, alpha = rasterize_reference(means, quats, scales, torch.ones(n, dtype=torch.float64), cols,
                                     torch.eye(4, dtype=torch.float64)[None], K, W, H)
    centre_alpha = float(alpha[0, H // 2, W // 2, 0])
    assert centre_alpha == pytest.approx(1 - 0.01 ** 2, abs=1e-9)
    assert float(rgb[0, H // 2, W // 2, 2]) == 0.0  # the third splat (blue) is never reached


def test_spherical_harmonics_view_dependence():
    """Degree 1: colour = 0.5 + C0 dc + C1 (-y s1 + z s2 - x s3); clamped at 0."""
    sh = torch.zeros(1, 4, 3)
    sh[0, 0] = torch.tensor([0.2, 0.0, -0.2])
    sh[0, 3] = torch.tensor([-0.5, 0.0, 0.0])  # red grows towards +x
    dirs = torch.tensor([[1.0, 0.0, 0.0]])
    got = eval_sh(sh, dirs * 5.0)[0]
    want = 0.5 + 0.28209479177387814 * sh[0, 0] + SH_C1 * torch.tensor([0.5, 0.0, 0.0])
    torch.testing.assert_close(got, want.clamp_min(0))
    assert float(eval_sh(sh, -dirs)[0, 0]) < float(got[0])


def _random_cloud(n, degree, seed, spread=0.3, centre=(0.0, 0.0, 0.0)):
    g = torch.Generator().manual_seed(seed)
    return GaussianCloud(torch.randn(n, 3, generator=g) * spread + torch.tensor(centre), torch.randn(n, 4, generator=g),
                         torch.log(torch.rand(n, 3, generator=g) * 0.04 + 0.01), torch.randn(n, generator=g),
                         torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.3)


def test_ply_round_trip_bit_exact(tmp_path):
    cloud = _random_cloud(257, 3, 0)
    path = tmp_path / "part.ply"
    write_ply(path, cloud)
    header = path.read_bytes()[:2000].split(b"end_header")[0].decode()
    assert "element vertex 257" in header and "property float f_rest_44" in header and "f_rest_45" not in header
    back = read_ply(path)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(back, name), getattr(cloud, name)), name
    # f_rest is channel-major: f_rest_0 is red's first higher coefficient, f_rest_15 green's
    table = np.frombuffer(path.read_bytes(), np.float32, offset=path.read_bytes().index(b"end_header\n") + 11)
    row = table.reshape(257, -1)[0]
    assert row[9] == cloud.sh[0, 1, 0] and row[9 + 15] == cloud.sh[0, 1, 1]


def test_ply_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n")
    with pytest.raises(ValueError, match="ascii"):
        read_ply(bad)
    write_ply(bad, _random_cloud(4, 0, 1))
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_ply(bad)


def _random_pose(seed):
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.uniform(-0.3, 0.3, 3), dtype=torch.float32), _random_quat(rng).float()


def test_posed_gaussians_move_exactly_with_their_part():
    cloud = _random_cloud(50, 1, 2)
    p, q = _random_pose(3)
    moved = pose_cloud(cloud, p, q)
    rot = quat_to_rotmat(q)
    torch.testing.assert_close(moved.means, cloud.means @ rot.T + p)
    torch.testing.assert_close(covariances(moved.quats, moved.scales()),
                               rot @ covariances(cloud.quats, cloud.scales()) @ rot.T, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(moved.opacity_logits, cloud.opacity_logits)
    # the inverse pose brings it back
    back = pose_cloud(moved, *invert_pose(p, q))
    torch.testing.assert_close(back.means, cloud.means, atol=1e-6, rtol=0)
    torch.testing.assert_close(back.sh, cloud.sh, atol=1e-6, rtol=0)


def test_moved_part_renders_as_seen_from_the_inversely_moved_camera():
    """render(T . part, V) == render(part, V T): moving the part is moving the camera the other way
    (colours included: the degree-1 SH band turns with the part)."""
    cloud = _random_cloud(60, 1, 4, spread=0.1)
    p, q = _random_pose(5)
    K = intrinsics(math.radians(50), 32, 32)[None]
    moved = pose_cloud(cloud, p, q)
    view_moved = look_at((torch.tensor([0.6, 0.4, 0.5]) + p).tolist(), p.tolist())[None]
    a, _ = render(moved, Cameras(view_moved, K, 32, 32))
    b, _ = render(cloud, Cameras(view_moved @ pose_matrix(p, q)[None], K, 32, 32))
    assert float(a.std()) > 0.02  # the part is in view
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)


def _orbit(n, radius, size):
    views = []
    for i in range(n):
        a = 2 * math.pi * i / n
        views.append(look_at([radius * math.cos(a), radius * math.sin(a), 0.5 * radius * (1 + (i % 2))], [0, 0, 0]))
    return Cameras(torch.stack(views), intrinsics(math.radians(45), size, size).expand(n, 3, 3), size, size)


@pytest.fixture
def one_thread():
    """Small renders run fastest on one thread (torch's pool costs more than it gives at 16 x 16 pixels,
    most of all on a shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_scene(n_views, size, seed):
    truth = _random_cloud(40, 0, seed, spread=0.08)
    truth.opacity_logits = truth.opacity_logits.abs() + 1.0
    cams = _orbit(n_views, 0.7, size)
    with torch.no_grad():
        rgb, alpha = render(truth, cams, background=torch.zeros(3))
    return truth, Views(rgb, alpha[..., 0], cams)  # images are colour x alpha already, masks the alpha


def test_fit_recovers_a_tiny_scene(one_thread):
    """Images of a known cloud, a perturbed start: the fit lowers the loss and reaches 28 dB on held-out views."""
    truth, views = _tiny_scene(12, 16, 6)
    train, held = views.split(4)
    g = torch.Generator().manual_seed(7)
    start = GaussianCloud.from_points(truth.means + 0.02 * torch.randn(40, 3, generator=g), torch.full((40, 3), 0.5),
                                      0.02)
    before = evaluate(start, held)
    fitted, history = fit(start, train, FitConfig(steps=60, views_per_step=2, lr_means=5e-3, densify_from=10**9,
                                                  mask_weight=0.0), seed=0)
    after = evaluate(fitted, held)
    assert np.mean(history["loss"][-10:]) < 0.5 * np.mean(history["loss"][:10])
    assert after > before + 5 and after > 28, (before, after)


def test_fit_densifies_and_prunes(one_thread):
    truth, views = _tiny_scene(6, 16, 8)
    start = GaussianCloud.from_points(truth.means[:10].clone(), torch.full((10, 3), 0.5), 0.03)
    fitted, history = fit(start, views, FitConfig(steps=21, densify_from=10, densify_every=10, densify_until=21,
                                                  densify_fraction=0.5))
    assert history["num_gaussians"] == len(fitted) > 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (and gsplat): scripts/gs_gpu.sh runs it")
def test_gsplat_matches_reference_on_gpu():
    pytest.importorskip("gsplat")
    from envs.gaussians.rasterize_gsplat import load_gsplat
    load_gsplat()  # a failed build is an error here, not a skip
    torch.manual_seed(0)
    cloud = _random_cloud(3000, 3, 9, spread=0.15).to("cuda")
    cloud.opacity_logits = cloud.opacity_logits.clamp(max=2.0)  # below 0.99: the back ends' alpha caps differ
    cams = _orbit(4, 0.8, 128).to("cuda")
    ref, ref_a = render(cloud, cams, background=torch.tensor([0.2, 0.3, 0.4]), backend="torch")
    gs, gs_a = render(cloud, cams, background=torch.tensor([0.2, 0.3, 0.4]), backend="gsplat")
    assert psnr(gs.clamp(0, 1), ref.clamp(0, 1)) >= 40
    assert psnr(gs_a, ref_a) >= 40
