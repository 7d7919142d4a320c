"""Each corruption against its reference formula, computed here independently and densely in float64."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from refava.corrupt import SHOT_C, _jit, corrupt_clip, resolve
from refava.corrupt.fog import VIEW_CELLS, apply_fog, fog_field, plasma_fractal
from refava.corrupt.noise import gaussian_noise, shot_noise
from refava.corrupt.rain import streak_frame, streak_mask, streak_params

N = 200_000


def rounded_gaussian_pmf(x: int, sigma: float) -> np.ndarray:
    """P(out = v), v = 0..255, for rint(clip(x/255 + N(0, sigma), 0, 1) * 255), from the normal CDF."""
    cdf = lambda t: 0.5 * math.erfc(-t / math.sqrt(2))  # noqa: E731
    s = 255 * sigma
    edges = [(v - 0.5 - x) / s for v in range(1, 256)]
    c = np.array([0.0] + [cdf(e) for e in edges] + [1.0])
    return np.diff(c)


def rounded_poisson_pmf(x: int, c: float) -> np.ndarray:
    """P(out = v) for rint(clip(Poisson(x/255 * c) / c, 0, 1) * 255) (half to even), summing the Poisson pmf."""
    lam = x / 255 * c
    pmf = np.zeros(256)
    total = 0.0
    for k in range(0, 2000):
        p = math.exp(-lam) if k == 0 else p * lam / k  # noqa: F821 (defined at k == 0)
        v = min(255, int(np.rint(255 * k / c)))
        pmf[v] += p
        total += p
        if k > lam and p < 1e-18:
            break
    pmf[255] += max(0.0, 1.0 - total)
    return pmf


def check_against_pmf(samples: np.ndarray, pmf: np.ndarray) -> None:
    v = np.arange(256)
    mean = (pmf * v).sum()
    var = (pmf * (v - mean) ** 2).sum()
    n = samples.size
    s = samples.astype(np.float64)
    assert abs(s.mean() - mean) < 5 * math.sqrt(var / n) + 1e-9, (s.mean(), mean)
    # the sample variance's standard error, from the fourth central moment
    m4 = (pmf * (v - mean) ** 4).sum()
    assert abs(s.var() - var) < 5 * math.sqrt(max(m4 - var ** 2, 1e-12) / n) + 1e-9, (s.var(), var)
    # and the whole distribution: Kolmogorov distance below the 99.9 % band
    emp = np.cumsum(np.bincount(samples.ravel(), minlength=256)) / n
    assert np.abs(emp - np.cumsum(pmf)).max() < 1.95 / math.sqrt(n)


@pytest.mark.parametrize("sigma", [0.08, 0.2, 0.38])
@pytest.mark.parametrize("level", [0, 3, 77, 128, 250, 255])
def test_gaussian_noise_matches_the_formula_per_level(sigma, level):
    out = gaussian_noise(np.full((N,), level, np.uint8), sigma, np.random.default_rng(level))
    check_against_pmf(out, rounded_gaussian_pmf(level, sigma))


@pytest.mark.parametrize("c", SHOT_C)
@pytest.mark.parametrize("level", [0, 1, 40, 128, 254, 255])
def test_shot_noise_matches_the_formula_per_level(c, level):
    out = shot_noise(np.full((N,), level, np.uint8), c, np.random.default_rng(level + c))
    check_against_pmf(out, rounded_poisson_pmf(level, c))


def test_noise_is_independent_of_the_image_layout_and_mixes_levels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    out = gaussian_noise(image, 0.12, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.uint8
    diff = out.astype(int) - image.astype(int)
    mid = (image > 60) & (image < 195)          # away from clipping: mean 0, sd 255 * sigma
    assert abs(diff[mid].mean()) < 1.0 and abs(diff[mid].std() - 255 * 0.12) < 1.0


def test_a_fair_comparison_with_a_float_sampler_is_not_needed_but_holds():
    """The LUT sampler and numpy's normal sampler give the same per-level statistics."""
    x = np.full((N,), 90, np.uint8)
    ours = gaussian_noise(x, 0.26, np.random.default_rng(3)).astype(float)
    ref = np.rint(np.clip(90 / 255 + np.random.default_rng(4).normal(0, 0.26, N), 0, 1) * 255)
    assert abs(ours.mean() - ref.mean()) < 0.5 and abs(ours.std() - ref.std()) < 0.5


# --- fog -------------------------------------------------------------------------------------------------------

def test_plasma_is_the_diamond_square_map():
    p = plasma_fractal(np.random.default_rng(0), 256, 2.0)
    assert p.shape == (256, 256) and p.min() == 0.0 and p.max() == 1.0
    assert np.array_equal(p, plasma_fractal(np.random.default_rng(0), 256, 2.0))
    assert not np.array_equal(p, plasma_fractal(np.random.default_rng(1), 256, 2.0))
    # toroidal wrap: the map is as smooth across its edges as inside it
    inside = np.abs(np.diff(p, axis=0)).mean()
    across = np.abs(p[0] - p[-1]).mean()
    assert across < 3 * inside
    # a larger decay means less fine detail
    rough = np.abs(np.diff(plasma_fractal(np.random.default_rng(0), 256, 1.4), axis=1)).mean()
    smooth = np.abs(np.diff(plasma_fractal(np.random.default_rng(0), 256, 3.0), axis=1)).mean()
    assert smooth < rough
    with pytest.raises(ValueError, match="power of two"):
        plasma_fractal(np.random.default_rng(0), 200)


def test_fog_field_keeps_the_reference_view_at_every_size():
    p = plasma_fractal(np.random.default_rng(0), 256, 2.0)
    assert np.array_equal(fog_field(p, 224, 224), p[:224, :224])      # the reference's corner, exactly
    big = fog_field(p, 720, 1280)
    assert big.shape == (720, 1280)
    window = p[:round(VIEW_CELLS * 720 / 1280), :VIEW_CELLS]
    small = cv2.resize(big, window.shape[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(small - window).mean() < 0.02                         # same fog, just more pixels
    odd = fog_field(p, 199, 301)
    assert odd.shape == (199, 301) and 0 <= odd.min() and odd.max() <= 1


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_fog_equals_the_formula_given_the_same_field(severity):
    rng = np.random.default_rng(severity)
    frames = rng.integers(0, 256, (4, 120, 170, 3), dtype=np.uint8)
    frames[1] //= 3                                                    # a darker frame: a different M
    spec = resolve("fog", severity)
    c0 = spec.params["c0"]
    field = fog_field(plasma_fractal(rng, 256, spec.params["wibbledecay"]), 120, 170)
    out = apply_fog(frames, field, c0)
    x = frames / 255.0
    m = x.reshape(4, -1).max(axis=1)[:, None, None, None]
    exact = np.clip((x + c0 * field[None, :, :, None]) * m / (m + c0), 0, 1) * 255
    expected = np.rint(exact)
    differ = out != expected
    near_half = np.abs(exact - np.floor(exact) - 0.5) < 1e-3
    assert not (differ & ~near_half).any()                           # only float32 rounding at half-way points
    assert differ.mean() < 1e-3


def test_fog_through_corrupt_clip_uses_one_plasma_per_clip():
    frames = np.full((3, 64, 80, 3), 120, np.uint8)
    out = corrupt_clip(frames, "fog", 4, np.random.default_rng(0))
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])   # a static layer
    assert out.std() > 1                                                       # and a patterned one


# --- rain ------------------------------------------------------------------------------------------------------

RAIN_PATHS = ["sparse", "dense", pytest.param("jit", marks=pytest.mark.skipif(
    not _jit.available(), reason="numba is not installed (refava[fast]); the NumPy paths are tested"))]


def use_rain_path(path: str, monkeypatch) -> None:
    """Make rain take one of its three ways: NumPy with gathered (sparse) or filtered (dense) box sums, or the kernel."""
    from refava.corrupt import rain

    monkeypatch.setattr(rain, "BACKEND", "jit" if path == "jit" else "numpy")
    monkeypatch.setattr(rain, "SPARSE_DROPS", 1.0 if path == "sparse" else 0.0)


def dense_reference_rain(frame: np.ndarray, mask: np.ndarray, contrast: float) -> np.ndarray:
    """The streak formula over the whole frame in float64 (OpenCV's default borders for the blur)."""
    x = frame.astype(np.float64)
    drops = mask[:, :, None] * 220.0
    rain = x + drops * (1 - x / 255) * (1 - x.mean() / 255)
    blur = cv2.blur(rain, (3, 3))
    blend = blur * drops / 255 + x * (1 - drops / 255)
    means = blend.mean(axis=(0, 1), keepdims=True)
    return np.clip((blend - means) * contrast + means, 0, 255)


def assert_streaks_equal_the_formula(frame: np.ndarray, mask: np.ndarray, contrast: float) -> None:
    """refava's streaks equal the float64 formula, rounded, except where the exact value is a rounding tie."""
    exact = dense_reference_rain(frame, mask, contrast)
    differ = streak_frame(frame, mask, contrast) != np.rint(exact)
    near_half = np.abs(exact - np.floor(exact) - 0.5) < 1e-6
    assert not (differ & ~near_half).any()


@pytest.mark.parametrize("severity", [1, 2, 5])
@pytest.mark.parametrize("shape", [(224, 224), (199, 301), (256, 340)])
@pytest.mark.parametrize("path", RAIN_PATHS)
def test_rain_streaks_equal_the_formula(severity, shape, path, monkeypatch):
    """Every way of taking the box sums (NumPy: gathered around sparse drops, filtered for dense ones; the compiled
    kernel) gives the formula."""
    use_rain_path(path, monkeypatch)
    rng = np.random.default_rng(severity)
    frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    mask = streak_mask(*shape, severity, rng)
    assert_streaks_equal_the_formula(frame, mask, streak_params(*shape, severity)["contrast"])


@pytest.mark.parametrize("shape", [(2, 2), (2, 7), (5, 3), (9, 11), (31, 17)])
@pytest.mark.parametrize("path", RAIN_PATHS)
def test_rain_streaks_at_the_borders_of_small_frames(shape, path, monkeypatch):
    """Drops on every border and corner (a random mask at 40 %): reflected borders as OpenCV's default."""
    use_rain_path(path, monkeypatch)
    rng = np.random.default_rng(sum(shape))
    frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    mask = rng.random(shape) < 0.4
    mask[0, 0] = mask[-1, -1] = mask[0, -1] = mask[-1, 0] = True
    assert_streaks_equal_the_formula(frame, mask, 0.7)


@pytest.mark.skipif(not _jit.available(), reason="numba is not installed (refava[fast])")
def test_rain_kernel_gives_the_numpy_bytes(monkeypatch):
    """The compiled kernel and both NumPy ways agree byte for byte (not only up to the formula's rounding ties)
    on frames of many sizes, drop densities, contrasts and dark/bright levels, and through corrupt_clip."""
    from refava.corrupt import rain

    rng = np.random.default_rng(11)
    shapes = [(256, 340), (224, 224), (199, 301), (2, 2), (5, 3), (31, 17), (1, 5), (6, 1), (2, 9), (97, 41)]
    for trial in range(120):
        shape, severity = shapes[trial % len(shapes)], 1 + trial % 5
        frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        if trial % 3 == 0:                                  # a narrow range of levels: many ties in the contrast step
            frame = (frame // 4 + 100).astype(np.uint8)
        mask = (streak_mask(*shape, severity, rng) if min(shape) > 10 else rng.random(shape) < 0.4)
        contrast = streak_params(*shape, severity)["contrast"] if trial % 7 else 1.0
        outs = []
        for path in ("sparse", "dense", "jit"):
            use_rain_path(path, monkeypatch)
            outs.append(streak_frame(frame, mask, contrast))
        assert np.array_equal(outs[0], outs[2]) and np.array_equal(outs[1], outs[2]), (shape, severity, trial)
    clip = rng.integers(0, 256, (4, 120, 90, 3), dtype=np.uint8)
    done = []
    for path in ("dense", "jit"):
        use_rain_path(path, monkeypatch)
        done.append(corrupt_clip(clip, "rain", 5, np.random.default_rng(3)))
    assert np.array_equal(*done)
    assert rain.BACKEND == "jit"                            # the last one really ran the kernel


def test_rain_changes_only_pixels_under_drops_plus_the_contrast_step():
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)
    mask = streak_mask(128, 160, 3, rng)
    assert 0 < mask.mean() < 0.5
    out = streak_frame(frame, mask, 1.0)                                # contrast 1: no contrast step
    assert np.array_equal(out[~mask], frame[~mask])
    assert (out[mask] != frame[mask]).any(axis=-1).mean() > 0.5
    # with the contrast step, pixels off the drops follow one per-channel linear map of the input
    out = streak_frame(frame, mask, 0.6)
    for c in range(3):
        xs, ys = frame[~mask][:, c].astype(float), out[~mask][:, c].astype(float)
        slope, intercept = np.polyfit(xs, ys, 1)
        assert abs(slope - 0.6) < 0.01 and np.abs(ys - (slope * xs + intercept)).max() <= 1.0


def test_rain_streaks_scale_with_the_frame():
    small, large = streak_params(224, 224, 3), streak_params(720, 1280, 3)
    assert small["length"] == 60 and large["length"] == round(60 * 720 / 224)
    # fewer streaks on the larger frame, as they are longer: the same share of pixels (tests/test_fidelity.py)
    assert small["drops"] == 224 * 224 // 770 and large["drops"] == int(720 * 1280 / (770 * 720 / 224))
    rng = np.random.default_rng(0)
    mask = streak_mask(720, 1280, 3, rng)
    rows = np.flatnonzero(mask.any(axis=1))
    assert rows.size > 0 and mask.sum() <= large["drops"] * (large["length"] + 1)


def test_rain_slant_varies_between_frames():
    """The reference gave every streak one fixed slant; refava draws one per frame."""
    rng = np.random.default_rng(0)
    directions = set()
    for _ in range(12):
        mask = streak_mask(224, 224, 3, rng)
        ys, xs = np.nonzero(mask)
        top, bottom = xs[ys < 100].mean(), xs[ys > 124].mean()
        directions.add(np.sign(round(bottom - top)))
    assert len(directions) >= 2


def test_rain_drops_style_blends_and_blurs():
    rng = np.random.default_rng(0)
    frame = np.full((180, 240, 3), 40, np.uint8)
    out = corrupt_clip(frame[None], "rain", 4, rng, style="drops")[0]
    changed = (out != frame).any(axis=-1)
    assert 0.01 < changed.mean() < 0.8
    assert out.max() <= 220 and out[changed].min() >= 40                # blends towards the drop colour only


# --- the exactness of the table sampler, bin by bin -----------------------------------------------------------

def _straddling_bin(cdf: np.ndarray, bits: int) -> tuple[int, np.ndarray]:
    """A bin of width 2**-bits holding a CDF boundary, and the exact probability of each outcome inside it."""
    n = 1 << bits
    for boundary in sorted(cdf[:-1], key=lambda b: abs(b - 0.5)):     # a boundary in the bulk, not the tails
        u = int(boundary * n)
        lo, hi = u / n, (u + 1) / n
        if lo < boundary < hi:
            edges = np.concatenate([[0.0], cdf])
            inside = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None) * n
            if np.count_nonzero(inside) >= 2 and inside.max() < 0.95:
                return u, inside
    raise AssertionError("no straddling bin")


NOISE_BACKENDS = ["numpy", pytest.param("jit", marks=pytest.mark.skipif(
    not _jit.available(), reason="numba is not installed (refava[fast]); the NumPy path is tested"))]


@pytest.mark.parametrize("backend", NOISE_BACKENDS)
def test_gaussian_bins_that_straddle_a_level_are_resolved_exactly(backend, monkeypatch):
    from refava.corrupt import noise

    monkeypatch.setattr(noise, "BACKEND", backend)
    sigma = 0.12
    cdf = noise.gaussian_level_cdf(sigma)
    u, expected = _straddling_bin(cdf, 16)
    monkeypatch.setattr(noise, "_uniform_bits", lambda rng, count: np.full(count, u, np.uint16))
    out = gaussian_noise(np.full((N,), 128, np.uint8), sigma, np.random.default_rng(0))
    observed = np.bincount(out.astype(int) - 128 + 255, minlength=511) / N
    assert np.abs(observed - expected).max() < 5 * math.sqrt(0.25 / N)
    # and every pure bin maps to the one level it covers
    lut = noise._gaussian_tables(sigma)[1]
    pure = np.flatnonzero(lut != noise._IMPURE_K)
    starts = pure / 65536.0
    assert np.array_equal(lut[pure] + 255, np.searchsorted(cdf, starts, side="right"))
    assert np.array_equal(lut[pure] + 255, np.searchsorted(cdf, (pure + 1) / 65536.0, side="left"))


@pytest.mark.skipif(not _jit.available(), reason="numba is not installed (refava[fast])")
def test_gaussian_kernel_gives_the_numpy_bytes(monkeypatch):
    """One compiled pass and the NumPy passes give the same bytes from the same generator, impure bins included,
    for every severity's sigma and extreme ones, into a given array or a new one."""
    from refava.corrupt import noise

    rng = np.random.default_rng(5)
    for trial, sigma in enumerate([0.08, 0.12, 0.18, 0.26, 0.38, 0.2, 0.004, 1.5]):
        frames = rng.integers(0, 256, [(4, 64, 90, 3), (3, 3, 3), (199, 31, 3)][trial % 3], dtype=np.uint8)
        outs = []
        for backend in ("numpy", "jit"):
            monkeypatch.setattr(noise, "BACKEND", backend)
            outs.append(gaussian_noise(frames, sigma, np.random.Generator(np.random.SFC64(trial))))
            into = np.empty_like(frames)
            assert gaussian_noise(frames, sigma, np.random.Generator(np.random.SFC64(trial)), into) is into
            outs.append(into)
        assert all(np.array_equal(outs[0], o) for o in outs[1:]), sigma


def test_shot_bins_that_straddle_a_count_are_resolved_exactly(monkeypatch):
    from refava.corrupt import noise

    c, level = 12.0, 100
    cdf, values = noise.shot_level_cdf(c)
    u, inside = _straddling_bin(cdf[level], 12)
    expected = np.zeros(256)
    np.add.at(expected, values, inside)
    monkeypatch.setattr(noise, "_uniform_bits", lambda rng, count: np.full(count, u << 4, np.uint16))
    out = shot_noise(np.full((N,), level, np.uint8), c, np.random.default_rng(0))
    observed = np.bincount(out, minlength=256) / N
    assert np.abs(observed - expected).max() < 5 * math.sqrt(0.25 / N)
