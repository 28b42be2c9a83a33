"""envs.video.save_video: real mp4 files through imageio-ffmpeg, read back."""
from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest

from envs.video import save_video


def frames(count: int, height: int, width: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    return [np.roll(base, shift, axis=1) for shift in range(count)]


@pytest.mark.parametrize(("height", "width"), [(128, 128), (95, 127)])
def test_save_video_writes_a_readable_mp4(tmp_path, height, width):
    path = save_video(frames(6, height, width), tmp_path / "sub" / "episode.mp4", fps=10)
    assert path.is_file() and path.stat().st_size > 0
    reader = imageio.get_reader(str(path))
    decoded = [frame for frame in reader]
    assert reader.get_meta_data()["fps"] == pytest.approx(10)
    reader.close()
    assert len(decoded) == 6
    # Odd sizes are padded to even ones (H.264 with yuv420p needs that), never rescaled.
    assert decoded[0].shape == (height + height % 2, width + width % 2, 3)


@pytest.mark.parametrize(
    ("frame_list", "path", "fps", "message"),
    [
        ([], "a.mp4", 10, "no frames"),
        (frames(2, 8, 8), "a.avi", 10, "mp4"),
        (frames(2, 8, 8), "a.mp4", 0, "fps"),
        ([np.zeros((8, 8), np.uint8)], "a.mp4", 10, "uint8"),
        ([np.zeros((8, 8, 3), np.float32)], "a.mp4", 10, "uint8"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], "a.mp4", 10, "shape"),
    ],
)
def test_save_video_rejects_bad_input(tmp_path, frame_list, path, fps, message):
    with pytest.raises(ValueError, match=message):
        save_video(frame_list, tmp_path / path, fps)
