"""How clips are cut: the settings and the 90-frame grid around a keyframe."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..records import GRID_FPS, GRID_FRAMES


@dataclass(frozen=True)
class ClipSettings:
    """How clips are cut: sampled frames per clip (90 = all), their short side, the keyframe's, JPEG quality."""

    frames: int = 8
    short_side: int = 256
    keyframe_short_side: int = 0
    jpeg_quality: int = 90

    def __post_init__(self):
        if not 1 <= self.frames <= GRID_FRAMES:
            raise ValueError(f"frames per clip: expected 1..{GRID_FRAMES} (or 'all'), found {self.frames}")
        if self.short_side < 0 or self.keyframe_short_side < 0:
            raise ValueError("short sides must be >= 0 (0 keeps the movie's size)")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality: expected 1..100, found {self.jpeg_quality}")

    def grid_indices(self) -> list[int]:
        """Grid indices of the sampled frames.

        >>> ClipSettings(frames=8).grid_indices()
        [5, 16, 28, 39, 50, 61, 73, 84]
        """
        return [int((i + 0.5) * GRID_FRAMES / self.frames) for i in range(self.frames)]


def grid_time(timestamp: int, grid_index: int) -> Fraction:
    """Movie time of grid frame ``grid_index`` of the clip around keyframe ``timestamp`` (exact).

    >>> grid_time(902, 45)
    Fraction(902, 1)
    """
    return Fraction(timestamp) - Fraction(3, 2) + Fraction(grid_index, GRID_FPS)
