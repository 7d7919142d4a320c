"""Rain: the reference's line streaks (Yi et al.), and the RAVAR appendix's ellipse drops as a second style.

Streaks, per frame (``x`` uint8, arithmetic in float64 on the pixels under drops):

1. ``n`` drops, each a line of ``L + 1`` pixels from ``(x0, y0)`` to ``(x0 + slant, y0 + L)``, width 1, one slant per
   frame (the reference meant this but passed a constant, so all its streaks lean the same way); ``L`` and the slant
   are the reference's pixels at 224 scaled by ``min(H, W) / 224``, ``n`` is ``area // divisor``.
2. ``R = x + mask * (1 - x/255) * (1 - mean(x)/255)`` with ``mask = 220`` on drops; a 3x3 box blur ``B`` of ``R``
   (borders reflected as OpenCV's default); ``blend = B * m + x * (1 - m)`` with ``m = mask / 255``.
3. A contrast step per channel, ``(blend - mean_c) * k + mean_c``, clipped and rounded.

Off the drops ``blend == x``, so step 3 there is a per-channel lookup table; only the pixels under drops are computed
in floating point (the blur through two integer box filters).  That is exact, and is why this is fast.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

DROP_COLOUR = 220.0
STREAK_DIVISOR = (770, 770, 770, 500, 400)
STREAK_LENGTH_224 = (10, 30, 60, 60, 80)
STREAK_CONTRAST = (0.8, 0.8, 0.7, 0.6, 0.5)
SLANT_224 = 10

# ellipse drops (appendix G.1; its numbers were not published, these are refava's)
DROP_DIVISOR = (2000, 1400, 1000, 700, 500)
DROP_LONG_RADIUS_224 = ((2, 5), (3, 7), (4, 9), (5, 11), (6, 13))
DROP_ALPHA = ((0.2, 0.5), (0.3, 0.6), (0.3, 0.7), (0.4, 0.8), (0.5, 0.9))
DROP_ANGLE_DEG = 20.0


def streak_params(height: int, width: int, severity: int) -> dict:
    """Drop count, streak length (px), contrast factor and slant bound (px) for one frame size and severity."""
    scale = min(height, width) / 224.0
    length = max(1, min(height - 1, round(STREAK_LENGTH_224[severity - 1] * scale)))
    return {"drops": (height * width) // STREAK_DIVISOR[severity - 1], "length": length,
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


def streak_clip(frames: np.ndarray, masks: np.ndarray, contrast: float) -> np.ndarray:
    """Rain streaks on uint8 frames (T, H, W, 3) of one size given their drop masks (T, H, W).

    The blur of ``R = x + gain * mask01 * (255 - x)`` is ``(S(x) + gain * S(mask01 * (255 - x))) / 9`` with ``S`` the
    3x3 box sum: exact integer box filters over the whole clip at once (each frame padded by its own reflected rows,
    so frames do not bleed into each other), then float64 only at the pixels under drops.
    """
    count_t, height, width, channels = frames.shape
    if channels != 3:
        raise ValueError(f"rain: expected 3 colour channels, found {channels}")
    count = height * width
    sums = np.array([cv2.sumElems(f)[:3] for f in frames])                   # (T, 3)
    gain = DROP_COLOUR / 255.0 * (1.0 - sums.sum(axis=1) / (count * 3) / 255.0)   # R = x + gain * (255 - x)
    m = DROP_COLOUR / 255.0
    where = np.flatnonzero(masks)
    out = np.empty(frames.shape, dtype=np.uint8)               # C-contiguous, whatever the input's layout
    if where.size and height >= 2:
        frame_of = where // count
        # flat indices into the clip padded with one reflected row above and below each frame, channel-major
        pixel = where + (2 * frame_of + 1) * width
        cells = 3 * pixel[None, :] + np.arange(3)[:, None]                    # (3, k)
        padded = np.empty((count_t, height + 2, width, 3), dtype=np.uint8)
        padded[:, 1:-1] = frames
        padded[:, 0], padded[:, -1] = frames[:, 1], frames[:, -2]
        x8 = padded.reshape(-1).take(cells)
        inverted = np.zeros_like(padded)
        inverted.reshape(-1)[cells] = 255 - x8                                 # mask01 * (255 - x)
        inverted[:, 0], inverted[:, -1] = inverted[:, 2], inverted[:, -3]
        tall = (count_t * (height + 2), width, 3)
        box_x = cv2.boxFilter(padded.reshape(tall), cv2.CV_16U, (3, 3), normalize=False,
                              borderType=cv2.BORDER_REFLECT_101)
        box_q = cv2.boxFilter(inverted.reshape(tall), cv2.CV_16U, (3, 3), normalize=False,
                              borderType=cv2.BORDER_REFLECT_101)
        xp = x8.astype(np.float64)
        blurred = box_q.reshape(-1).take(cells) * gain.take(frame_of)
        blurred += box_x.reshape(-1).take(cells)
        blend = blurred * (m / 9.0)
        blend += xp * (1.0 - m)
        shift = np.zeros((count_t, 3))
        for c in range(3):
            shift[:, c] = np.bincount(frame_of, weights=blend[c] - xp[c], minlength=count_t)
        means = (sums + shift) / count
        values = blend * contrast
        values += np.take(means.T * (1.0 - contrast), frame_of, axis=1)
        fixed = np.rint(np.clip(values, 0.0, 255.0, out=values)).astype(np.uint8)
        plain = (3 * where[None, :] + np.arange(3)[:, None])                 # the same cells, unpadded
    else:
        means = sums / count
    for i in range(count_t):
        _contrast(frames[i], means[i], contrast, out[i])
    if where.size and height >= 2:
        out.reshape(-1)[plain] = fixed
    return out


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
    n = (height * width) // DROP_DIVISOR[severity - 1]
    r_lo, r_hi = DROP_LONG_RADIUS_224[severity - 1]
    a_lo, a_hi = DROP_ALPHA[severity - 1]
    angle = float(rng.uniform(-DROP_ANGLE_DEG, DROP_ANGLE_DEG))
    alpha = np.zeros((height, width), dtype=np.float32)
    cx = rng.integers(0, width, n)
    cy = rng.integers(0, height, n)
    long_r = np.maximum(1, np.rint(rng.uniform(r_lo, r_hi, n) * scale)).astype(int)
    short_r = max(1, round(scale))
    transparency = rng.uniform(a_lo, a_hi, n)
    jitter = rng.uniform(-5.0, 5.0, n)
    for i in range(n):
        # OpenCV's ellipse angle turns the first axis clockwise from x; 90 makes the long axis vertical
        cv2.ellipse(alpha, (int(cx[i]), int(cy[i])), (int(long_r[i]), short_r), 90.0 + angle + jitter[i], 0, 360,
                    float(transparency[i]), thickness=-1)
    size = 2 * max(1, round(r_hi * scale / 2)) + 1
    kernel = np.zeros((size, size), dtype=np.float32)
    half = size // 2
    dx, dy = math.sin(math.radians(angle)) * half, math.cos(math.radians(angle)) * half
    cv2.line(kernel, (round(half - dx), round(half - dy)), (round(half + dx), round(half + dy)), 1.0, 1)
    alpha = cv2.filter2D(alpha, -1, kernel / kernel.sum())
    a = alpha[:, :, None].astype(np.float64)
    return np.rint(frame * (1.0 - a) + DROP_COLOUR * a).clip(0, 255).astype(np.uint8)
