"""A PNG grid of corrupted keyframes for a person to look at: every type x severity, and fog across frame sizes."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from . import CORRUPTIONS, clip_rng, corrupt_frames, resolve
from .fog import PLASMA_SIZE, plasma_fractal

THUMB_H = 168
LABEL_H = 22


def _thumb(image: np.ndarray, height: int = THUMB_H) -> np.ndarray:
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((LABEL_H, tile.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(strip, text, (4, LABEL_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip, tile])


def _row(tiles: list[np.ndarray], gap: int = 4) -> np.ndarray:
    height = max(t.shape[0] for t in tiles)
    padded = []
    for t in tiles:
        t = np.vstack([t, np.full((height - t.shape[0], t.shape[1], 3), 255, np.uint8)]) if t.shape[0] < height else t
        padded += [t, np.full((height, gap, 3), 255, np.uint8)]
    return np.hstack(padded[:-1])


def _stack(rows: list[np.ndarray], gap: int = 6) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    out = []
    for r in rows:
        if r.shape[1] < width:
            r = np.hstack([r, np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)])
        out += [r, np.full((gap, width, 3), 255, np.uint8)]
    return np.vstack(out[:-1])


def gallery_image(keyframes: Sequence[tuple[str, np.ndarray]], *, seed: int = 0,
                  sizes: Sequence[tuple[int, int]] = ((224, 224), (1280, 720)), style: str = "streaks") -> np.ndarray:
    """An RGB grid: per keyframe, one row per corruption type (clean, then severities 1..5, then the paper preset),
    and for the first keyframe fog severity 3 with one plasma at each of ``sizes`` (width, height), shown at one
    height, so the fog's look can be compared across resolutions."""
    rows = []
    for clip_id, image in keyframes:
        for kind in CORRUPTIONS:
            tiles = [_label(_thumb(image), f"{clip_id[-18:]} clean")]
            names = [(s, None) for s in range(1, 6)] + [(None, "paper")]
            for severity, preset in names:
                if preset is not None and kind not in CORRUPTIONS[:4]:     # the authors ran the paper's four only
                    tiles.append(_label(np.zeros_like(tiles[0]), "no paper preset"))
                    continue
                spec = resolve(kind, severity, preset=preset, style=style)
                out = corrupt_frames([image], spec, clip_rng(seed, clip_id, spec.name), threads=1)[0]
                tiles.append(_label(_thumb(out), spec.name))
            rows.append(_row(tiles))
    if keyframes:
        clip_id, image = keyframes[0]
        spec = resolve("fog", 3)
        plasma = plasma_fractal(clip_rng(seed, clip_id, "gallery-fog"), PLASMA_SIZE, spec.params["wibbledecay"])
        tiles = []
        for width, height in sizes:
            resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            out = corrupt_frames([resized], spec, clip_rng(seed, clip_id, "gallery"), plasma=plasma, threads=1)[0]
            tiles.append(_label(_thumb(out, 2 * THUMB_H), f"fog_s3 at {width}x{height} (same plasma)"))
        rows.append(_row(tiles))
    return _stack(rows)


def write_gallery(path: str | Path, keyframes: Sequence[tuple[str, np.ndarray]], **kwargs) -> Path:
    """Write :func:`gallery_image` as a PNG at ``path`` (atomically) and return the path."""
    from ..fsutil import write_bytes_atomic

    image = gallery_image(keyframes, **kwargs)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise OSError(f"PNG encoding failed for an image of shape {image.shape}")
    path = Path(path)
    write_bytes_atomic(path, buf.tobytes())
    return path
