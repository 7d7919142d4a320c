"""Rain: the reference's line streaks (Yi et al.), and the RAVAR appendix's ellipse drops as a second style.

Streaks, per frame (``x`` uint8, arithmetic in float64 on the pixels under drops):

1. ``n`` drops, each a line of ``L + 1`` pixels from ``(x0, y0)`` to ``(x0 + slant, y0 + L)``, width 1, one slant per
   frame (the reference meant this but passed a constant, so all its streaks lean the same way); ``L`` and the slant
   are the reference's pixels at 224 scaled by ``s = min(H, W) / 224``, ``n`` is ``area / (divisor * s)`` (the
   reference's ``area // divisor`` at 224; fewer, longer streaks on larger frames cover the same share of pixels).
2. ``R = x + mask * (1 - x/255) * (1 - mean(x)/255)`` with ``mask = 220`` on drops; a 3x3 box blur ``B`` of ``R``
   (borders reflected as OpenCV's default); ``blend = B * m + x * (1 - m)`` with ``m = mask / 255``.
3. A contrast step per channel, ``(blend - mean_c) * k + mean_c``, clipped and rounded.

Off the drops ``blend == x``, so step 3 there is a per-channel lookup table; only the pixels under drops are computed
in floating point (the blur from exact integer box sums).  That is exact, and is why this is fast.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from . import _jit

DROP_COLOUR = 220.0
STREAK_DIVISOR = (770, 770, 770, 500, 400)
STREAK_LENGTH_224 = (10, 30, 60, 60, 80)
STREAK_CONTRAST = (0.8, 0.8, 0.7, 0.6, 0.5)
SLANT_224 = 10

# "jit": one compiled pass per frame (needs numba: refava[fast]); "numpy": the same bytes from NumPy and OpenCV
BACKEND = "jit" if _jit.available() else "numpy"

# ellipse drops (appendix G.1; its numbers were not published, these are refava's)
DROP_DIVISOR = (2000, 1400, 1000, 700, 500)
DROP_LONG_RADIUS_224 = ((2, 5), (3, 7), (4, 9), (5, 11), (6, 13))
DROP_ALPHA = ((0.2, 0.5), (0.3, 0.6), (0.3, 0.7), (0.4, 0.8), (0.5, 0.9))
DROP_ANGLE_DEG = 20.0
SUPERSAMPLE_SCALE = 4.0     # drops are drawn at least this many times the 224-px size, then averaged down


def streak_params(height: int, width: int, severity: int) -> dict:
    """Drop count, streak length (px), contrast factor and slant bound (px) for one frame size and severity.

    Streak length and slant scale with the frame (``scale = min(H, W) / 224``) and streaks stay 1 px wide, so the
    drop count is the reference's ``area / divisor`` divided by ``scale``: the share of pixels under streaks, and
    with it the brightening, is the same at 224 px and at 1080p (a 1080p keyframe no longer gets three times the
    rain of its own 256-px frames).

    >>> streak_params(224, 224, 3)["drops"], streak_params(1080, 1920, 3)["drops"]
    (65, 558)
    """
    scale = min(height, width) / 224.0
    length = max(1, min(height - 1, round(STREAK_LENGTH_224[severity - 1] * scale)))
    drops = int(height * width / (STREAK_DIVISOR[severity - 1] * scale))
    return {"drops": drops, "length": length,
            "contrast": STREAK_CONTRAST[severity - 1], "slant_max": max(1, round(SLANT_224 * scale))}


def streak_mask(height: int, width: int, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The drop mask of one frame (H, W) bool: ``n`` streaks with one random slant."""
    return streak_masks(height, width, severity, [rng])[0]


def streak_masks(height: int, width: int, severity: int, rngs) -> np.ndarray:
    """Drop masks (T, H, W) bool, frame ``i`` drawn from ``rngs[i]``: its slant, then the drops' x and y."""
    p = streak_params(height, width, severity)
    n, length, smax = p["drops"], p["length"], p["slant_max"]
    masks = np.zeros((len(rngs), height, width + 2 * smax), dtype=bool)   # widened: streaks may leave the frame
    if n == 0 or height < 2:
        for rng in rngs:
            rng.integers(-smax, smax)
        return np.ascontiguousarray(masks[:, :, smax:smax + width])
    t = np.arange(length + 1)
    starts, slants = [], []
    for i, rng in enumerate(rngs):
        slant = int(rng.integers(-smax, smax))
        lo, hi = (slant, width) if slant < 0 else (0, max(1, width - slant))
        x0 = rng.integers(lo, hi, n)
        y0 = rng.integers(0, max(1, height - length), n)
        starts.append((i * height + y0) * masks.shape[2] + x0 + smax)
        slants.append(slant)
    offsets = np.rint(np.array(slants, dtype=np.float64)[:, None] * t[None, :] / length).astype(np.int64)
    offsets += t[None, :] * masks.shape[2]                                       # (T, L+1): row and column steps
    flat = np.stack(starts)[:, :, None] + offsets[:, None, :]                    # (T, n, L+1)
    masks.reshape(-1)[flat.reshape(-1)] = True
    return np.ascontiguousarray(masks[:, :, smax:smax + width])


def streak_frame(frame: np.ndarray, mask: np.ndarray, contrast: float) -> np.ndarray:
    """Rain streaks on one uint8 frame (H, W, 3) given its drop mask (H, W)."""
    return streak_clip(frame[None], mask[None], contrast)[0]


def streak_clip(frames: np.ndarray, masks: np.ndarray, contrast: float, out: np.ndarray | None = None) -> np.ndarray:
    """Rain streaks on uint8 frames (T, H, W, 3) of one size given their drop masks (T, H, W); into ``out`` (a
    C-contiguous uint8 array of the frames' shape) when given.

    The blur of ``R = x + gain * mask01 * (255 - x)`` is ``(S(x) + gain * S(mask01 * (255 - x))) / 9`` with ``S`` the
    3x3 box sum, which is exact in integers; floating point (float64) is used only at the pixels under drops.
    Off the drops the output is the contrast step alone: a per-channel lookup table.
    """
    count_t, height, width, channels = frames.shape
    if channels != 3:
        raise ValueError(f"rain: expected 3 colour channels, found {channels}")
    if out is None:
        out = np.empty(frames.shape, dtype=np.uint8)
    elif out.shape != frames.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"rain: out must be a C-contiguous uint8 array of shape {frames.shape}, found "
                         f"{out.dtype} {out.shape}{'' if out.flags.c_contiguous else ' (not contiguous)'}")
    for i in range(count_t):
        _streak_one(np.ascontiguousarray(frames[i]), masks[i], contrast, out[i])
    return out


def _streak_one(x: np.ndarray, mask: np.ndarray, contrast: float, out: np.ndarray) -> None:
    """:func:`streak_clip` for one C-contiguous frame (H, W, 3) and its mask (H, W), into ``out``."""
    sums = np.array(cv2.sumElems(x)[:3])
    if BACKEND == "jit":
        _jit.streak_kernel(x, np.ascontiguousarray(mask, dtype=bool).view(np.uint8), float(contrast),
                           DROP_COLOUR, sums, out)
        return
    height, width, _ = x.shape
    count = height * width
    gain = DROP_COLOUR / 255.0 * (1.0 - sums.sum() / (count * 3) / 255.0)   # R = x + gain * (255 - x)
    m = DROP_COLOUR / 255.0
    where = np.flatnonzero(mask)
    if not where.size or height < 2:
        _contrast(x, sums / count, contrast, out)
        return
    cells = (3 * where + _CHANNEL[:, None]).reshape(-1)                     # channel-major: (3, k) raveled
    sx, sq, x8 = _box_sums_at(x, mask, where, cells)
    # blend = a * S(q) + b * S(x) + c * x; its sum over the drops from exact integer sums
    a, b, c = gain * m / 9.0, m / 9.0, 1.0 - m
    shift = a * sq.sum(axis=1) + b * sx.sum(axis=1) + (c - 1.0) * x8.sum(axis=1)
    means = (sums + shift) / count
    _contrast(x, means, contrast, out)
    values = sq * (a * contrast)                                            # float64
    values += sx * (b * contrast)
    values += x8 * (c * contrast)
    values += (means * (1.0 - contrast))[:, None]
    out.reshape(-1)[cells] = np.rint(np.clip(values, 0.0, 255.0, out=values)).astype(np.uint8).reshape(-1)


SPARSE_DROPS = 0.045  # below this fraction of pixels under drops (measured crossover), box sums are gathered
_AROUND = np.array([-1, 0, 1])
_CHANNEL = np.arange(3)


def _box_sums_at(x: np.ndarray, mask: np.ndarray, where: np.ndarray, cells: np.ndarray):
    """At the pixels ``where`` of frame ``x`` (flat indices, sorted; ``cells`` their channel-major byte indices):
    the 3x3 box sums ``S(x)`` and ``S(q)``, ``q = mask01 * (255 - x)``, and ``x`` itself, each (3, k).

    Borders reflect as OpenCV's default (101).  Sparse drops: each drop's nine neighbours are gathered (reflected
    indices, no padded copy); dense drops: one integer box filter over the frame with both packed in.
    """
    height, width, _ = x.shape
    flat = x.reshape(-1)
    if where.size > SPARSE_DROPS * mask.size or width < 2:
        # one integer box filter for both sums: x + 4096 q packed per channel (9 * 255 < 4096, so nothing carries)
        x8 = flat.take(cells)
        packed = x.astype(np.int32)
        packed.reshape(-1)[cells] = 4096 * 255 - 4095 * x8.astype(np.int32)     # x + 4096 (255 - x) on drops
        box = cv2.boxFilter(packed, cv2.CV_32S, (3, 3), normalize=False, borderType=cv2.BORDER_REFLECT_101)
        sums = box.reshape(-1).take(cells).reshape(3, -1)
        return sums & 4095, sums >> 12, x8.reshape(3, -1)
    rows = where // width
    ys = _reflect101(rows + _AROUND[:, None], height)                       # (3, k)
    xs = _reflect101(where - rows * width + _AROUND[:, None], width)        # (3, k)
    neighbours = (ys[:, None, :] * width + xs[None, :, :]).reshape(9, -1)
    x9 = flat.take(3 * neighbours[:, None, :] + _CHANNEL[:, None])          # (9, 3, k)
    q9 = 255 - x9
    q9 *= mask.reshape(-1).take(neighbours)[:, None, :]
    return x9.sum(axis=0, dtype=np.uint16), q9.sum(axis=0, dtype=np.uint16), x9[4]


def _reflect101(index: np.ndarray, size: int) -> np.ndarray:
    """Indices one step outside [0, size) reflected as OpenCV's BORDER_REFLECT_101 (-1 -> 1, size -> size - 2)."""
    index = np.abs(index)
    return np.where(index > size - 1, 2 * (size - 1) - index, index)


def _contrast(frame: np.ndarray, means: np.ndarray, contrast: float, out: np.ndarray | None = None) -> np.ndarray:
    """``rint(clip((v - mean_c) * k + mean_c))`` per channel over a whole frame: an exact per-channel lookup table
    (one pass; into ``out``, a C-contiguous uint8 array of the frame's shape, when given; faster than float
    arithmetic, which also needed a half-way guard)."""
    v = np.arange(256, dtype=np.float64)[:, None]
    exact = np.clip((v - means[None, :]) * contrast + means[None, :], 0.0, 255.0)
    table = np.rint(exact).astype(np.uint8).reshape(1, 256, 3)
    return cv2.LUT(frame, table) if out is None else cv2.LUT(frame, table, dst=out)


def drops_frame(frame: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Ellipse rain drops on one uint8 frame: random size, transparency and falling angle, blended with the frame
    (``out = x * (1 - a) + 220 * a``), then motion-blurred along the falling direction."""
    height, width, _ = frame.shape
    scale = min(height, width) / 224.0
    # drops grow with the frame in both directions (area ~ scale^2): their count shrinks by scale^2 to cover the
    # same share of the frame at every size
    n = int(height * width / (DROP_DIVISOR[severity - 1] * scale * scale))
    r_lo, r_hi = DROP_LONG_RADIUS_224[severity - 1]
    a_lo, a_hi = DROP_ALPHA[severity - 1]
    angle = float(rng.uniform(-DROP_ANGLE_DEG, DROP_ANGLE_DEG))
    # drops are drawn at `ss` times the frame's resolution and area-averaged down, so a drop covers its true
    # share of the frame at every size (a 1-px-wide ellipse rasterised at 224 px covers about twice its area)
    ss = max(1, math.ceil(SUPERSAMPLE_SCALE / scale))
    alpha = np.zeros((height * ss, width * ss), dtype=np.float32)
    cx = rng.integers(0, width, n)
    cy = rng.integers(0, height, n)
    long_r = rng.uniform(r_lo, r_hi, n) * scale
    short_r = scale
    transparency = rng.uniform(a_lo, a_hi, n)
    jitter = rng.uniform(-5.0, 5.0, n)
    sub = 1 << 4                                    # cv2.ellipse's fractional bits (shift = 4)
    for i in range(n):
        # OpenCV's ellipse angle turns the first axis clockwise from x; 90 makes the long axis vertical
        centre = (int(((cx[i] + 0.5) * ss - 0.5) * sub), int(((cy[i] + 0.5) * ss - 0.5) * sub))
        axes = (max(1, int(long_r[i] * ss * sub)), max(1, int(short_r * ss * sub)))
        cv2.ellipse(alpha, centre, axes, 90.0 + angle + jitter[i], 0, 360, float(transparency[i]), thickness=-1,
                    lineType=cv2.LINE_8, shift=4)
    # the motion blur too, at that resolution: its length is the drops' scale, not whole pixels of a small frame
    size = 2 * max(1, round(r_hi * scale * ss / 2)) + 1
    kernel = np.zeros((size, size), dtype=np.float32)
    half = size // 2
    dx, dy = math.sin(math.radians(angle)) * half, math.cos(math.radians(angle)) * half
    cv2.line(kernel, (round(half - dx), round(half - dy)), (round(half + dx), round(half + dy)), 1.0, 1)
    alpha = cv2.filter2D(alpha, -1, kernel / kernel.sum())
    if ss > 1:
        alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_AREA)
    a = alpha[:, :, None].astype(np.float64)
    return np.rint(frame * (1.0 - a) + DROP_COLOUR * a).clip(0, 255).astype(np.uint8)
