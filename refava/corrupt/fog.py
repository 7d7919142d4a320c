"""Fog: a plasma-fractal layer, one per clip, added with the ImageNet-C contrast formula.

``out = rint(clip((x/255 + c0 * plasma) * M / (M + c0), 0, 1) * 255)`` with ``M = max(x/255)`` over each frame.

The reference draws a 256x256 plasma and adds its top-left 224x224 corner to a 224x224 frame; other references
either crop every frame to 224 or grow the plasma with the frame (so the fog gets finer and weaker as frames get
larger).  refava keeps the reference's look at every size: the frame's long side always spans 224 plasma cells (the
reference's field of view) and that window is resized to the frame, so a 1280x720 frame sees the same fog as a
224x126 one.  At 224x224 the field is the reference's corner exactly.
"""
from __future__ import annotations

import cv2
import numpy as np

PLASMA_SIZE = 256
VIEW_CELLS = 224


def plasma_fractal(rng: np.random.Generator, mapsize: int = PLASMA_SIZE, wibbledecay: float = 3.0) -> np.ndarray:
    """A diamond-square height map in [0, 1] of shape (mapsize, mapsize), toroidally wrapped (float64).

    Corner 0, step = mapsize, initial wibble 100; each level sets square centres, then diamond points, to the mean
    of their four neighbours plus ``wibble * U(-wibble, wibble)``; then ``step //= 2`` and ``wibble /= wibbledecay``
    until the step is below 2; finally ``(m - m.min()) / max(m - m.min())``.
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"plasma map size: expected a power of two >= 2, found {mapsize}")
    m = np.empty((mapsize, mapsize), dtype=np.float64)
    m[0, 0] = 0.0
    step, wibble = mapsize, 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        return total / 4.0 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = m[0::step, 0::step]
        total = corners + np.roll(corners, -1, axis=0)
        total = total + np.roll(total, -1, axis=1)
        m[half::step, half::step] = wibbled_mean(total)
        centres = m[half::step, half::step]
        corners = m[0::step, 0::step]
        # points between two corners of a row: the corners left and right, the centres above and below
        total = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        m[0::step, half::step] = wibbled_mean(total)
        # points between two corners of a column: the corners above and below, the centres left and right
        total = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        m[half::step, 0::step] = wibbled_mean(total)
        step //= 2
        wibble /= wibbledecay
    m -= m.min()
    return m / m.max()


def fog_field(plasma: np.ndarray, height: int, width: int) -> np.ndarray:
    """The plasma window a ``height`` x ``width`` frame sees, resized to the frame (float64, values in [0, 1])."""
    long_side = max(height, width)
    rows = max(1, round(VIEW_CELLS * height / long_side))
    cols = max(1, round(VIEW_CELLS * width / long_side))
    window = plasma[:rows, :cols]
    if (rows, cols) == (height, width):
        return window.copy()
    shrink = height < rows or width < cols
    field = cv2.resize(window, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.clip(field, 0.0, 1.0)


def apply_fog(frames: np.ndarray, field: np.ndarray, c0: float) -> np.ndarray:
    """Fog with strength ``c0`` over uint8 frames (T, H, W, 3) given their field (H, W) in [0, 1]."""
    layer = fog_layer(field, c0, frames.shape[-1])
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        fog_frame(frame, layer, c0, out[i])
    return out


def fog_layer(field: np.ndarray, c0: float, channels: int = 3) -> np.ndarray:
    """``255 * c0 * field`` as float32 (H, W, channels), computed once per clip and frame size."""
    return np.repeat((255.0 * c0 * field).astype(np.float32)[:, :, None], channels, axis=2)


def fog_frame(frame: np.ndarray, layer: np.ndarray, c0: float, out: np.ndarray | None = None) -> np.ndarray:
    """One frame: ``rint(gain * (x + layer))`` with ``gain = M / (M + c0)``, the formula rearranged.

    float32 arithmetic: equal to the float64 formula except within about 1e-4 of a half-way point.  The frame is
    converted to float32 first: OpenCV's mixed uint8 + float32 addition is five times slower than the two steps.
    """
    peak = float(frame.max()) / 255.0
    gain = peak / (peak + c0)
    summed = frame.astype(np.float32)
    cv2.add(summed, layer, dst=summed)
    # values are >= 0, so the absolute value is a no-op; convertScaleAbs rounds half to even and saturates at 255
    if out is None:
        return cv2.convertScaleAbs(summed, alpha=gain)
    return cv2.convertScaleAbs(summed, dst=out, alpha=gain)     # out: C-contiguous uint8 of the frame's shape
