"""Video I/O: probe, frame order and times, writer, JPEG, and errors that name the file."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from factories import index_image, make_indexed_video, read_index
from refava.errors import MissingMediaError, VideoDecodeError
from refava.video import decode_jpeg, encode_jpeg, iter_frames, probe, scaled_size


@pytest.mark.parametrize("name, fps, codec", [("a.mp4", 30, "h264"), ("b.mkv", Fraction(30000, 1001), "h264"),
                                               ("c.webm", 25, "vp9")])
def test_probe_and_every_frame_in_order(tmp_path, name, fps, codec):
    path = tmp_path / name
    make_indexed_video(path, 60, fps=fps)
    info = probe(path)
    assert (info.codec, info.width, info.height, info.frame_count) == (codec, 160, 120, 60)
    assert info.fps == pytest.approx(float(fps), rel=1e-3)
    assert info.duration_s == pytest.approx(60 / float(fps), abs=0.05)
    frames = list(iter_frames(path))
    assert [read_index(f.to_rgb()) for f in frames] == list(range(60))
    assert [float(f.time) for f in frames] == pytest.approx([i / float(fps) for i in range(60)], abs=1e-3)


def test_iter_frames_window_starts_at_the_right_frame(tmp_path):
    path = tmp_path / "a.mp4"
    make_indexed_video(path, 300, fps=30)  # 10 s, keyframes every 250 frames by default
    frames = list(iter_frames(path, 5.0, 6.0))
    assert [read_index(f.to_rgb()) for f in frames] == list(range(150, 180))


def test_variable_frame_rate_times_are_the_container_times(tmp_path):
    times = [Fraction(0)]
    for step in [1, 3, 2, 1, 1, 4, 2, 3] * 5:
        times.append(times[-1] + Fraction(step, 60))
    path = tmp_path / "vfr.mkv"
    make_indexed_video(path, len(times), pts_s=times, time_base=Fraction(1, 1000))
    frames = list(iter_frames(path))
    assert [read_index(f.to_rgb()) for f in frames] == list(range(len(times)))
    assert [float(f.time) for f in frames] == pytest.approx([float(t) for t in times], abs=1e-3)


def test_missing_and_garbage_files_raise_with_the_path(tmp_path):
    with pytest.raises(MissingMediaError, match="nope.mp4"):
        probe(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 5000)
    with pytest.raises(VideoDecodeError, match="junk.mp4"):
        probe(junk)


def test_jpeg_round_trip_and_errors():
    img = index_image(12345, 160, 120)
    back = decode_jpeg(encode_jpeg(img[:, :, ::-1].copy(), 95))
    assert back.shape == img.shape and read_index(back) == 12345
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 4
    with pytest.raises(VideoDecodeError, match="cannot decode"):
        decode_jpeg(b"not a jpeg")


def test_scaled_size_never_enlarges():
    assert scaled_size(1280, 720, 256) == (455, 256)
    assert scaled_size(720, 1280, 256) == (256, 455)
    assert scaled_size(160, 120, 256) == (160, 120)
    assert scaled_size(160, 120, 0) == (160, 120)


@pytest.mark.parametrize("width, height", [(171, 96), (96, 171), (301, 199), (160, 120)])
def test_yuv_planes_jpeg_of_any_size_depends_only_on_the_planes(width, height):
    """libjpeg-turbo reads 4:2:0 luma padded to even width and height; an odd-sized plane must not let it read
    the memory after the array (the JPEG changed from run to run before this was handled)."""
    from refava.video import encode_planes_jpeg

    rng = np.random.default_rng(0)
    y = rng.integers(16, 236, (height, width), dtype=np.uint8)
    u = rng.integers(16, 241, ((height + 1) // 2, (width + 1) // 2), dtype=np.uint8)
    v = rng.integers(16, 241, u.shape, dtype=np.uint8)
    outputs = set()
    for trial in range(8):
        # each plane sits at the start of a buffer whose tail is different noise every time
        planes = []
        for plane in (y, u, v):
            buffer = rng.integers(0, 256, plane.size + 4 * plane.shape[1] + 64, dtype=np.uint8)
            buffer[:plane.size] = plane.ravel()
            planes.append(buffer[:plane.size].reshape(plane.shape))
        data, w, h = encode_planes_jpeg(*planes, True, None, 95)
        assert (w, h) == (width, height)
        outputs.add(data)
    assert len(outputs) == 1
    back = decode_jpeg(outputs.pop(), rgb=False)
    assert back.shape == (height, width, 3)
