"""DrQ image augmentation: random shifts of a few pixels.

DrQ (Kostrikov et al., 2020) pads each image by replicating its border pixels
and crops a random window of the original size back out. For the critic this
is a cheap regulariser: a Q-function that must agree across slightly shifted
views cannot latch onto single pixels, which is what makes pixel SAC learn
from few samples.

The crop is computed without building the padded images: output pixel (y, x)
of a sample shifted by (dy, dx) is input pixel (clamp(y + dy), clamp(x + dx)),
and clamping to the border is exactly replicate padding. One gather over the
whole batch does it, on the images' own device.
"""
from __future__ import annotations

import torch
from torch import Tensor


def random_shift(images: Tensor, pad: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """Shift every image of the batch by its own random integer offset in [-pad, pad] (x and y).

    ``images``: uint8 [B, H, W, C] (as stored in replay) or floating [B, C, H, W].
    Returns a new tensor of the same layout, dtype and device (``images`` itself when pad is 0).
    ``generator``: source of the offsets (on any device); the global RNG when None.
    """
    if images.dim() != 4:
        raise ValueError(f"random_shift expects a batch of images [B, H, W, C] or [B, C, H, W], got shape {tuple(images.shape)}")
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"random_shift pad must be a non-negative int, got {pad!r}")
    if images.dtype == torch.uint8:
        channels_last = True
    elif images.is_floating_point():
        channels_last = False
    else:
        raise ValueError(
            f"random_shift takes uint8 [B, H, W, C] or floating [B, C, H, W] images, got dtype {images.dtype}"
        )
    if pad == 0:
        return images

    batch = images.shape[0]
    height, width = (images.shape[1], images.shape[2]) if channels_last else (images.shape[2], images.shape[3])
    draw_device = generator.device if generator is not None else images.device
    # Offsets of the crop window inside the padded image, 0..2*pad, minus pad.
    shifts = torch.randint(0, 2 * pad + 1, (2, batch), generator=generator, device=draw_device)
    shifts = shifts.to(images.device) - pad
    rows = (torch.arange(height, device=images.device) + shifts[0, :, None]).clamp_(0, height - 1)  # [B, H]
    cols = (torch.arange(width, device=images.device) + shifts[1, :, None]).clamp_(0, width - 1)    # [B, W]
    source = (rows[:, :, None] * width + cols[:, None, :]).flatten(1)  # [B, H*W] flat pixel index

    if channels_last:
        flat = images.reshape(batch, height * width, -1)
        out = flat.gather(1, source[:, :, None].expand(-1, -1, flat.shape[2]))
        return out.view(images.shape)
    flat = images.reshape(batch, images.shape[1], height * width)
    out = flat.gather(2, source[:, None, :].expand(-1, flat.shape[1], -1))
    return out.view(images.shape)
