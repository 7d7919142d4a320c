"""corrupt_clip: shapes, reproducibility across reruns and thread counts, and clear errors on bad input."""
from __future__ import annotations

import numpy as np
import pytest

from refava.corrupt import CORRUPTIONS, CorruptionError, clip_rng, corrupt_clip, resolve

SIZES = [(224, 224), (256, 340), (720, 1280), (199, 301), (1, 1), (2, 7)]


def clip(t, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", CORRUPTIONS)
@pytest.mark.parametrize("h,w", SIZES)
def test_output_is_uint8_of_the_input_shape(kind, h, w):
    frames = clip(2 if h * w > 500_000 else 3, h, w)
    out = corrupt_clip(frames, kind, 3, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == frames.shape


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_same_bytes_across_reruns_and_thread_counts(kind):
    frames = clip(8, 96, 128)
    outs = [corrupt_clip(frames, kind, 4, clip_rng(7, "movie___0902", f"{kind}_s4"), threads=n) for n in (1, 2, 3, 8)]
    for other in outs[1:]:
        assert np.array_equal(outs[0], other)
    again = corrupt_clip(frames, kind, 4, clip_rng(7, "movie___0902", f"{kind}_s4"))
    assert np.array_equal(outs[0], again)
    different = corrupt_clip(frames, kind, 4, clip_rng(8, "movie___0902", f"{kind}_s4"))
    # the paper's four, bit errors, freeze and the jumbles draw random numbers; the others draw none
    assert np.array_equal(outs[0], different) == (kind in ("brightness", "contrast", "saturate", "motion_blur",
                                                            "h264_crf", "h264_abr", "frame_rate", "reverse"))


@pytest.mark.parametrize("kind,style", [(k, "streaks") for k in CORRUPTIONS] + [("rain", "drops")])
def test_any_memory_layout_gives_the_same_bytes(kind, style):
    frames = clip(3, 40, 50)
    views = (np.ascontiguousarray(frames[:, ::-1])[:, ::-1],                 # negative strides, same values
             np.ascontiguousarray(frames.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3),   # column-major frames
             np.asfortranarray(frames))
    want = corrupt_clip(frames, kind, 3, clip_rng(1, "c", kind), style=style)
    for view in views:
        assert not view.flags.c_contiguous
        got = corrupt_clip(view, kind, 3, clip_rng(1, "c", kind), style=style)
        assert got.flags.c_contiguous and np.array_equal(got, want)


def test_clip_generators_depend_on_seed_clip_and_setting_only():
    a = clip_rng(0, "m___0902", "fog_s3").integers(0, 2**62, 4)
    assert np.array_equal(a, clip_rng(0, "m___0902", "fog_s3").integers(0, 2**62, 4))
    for other in (clip_rng(1, "m___0902", "fog_s3"), clip_rng(0, "m___0903", "fog_s3"), clip_rng(0, "m___0902", "fog_s4")):
        assert not np.array_equal(a, other.integers(0, 2**62, 4))


def test_global_random_state_is_neither_used_nor_touched():
    frames = clip(2, 32, 32)
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    a = corrupt_clip(frames, "rain", 2, np.random.default_rng(1))
    np.random.seed(12345)
    b = corrupt_clip(frames, "rain", 2, np.random.default_rng(1))
    assert np.array_equal(a, b)
    np.random.seed(0)
    assert np.array_equal(np.random.get_state()[1], before)


def test_the_paper_preset_is_what_the_appendix_describes():
    assert resolve("gaussian_noise", preset="paper").params == {"sigma": 0.2}
    assert resolve("shot_noise", preset="paper").params["c"] == 5
    rain = resolve("rain", preset="paper")
    assert rain.severity == 2 and rain.style == "drops" and rain.name == "rain_paper"    # the appendix's ellipses
    assert resolve("fog", preset="paper").params["published"] is False
    assert resolve("fog", preset="ravar").name == "fog_paper"                            # the old name
    assert resolve("rain", 2, style="drops").name == "rain_s2_drops"
    frames = np.zeros((4, 48, 64, 3), np.uint8)
    out = corrupt_clip(frames, "rain", None, np.random.default_rng(0), preset="paper")
    assert not np.array_equal(out[0], out[1])                           # fresh drops every frame


def _authors_rain_reference(image, slant_draw, drops_xy):
    """The authors' rain_process with their drops (transcribed from ravar_dataset.py)."""
    import cv2

    mask = np.zeros(image.shape[:2])
    for x, y in drops_xy:
        cv2.line(mask, (x, y), (x - 1, y + 30), (220, 220, 220), 1)
    mask = np.stack((mask, mask, mask), axis=2)
    image_rain = image + np.array(mask * (1 - image / 255.0) * (1 - np.mean(image) / 255.0), dtype=np.uint8)
    blur_rain = cv2.blur(image_rain, (3, 3))
    rgb = np.array(blur_rain * mask / 255.0 + image * (1 - mask / 255.0)) / 255.
    means = np.mean(rgb, axis=(0, 1), keepdims=True)
    return np.array(np.clip((rgb - means) * 0.8 + means, 0, 1) * 255, dtype=np.uint8)


def test_the_authors_code_preset_is_their_code():
    from refava.corrupt.authors import authors_rain

    spec = resolve("gaussian_noise", preset="authors-code")
    assert spec.params["sigma"] == pytest.approx(0.2 / 255) and spec.name == "gaussian_noise_authors_code"
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    # the same draws as authors_rain makes: slant, then (x, y) per drop
    draws = np.random.default_rng(9)
    slant = int(draws.integers(-10, 10))
    xy = [(int(draws.integers(slant, 160)) if slant < 0 else int(draws.integers(0, 160 - slant)),
           int(draws.integers(0, 120 - 30))) for _ in range((120 * 160) // 770)]
    assert np.array_equal(authors_rain(image, np.random.default_rng(9)), _authors_rain_reference(image, slant, xy))
    # every streak has slant -1 and is 30 px long at any frame size: the same count per pixel, not per 224 px
    big = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert authors_rain(big, np.random.default_rng(1)).shape == big.shape
    # fog: the centre 224 x 224 crop, as theirs; smaller frames refused with the reason
    clip = rng.integers(0, 256, (3, 256, 300, 3), dtype=np.uint8)
    out = corrupt_clip(clip, "fog", None, np.random.default_rng(0), preset="authors-code")
    assert out.shape == (3, 224, 224, 3)
    from refava.corrupt import CorruptionError

    with pytest.raises(CorruptionError, match="centre 224x224"):
        corrupt_clip(clip[:, :200], "fog", None, np.random.default_rng(0), preset="authors-code")
    # and the Gaussian line adds 0.2 grey levels: almost every value stays, where the paper preset moves them all
    flat = np.full((1, 64, 64, 3), 100, np.uint8)
    theirs = corrupt_clip(flat, "gaussian_noise", None, np.random.default_rng(0), preset="authors-code")
    ours = corrupt_clip(flat, "gaussian_noise", None, np.random.default_rng(0), preset="paper")
    assert np.mean(theirs != 100) < 0.05 and np.mean(ours != 100) > 0.9


@pytest.mark.parametrize("frames,kind,severity,match", [
    (np.zeros((2, 8, 8, 3), np.float32), "fog", 3, "dtype uint8, found float32"),
    (np.zeros((2, 8, 8, 3), np.int16), "fog", 3, "dtype uint8, found int16"),
    (np.zeros((8, 8, 3), np.uint8), "fog", 3, "rank 4 .* found rank 3"),
    (np.zeros((1, 2, 8, 8, 3), np.uint8), "fog", 3, "rank 4 .* found rank 5"),
    (np.zeros((2, 8, 8, 4), np.uint8), "fog", 3, r"shape \(H, W, 3\)"),
    (np.zeros((2, 0, 8, 3), np.uint8), "fog", 3, r"H, W >= 1"),
    (np.zeros((0, 8, 8, 3), np.uint8), "fog", 3, "at least one frame"),
    ([[1, 2]], "fog", 3, "numpy array"),
    (np.zeros((2, 8, 8, 3), np.uint8), "snow", 3, "unknown corruption type 'snow'"),
    (np.zeros((2, 8, 8, 3), np.uint8), "fog", 0, "severity must be an integer 1..5, found 0"),
    (np.zeros((2, 8, 8, 3), np.uint8), "fog", 6, "severity must be an integer 1..5, found 6"),
    (np.zeros((2, 8, 8, 3), np.uint8), "fog", 2.5, "found 2.5"),
    (np.zeros((2, 8, 8, 3), np.uint8), "fog", "3", "found '3'"),
    (np.zeros((2, 8, 8, 3), np.uint8), "fog", None, "found None"),
    (np.zeros((2, 8, 8, 3), np.uint8), "fog", True, "found True"),
])
def test_bad_input_gives_a_clear_error(frames, kind, severity, match):
    with pytest.raises(CorruptionError, match=match):
        corrupt_clip(frames, kind, severity, np.random.default_rng(0))


def test_rng_is_required_and_presets_and_styles_are_checked():
    frames = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(CorruptionError, match="numpy.random.Generator"):
        corrupt_clip(frames, "fog", 3)
    with pytest.raises(CorruptionError, match="numpy.random.Generator"):
        corrupt_clip(frames, "fog", 3, 42)
    with pytest.raises(CorruptionError, match="unknown preset 'imagenet'"):
        corrupt_clip(frames, "fog", None, np.random.default_rng(0), preset="imagenet")
    with pytest.raises(CorruptionError, match="unknown rain style 'snowflakes'"):
        corrupt_clip(frames, "rain", 2, np.random.default_rng(0), style="snowflakes")
    assert isinstance(CorruptionError("x"), ValueError)
