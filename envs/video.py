"""Writing evaluation episodes as mp4 videos (H.264 through imageio-ffmpeg's bundled ffmpeg)."""
from __future__ import annotations

import pathlib
from typing import Iterable

import numpy as np


def save_video(frames: Iterable[np.ndarray], path: str | pathlib.Path, fps: float) -> pathlib.Path:
    """Write RGB frames (each (H, W, 3) uint8, all the same size) to an mp4 file; return its path.

    H.264 with yuv420p needs even width and height, so odd sizes are padded by one black row or
    column rather than rescaled (a rescale would blur 128x128 camera images).
    """
    import imageio.v2 as imageio  # imported here: only evaluators that save videos pay for it

    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    path = pathlib.Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"save_video writes mp4 files; got path {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)

    writer = None
    shape = None
    count = 0
    try:
        for frame in frames:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"frame {count} must be (H, W, 3) uint8, "
                                 f"got {frame.shape} {frame.dtype}")
            if shape is None:
                shape = frame.shape
                # macro_block_size=1 stops imageio from rescaling to multiples of 16 with a warning.
                writer = imageio.get_writer(str(path), fps=fps, codec="libx264", quality=8,
                                            pixelformat="yuv420p", macro_block_size=1)
            elif frame.shape != shape:
                raise ValueError(f"frame {count} has shape {frame.shape}, the first had {shape}")
            pad = ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0))
            writer.append_data(np.pad(frame, pad) if any(p[1] for p in pad) else frame)
            count += 1
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise ValueError("save_video got no frames")
    return path


def save_frame_strip(frames: list[np.ndarray], path: str | pathlib.Path, count: int = 8) -> pathlib.Path:
    """`count` frames evenly spaced over the episode, side by side, as one PNG (for READMEs and reports).

    Uses Pillow, else matplotlib: whichever is installed (no video codec needed).
    """
    if not frames:
        raise ValueError("save_frame_strip needs at least one frame")
    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).round().astype(int)
    strip = np.concatenate([np.asarray(frames[i], dtype=np.uint8) for i in picks], axis=1)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from PIL import Image

        Image.fromarray(strip).save(path)
    except ImportError:
        import matplotlib.pyplot as plt

        plt.imsave(path, strip)
    return path
