"""Brightness, contrast, saturation and motion blur: the rest of the RAVAR authors' corruption set
(``dataloaders/ravar_dataset.py``, KPeng9510/RAVAR), rounded to uint8 (the authors' ``uint8`` cast truncates).

* brightness (their table, ImageNet-C's): ``V = clip(V + c)`` in HSV, c = .1 .. .5.  With hue and saturation fixed a
  channel is proportional to V, so the closed form ``x * min(M + c, 1) / M`` (M the pixel's largest channel; a black
  pixel becomes grey c) equals skimage's rgb2hsv / hsv2rgb round trip without converting;
* contrast (their table, changed from ImageNet-C's): ``(x - mean) * c + mean`` per channel over the frame,
  c = .5, .4, .3, .2, .1;
* saturate (their table, ImageNet-C's): ``S = clip(S * c0 + c1)``: ``x = V - (V - x) * S' / S``; a grey pixel
  (S = 0, hue 0 in skimage) becomes red-tinted when c1 > 0, as there;
* motion blur (theirs, over time): each frame the mean of the 2c frames ``i - c .. i + c - 1`` of the clip,
  c = 1, 2, 3, 4, 6.  Their code drops c frames at each end; refava keeps the clip's length and clamps the window
  at the ends (the first frame repeats before the clip, the last after it).  A frame of another size than the
  clip's (a larger keyframe) is blurred with its neighbours resized to its size.

None of them draws random numbers: the same frames give the same bytes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

BRIGHTNESS_C = (0.1, 0.2, 0.3, 0.4, 0.5)
CONTRAST_C = (0.5, 0.4, 0.3, 0.2, 0.1)
SATURATE_C = ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))
MOTION_FRAMES = (1, 2, 3, 4, 6)


def _brightness_table(c: float) -> np.ndarray:
    """out[m, x]: a channel value x of a pixel whose largest channel is m, after brightness c (the closed form)."""
    m = np.arange(256, dtype=np.float64)[:, None] / 255.0
    x = np.arange(256, dtype=np.float64)[None, :] / 255.0
    v = np.minimum(m + np.float64(c), 1.0)
    scaled = np.where(m > 0, x * (v / np.where(m > 0, m, 1.0)), v)
    return np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


_TABLES: dict = {}


def _extremes(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest and smallest channel per pixel, (H, W, 1) uint8, by OpenCV (NumPy's reduction over a 3-long last
    axis is some 40x slower)."""
    import cv2

    b, g, r = cv2.split(np.ascontiguousarray(frame))
    return cv2.max(cv2.max(b, g), r)[..., None], cv2.min(cv2.min(b, g), r)[..., None]


def brightness(frame: np.ndarray, c: float, out: np.ndarray | None = None) -> np.ndarray:
    """A 256 x 256 table (largest channel, channel) -> value: one gather per value instead of float arithmetic."""
    table = _TABLES.get(("brightness", c))
    if table is None:
        table = _TABLES[("brightness", c)] = _brightness_table(c)
    m = _extremes(frame)[0]
    result = table[m, frame]
    if out is None:
        return result
    out[...] = result
    return out


def contrast(frame: np.ndarray, c: float, out: np.ndarray | None = None) -> np.ndarray:
    """Per channel, a 256-entry table of ``(x - mean) * c + mean`` (the mean is the frame's), applied by OpenCV."""
    import cv2

    means = np.asarray(cv2.mean(np.ascontiguousarray(frame))[:3], dtype=np.float64) / 255.0   # exact, SIMD
    levels = np.arange(256, dtype=np.float64)[:, None] / 255.0
    table = np.rint(np.clip((levels - means[None, :]) * c + means[None, :], 0.0, 1.0) * 255.0).astype(np.uint8)
    if out is not None and out.flags.c_contiguous:
        return cv2.LUT(np.ascontiguousarray(frame), table.reshape(256, 1, 3), dst=out)   # no copy
    result = cv2.LUT(np.ascontiguousarray(frame), table.reshape(256, 1, 3))
    if out is None:
        return result
    out[...] = result
    return out


def _saturate_table(c: tuple[float, float]) -> np.ndarray:
    """out[v, low, x]: a channel value x of a pixel whose largest channel is v and smallest low, after saturate c
    (the closed form of the HSV round trip; only low <= x <= v is ever read), as one flat uint8 table; built one
    largest value at a time (16 MB, no 16 M-entry float temporaries)."""
    table = np.empty((256, 256, 256), dtype=np.uint8)
    low = np.arange(256, dtype=np.float32)[:, None] / 255.0
    x = np.arange(256, dtype=np.float32)[None, :] / 255.0
    for level in range(256):
        v = np.float32(level / 255.0)
        s = (v - low) / v if level else np.zeros_like(low)
        s_new = np.clip(s * np.float32(c[0]) + np.float32(c[1]), 0.0, 1.0)
        coloured = v - (v - x) * (s_new / np.where(s > 0, s, 1.0))
        table[level] = np.rint(np.clip(coloured, 0.0, 1.0) * 255.0)
    return table.ravel()


def saturate(frame: np.ndarray, c: tuple[float, float], out: np.ndarray | None = None) -> np.ndarray:
    """HSV saturation scaled and shifted, in closed form: a 256^3 table (largest channel, smallest, channel) ->
    value, one gather per value; grey pixels (no hue: skimage gives them hue 0, red) keep V in red and get
    V (1 - S') in green and blue."""
    key = ("saturate", tuple(c))
    table = _TABLES.get(key)
    if table is None:
        for old in [k for k in _TABLES if k[0] == "saturate"]:
            del _TABLES[old]                      # 16 MB each: keep the severity in use only
        table = _TABLES[key] = _saturate_table(c)
    v, low = _extremes(frame)
    index = (v.astype(np.uint32) << 16) | (low.astype(np.uint32) << 8) | frame
    result = table[index] if out is None else np.take(table, index, out=out)   # straight into ``out``
    grey = (v == low)[..., 0]
    if grey.any():
        g = v[grey].astype(np.float32) / 255.0
        fade = np.rint(np.clip(g * (1 - np.clip(np.float32(c[1]), 0.0, 1.0)), 0.0, 1.0) * 255.0).astype(np.uint8)
        result[grey, 1] = fade[:, 0]
        result[grey, 2] = fade[:, 0]
    return result


def motion_blur(frames: Sequence[np.ndarray], c: int, out: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """The clip's frames blurred over time (see the module doc); frames in time order; ``out``: arrays of the
    frames' shapes to write into."""
    import cv2

    sizes = [f.shape[:2] for f in frames]
    main = max(set(sizes), key=sizes.count)
    sequence = [i for i, s in enumerate(sizes) if s == main]
    out = list(out) if out is not None else [None] * len(frames)
    n = len(sequence)
    # a sliding sum over the clamped sequence (frame k's window is k - c .. k + c - 1): two frame operations per
    # frame instead of 2c; the mean rounded half to even by a table over every possible sum (the float64 rint of
    # sum / 2c, exactly)
    mean = np.rint(np.arange(255 * 2 * c + 1, dtype=np.float64) / (2 * c)).astype(np.uint8)

    def at(j: int) -> np.ndarray:                                   # clamped at the ends
        return frames[sequence[min(max(j, 0), n - 1)]]

    window = np.zeros(frames[sequence[0]].shape, dtype=np.uint16)     # at most 255 * 12
    for j in range(-c, c):
        window += at(j)
    for k, i in enumerate(sequence):
        out[i] = np.take(mean, window, out=out[i])                  # into the caller's frame, if given
        window += at(k + c)
        window -= at(k - c)
    for i, size in enumerate(sizes):
        if size == main:
            continue
        k = sum(1 for j in sequence if j < i)          # where the off-size frame sits in the sequence
        neighbours = []
        for j in range(k - c, k + c):
            if j == k:
                neighbours.append(frames[i].astype(np.float64))
            else:
                src = at(j if j < k else j - 1)
                neighbours.append(cv2.resize(src, (size[1], size[0]), interpolation=cv2.INTER_AREA).astype(np.float64))
        blurred = np.rint(np.sum(neighbours, axis=0) / (2 * c)).astype(np.uint8)
        if out[i] is None:
            out[i] = blurred
        else:
            out[i][...] = blurred
    return out  # type: ignore[return-value]
