"""The RAVAR authors' rain and fog, literally (``--preset authors-code``): ``dataloaders/ravar_dataset.py`` of
KPeng9510/RAVAR, line for line, with the clip's generator in place of ``np.random``.

* rain (severity 2, their default): ``area // 770`` drops 30 px long (absolute pixels, whatever the frame size);
  each drop's start is drawn with a random slant in [-10, 10) but every streak is drawn with slant -1 (their code
  passes ``slant_extreme``); streaks of colour 220 and width 1 into a mask; ``image + uint8(mask * (1 - image/255)
  * (1 - mean/255))`` in uint8 (which wraps around past 255, as theirs), a 3 x 3 box blur, the blend by the mask,
  and a contrast of 0.8 about each channel's mean, truncated to uint8;
* fog (severity 3; their setting was not released): each frame's centre 224 x 224 crop (their ``width // 2 - 112``
  ... on the first two axes) plus ``c0 * plasma[:224, :224]`` of one 256 x 256 plasma per clip, times
  ``max / (max + c0)`` with the frame's maximum taken before the crop, truncated to uint8.  The output is the crop:
  frames smaller than 224 px are refused (their code fails on them).

:mod:`refava.corrupt.rain` and :mod:`refava.corrupt.fog` are the size-independent versions refava uses otherwise.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

RAIN_DIVISOR, RAIN_LENGTH, RAIN_CONTRAST = 770, 30, 0.8
CROP = 224


def authors_rain(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    slant = int(rng.integers(-10, 10))                      # only where the drops start
    drops = []
    for _ in range((h * w) // RAIN_DIVISOR):
        x = int(rng.integers(slant, w)) if slant < 0 else int(rng.integers(0, w - slant))
        y = int(rng.integers(0, h - RAIN_LENGTH)) if h > RAIN_LENGTH else 0
        drops.append((x, y))
    mask = np.zeros((h, w))
    for x, y in drops:
        cv2.line(mask, (x, y), (x - 1, y + RAIN_LENGTH), 220, 1)
    mask = np.stack((mask, mask, mask), axis=2)
    rain = image + np.array(mask * (1 - image / 255.0) * (1 - np.mean(image) / 255.0), dtype=np.uint8)
    blur = cv2.blur(rain, (3, 3))
    out = np.array(blur * mask / 255.0 + image * (1 - mask / 255.0)) / 255.0
    means = np.mean(out, axis=(0, 1), keepdims=True)
    return np.array(np.clip((out - means) * RAIN_CONTRAST + means, 0, 1) * 255, dtype=np.uint8)


def authors_fog(frames: Sequence[np.ndarray], c0: float, wibbledecay: float, rng: np.random.Generator) -> list:
    """Frames of at least ``CROP`` pixels each way (the caller checks)."""
    from .fog import plasma_fractal

    layer = c0 * plasma_fractal(rng, 256, wibbledecay)[:CROP, :CROP, None]
    out = []
    for image in frames:
        x = np.array(image) / 255.0
        max_val = x.max()
        a, b = x.shape[0] // 2, x.shape[1] // 2
        x = x[a - CROP // 2:a + CROP // 2, b - CROP // 2:b + CROP // 2] + layer
        out.append(np.array(np.clip(x * max_val / (max_val + c0), 0, 1) * 255, dtype=np.uint8))
    return out
