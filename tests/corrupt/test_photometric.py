"""Brightness, contrast, saturate and motion blur (issue 28): the RAVAR authors' formulas and tables, against
transcriptions of them (``dataloaders/ravar_dataset.py``; imagecorruptions' brightness and saturate are the same
lines), with the standard library's HSV conversion (``colorsys``, the definition skimage's rgb2hsv / hsv2rgb use)."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest

from refava.corrupt import CorruptionError, corrupt_clip, resolve
from refava.corrupt.photometric import BRIGHTNESS_C, CONTRAST_C, MOTION_FRAMES, SATURATE_C


def _image(seed: int = 0, h: int = 24, w: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[0, :4] = [[0, 0, 0], [255, 255, 255], [128, 128, 128], [7, 7, 7]]     # black, white and greys
    img[1, :3] = [[255, 0, 0], [0, 0, 255], [250, 250, 0]]                    # saturated ones
    return img


def _hsv_reference(img: np.ndarray, fn) -> np.ndarray:
    """``x / 255 -> rgb2hsv -> fn(h, s, v) -> hsv2rgb -> clip * 255`` pixel by pixel (the authors' float output)."""
    out = np.empty(img.shape, dtype=np.float64)
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            h, s, v = colorsys.rgb_to_hsv(*(img[y, x] / 255.0))
            out[y, x] = colorsys.hsv_to_rgb(*fn(h, s, v))
    return np.clip(out, 0, 1) * 255


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_brightness_and_saturate_are_within_one_grey_level_of_the_reference(severity):
    img = _image(severity)
    c = BRIGHTNESS_C[severity - 1]
    ours = corrupt_clip(img[None], "brightness", severity, np.random.default_rng(0))[0].astype(float)
    want = _hsv_reference(img, lambda h, s, v: (h, s, min(max(v + c, 0), 1)))
    assert np.abs(ours - want).max() <= 1.0
    a, b = SATURATE_C[severity - 1]
    ours = corrupt_clip(img[None], "saturate", severity, np.random.default_rng(0))[0].astype(float)
    want = _hsv_reference(img, lambda h, s, v: (h, min(max(s * a + b, 0), 1), v))
    assert np.abs(ours - want).max() <= 1.0


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_contrast_follows_the_authors_table(severity):
    img = _image(10 + severity)
    c = CONTRAST_C[severity - 1]
    assert CONTRAST_C == (0.5, 0.4, 0.3, 0.2, 0.1)
    x = img / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    want = np.clip((x - means) * c + means, 0, 1) * 255
    ours = corrupt_clip(img[None], "contrast", severity, np.random.default_rng(0))[0].astype(float)
    assert np.abs(ours - want).max() <= 0.5 + 1e-9                      # rounded where the authors truncate


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_motion_blur_is_the_authors_mean_over_2c_frames_inside_the_clip(severity):
    rng = np.random.default_rng(severity)
    clip = rng.integers(0, 256, (20, 12, 16, 3), dtype=np.uint8)
    c = MOTION_FRAMES[severity - 1]
    ours = corrupt_clip(clip, "motion_blur", severity, np.random.default_rng(0))
    assert ours.shape == clip.shape                                      # the clip keeps its length
    for i in range(c, clip.shape[0] - c):                               # the authors' frames
        want = np.sum(clip[i - c:i + c], axis=0, dtype=np.float64) / (2.0 * c)
        assert np.array_equal(ours[i], np.rint(want).astype(np.uint8)), i
    # the ends: the window clamped (the first frame repeats before the clip)
    want0 = np.sum(clip[np.clip(np.arange(-c, c), 0, 19)], axis=0, dtype=np.float64) / (2.0 * c)
    assert np.array_equal(ours[0], np.rint(want0).astype(np.uint8))


def test_a_larger_keyframe_is_blurred_with_its_resized_neighbours_and_nothing_is_random():
    from refava.corrupt import corrupt_frames

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(8)]
    keyframe = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    clip = frames[:4] + [keyframe] + frames[4:]
    spec = resolve("motion_blur", 2)
    a = corrupt_frames(clip, spec, np.random.default_rng(1))
    b = corrupt_frames(clip, spec, np.random.default_rng(2))
    assert a[4].shape == keyframe.shape and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[4], keyframe)


def test_the_new_types_have_no_authors_preset_and_resolve_by_name():
    assert resolve("motion", 3).name == "motion_blur_s3" and resolve("contrast", 5).params["c"] == 0.1
    with pytest.raises(CorruptionError, match="no setting for it"):
        resolve("brightness", preset="ravar")


@pytest.mark.parametrize("c", [1, 2, 3, 4, 6])
def test_motion_blur_equals_the_clamped_window_mean_at_every_frame_ties_included(c):
    """The sliding sum gives, at every frame (the ends too), the float64 mean of frames k - c .. k + c - 1 clamped
    to the clip, rounded half to even: clips of 1 to 20 frames, random values and values whose means tie."""
    from refava.corrupt.photometric import motion_blur

    rng = np.random.default_rng(c)
    for n in (1, 2, 3, 8, 9, 20):
        for frames in ([rng.integers(0, 256, (9, 11, 3), dtype=np.uint8) for _ in range(n)],
                       [np.full((3, 4, 3), v, np.uint8) for v in rng.choice([0, 1, 127, 128, 254, 255], n)]):
            stack = np.stack(frames).astype(np.float64)
            want = [np.rint(stack[np.clip(np.arange(k - c, k + c), 0, n - 1)].sum(axis=0) / (2 * c)).astype(np.uint8)
                    for k in range(n)]
            assert all(np.array_equal(a, b) for a, b in zip(motion_blur(frames, c), want)), (c, n)
