"""Factories for tiny test data: videos whose frames carry their own index, AVA csv rows, instances."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from refava.video import VideoWriter

BITS = 16          # frame index bits, drawn as a 4x4 grid of black/white blocks
GRID = 4


def index_image(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame whose top-left square encodes ``index`` in 16 black/white blocks; the rest is a mid-grey ramp."""
    img = np.full((height, width, 3), 128, np.uint8)
    img[:, :, 0] = (np.arange(width) * 255 // max(1, width - 1)).astype(np.uint8)[None, :]
    block = min(width, height) // (GRID + 1)
    for bit in range(BITS):
        r, c = divmod(bit, GRID)
        value = 255 if (index >> bit) & 1 else 0
        img[r * block:(r + 1) * block, c * block:(c + 1) * block] = value
    return img


def read_index(img: np.ndarray, orig_width: int | None = None, orig_height: int | None = None) -> int:
    """Read back the index drawn by :func:`index_image` (from an image of any scale)."""
    h, w = img.shape[:2]
    ow, oh = orig_width or w, orig_height or h
    block = min(ow, oh) // (GRID + 1)
    gray = img.mean(axis=2)
    value = 0
    for bit in range(BITS):
        r, c = divmod(bit, GRID)
        y = int(((r + 0.5) * block) * h / oh)
        x = int(((c + 0.5) * block) * w / ow)
        if gray[y, x] > 128:
            value |= 1 << bit
    return value


def make_indexed_video(path: str | Path, n_frames: int, *, fps: Fraction | float = 30, width: int = 160,
                       height: int = 120, pts_s: Sequence[Fraction] | None = None,
                       time_base: Fraction | None = None) -> list[Fraction]:
    """Encode a video whose frame i shows the number i; return the presentation time of every frame.

    ``pts_s`` gives explicit times (variable frame rate); otherwise frame i is at i / fps.
    """
    fps = Fraction(fps).limit_denominator(1001)
    times = list(pts_s) if pts_s is not None else [Fraction(i) / fps for i in range(n_frames)]
    with VideoWriter(path, width=width, height=height, fps=fps, time_base=time_base) as writer:
        for i, t in enumerate(times):
            writer.write(index_image(i, width, height), pts_s=t if pts_s is not None else None)
    return times
