"""DrQ random shift: layout, bounds, independence, determinism."""
import pytest
import torch

from learner.augment import random_shift

H = W = 32


def _coordinate_images(batch: int) -> torch.Tensor:
    """uint8 [B, H, W, 3] whose channel 0 is the row and channel 1 the column of each pixel."""
    rows = torch.arange(H).view(1, H, 1).expand(batch, H, W)
    cols = torch.arange(W).view(1, 1, W).expand(batch, H, W)
    sample = torch.arange(batch).view(batch, 1, 1).expand(batch, H, W)
    return torch.stack([rows, cols, sample], dim=-1).to(torch.uint8)


def _shifts(shifted: torch.Tensor) -> torch.Tensor:
    """The (dy, dx) of each sample, read at the centre pixel (never clamped for pad < H/2)."""
    centre = shifted[:, H // 2, W // 2, :2].long()
    return centre - torch.tensor([H // 2, W // 2])


def test_uint8_nhwc_is_a_replicate_padded_crop_within_pad():
    images = _coordinate_images(16)
    g = torch.Generator().manual_seed(0)
    out = random_shift(images, pad=4, generator=g)
    assert out.shape == images.shape and out.dtype == torch.uint8
    shifts = _shifts(out)
    assert shifts.abs().max() <= 4
    assert len({tuple(s) for s in shifts.tolist()}) > 1  # samples are shifted independently
    # Every pixel is the clamped (replicate-padded) source pixel of the sample itself.
    for b, (dy, dx) in enumerate(shifts.tolist()):
        rows = (torch.arange(H) + dy).clamp(0, H - 1)
        cols = (torch.arange(W) + dx).clamp(0, W - 1)
        assert torch.equal(out[b], images[b][rows][:, cols])


def test_float_nchw_keeps_layout_and_values():
    images = _coordinate_images(8).permute(0, 3, 1, 2).float() / 7.0  # [B, C, H, W] float
    g = torch.Generator().manual_seed(1)
    out = random_shift(images, pad=3, generator=g)
    assert out.shape == images.shape and out.dtype == torch.float32
    # The same offsets applied to the uint8 NHWC copy give the same pixels.
    g = torch.Generator().manual_seed(1)
    reference = random_shift(_coordinate_images(8), pad=3, generator=g)
    torch.testing.assert_close(out, reference.permute(0, 3, 1, 2).float() / 7.0)


def test_pad_zero_is_identity():
    images = _coordinate_images(4)
    assert torch.equal(random_shift(images, pad=0), images)


def test_seeded_generator_is_deterministic():
    images = _coordinate_images(8)
    a = random_shift(images, 4, torch.Generator().manual_seed(7))
    b = random_shift(images, 4, torch.Generator().manual_seed(7))
    c = random_shift(images, 4, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="dtype"):
        random_shift(torch.zeros(2, 8, 8, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="batch of images"):
        random_shift(torch.zeros(8, 8, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="non-negative"):
        random_shift(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), pad=-1)
