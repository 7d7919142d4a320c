"""Temporal corruptions: frames of the clip dropped, repeated, reordered; pixels untouched.

Severity tables from the published code, cited per type:

* ``frame_rate``: Yi et al. (NeurIPS 2021, ``create_mini_kinetics_c.py``, ``frame_rate``): the clip re-timed to
  20, 16, 12, 9, 6 fps; each 30 fps position shows the latest frame of the slower clip;
* ``freeze`` (Schiappa et al., CVPR 2023, ``video_perturbations.py``): k = .4 T, .2 T, .1 T, .05 T, .01 T frames
  are picked at random (and the first), each held until the next picked one (their code repeats .1 T at severity 5
  and keeps 2 frames at severity 4, which freeze less than severity 3 on short clips; these keep the order of their
  table).  A k that is not whole is rounded up with the probability of its fraction, down otherwise, so a short
  clip keeps the table's expected count (their floor of one frame stands for the first, always held): truncated,
  severities 2-5 of an 8-frame clip were one corruption;
* ``jumble`` (Schiappa et al.): frames shuffled within consecutive segments of 2, 4, 8, 16, 32 frames (their
  64 / 2^s, listed so that the disorder rises with severity: their severity 1 has the longest segments).  Where a
  segment, scaled to the clip, is shorter than two frames (length L < 2: severities 1-4 of an 8-frame clip), pairs
  of frames are shuffled each with probability L / 2, so that the expected disorder still rises with severity (with
  segments clamped to two frames the five severities of an 8-frame clip were one corruption);
* ``box_jumble`` (Schiappa et al.): consecutive segments of 36, 25, 16, 9, 4 frames, the segments' order shuffled
  (the lengths their docstring gives, "from 36 to 4"; their code computes them the other way round);
* ``reverse`` (Schiappa et al., ``reverse_sampling``): every r-th frame kept and repeated r times, r = 2, 4, 8, 16,
  32, and the clip played backwards.

Segment lengths are theirs for their 128-frame input (4 clips of 32), scaled to the clip's length.  They work on
the clip's stored frames in time order, counted as consecutive 30 fps frames (exact with
``refava ingest --frames all``; with the default 8 sampled frames each step spans 0.4 s).  The keyframe, stored at
its own size, shows what its position in the sequence shows (resized); in place when that is itself.  Randomness
comes from the clip's generator (``clip_rng``): the same clip and seed give the same frames.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

FRAME_RATE_FPS = (20, 16, 12, 9, 6)
REVERSE_RATE = (2, 4, 8, 16, 32)
JUMBLE_SEGMENT = (2, 4, 8, 16, 32)
BOX_SEGMENT = (36, 25, 16, 9, 4)
FREEZE_SHARE = (.4, .2, .1, .05, .01)
THEIR_FRAMES = 128          # Schiappa et al.'s input: 4 clips of 32 frames; segment lengths scale to the clip
TEMPORAL = ("frame_rate", "freeze", "jumble", "box_jumble", "reverse")


def order(kind: str, severity: int, n: int, rng: np.random.Generator) -> list[int]:
    """For each position of an n-frame clip, the index of the frame it shows."""
    if kind == "frame_rate":
        fps = FRAME_RATE_FPS[severity - 1]
        return [min(n - 1, int(math.floor(math.floor(i * fps / 30) * 30 / fps))) for i in range(n)]
    if kind == "reverse":
        r = REVERSE_RATE[severity - 1]
        kept = [i for i in range(0, n, r) for _ in range(r)][:n]
        return kept[::-1]
    if kind == "jumble":
        length = JUMBLE_SEGMENT[severity - 1] * n / THEIR_FRAMES
        seg = max(2, round(length))
        out: list[int] = []
        for start in range(0, n, seg):
            part = list(range(start, min(start + seg, n)))
            if length < 2 and rng.random() >= length / 2:
                out += part                   # a segment shorter than two frames, scaled: see the module doc
                continue
            out += [part[j] for j in rng.permutation(len(part))]
        return out
    if kind == "box_jumble":
        seg = max(1, round(BOX_SEGMENT[severity - 1] * n / THEIR_FRAMES))
        parts = [list(range(s, min(s + seg, n))) for s in range(0, n, seg)]
        return [i for j in rng.permutation(len(parts)) for i in parts[j]]
    if kind == "freeze":
        share = FREEZE_SHARE[severity - 1] * n             # frames picked besides the first, rounded at random
        k = math.floor(share) + int(rng.random() < share - math.floor(share))
        picked = sorted(int(i) for i in rng.choice(n, size=min(k, n), replace=False))
        if not picked or picked[0] != 0:
            picked = [0] + picked
        out = []
        for a, b in zip(picked, picked[1:] + [n]):
            out += [a] * (b - a)
        return out
    raise ValueError(kind)


def reorder(frames: Sequence[np.ndarray], kind: str, severity: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The clip's frames under a temporal corruption (see the module doc)."""
    import cv2

    sizes = [f.shape[:2] for f in frames]
    main = max(set(sizes), key=sizes.count)
    sequence = [i for i, s in enumerate(sizes) if s == main]
    picks = order(kind, severity, len(sequence), rng)
    out: list[np.ndarray | None] = [None] * len(frames)
    for position, i in enumerate(sequence):
        out[i] = np.array(frames[sequence[picks[position]]], copy=True)
    for i, size in enumerate(sizes):
        if size == main:
            continue
        position = min(sum(1 for j in sequence if j < i), len(sequence) - 1)
        source = sequence[picks[position]] if sequence else i
        moved = sequence and picks[position] != position
        out[i] = (cv2.resize(frames[source], (size[1], size[0]), interpolation=cv2.INTER_AREA) if moved
                  else np.array(frames[i], copy=True))
    return out  # type: ignore[return-value]


def disorder(picks: Sequence[int]) -> float:
    """How far a clip's frame order is from the original: the share of frames no longer shown plus the share of
    steps that do not go to the next frame (0 for the original order; a benchmark and the tests measure it)."""
    n = len(picks)
    if n < 2:
        return 0.0
    lost = 1 - len(set(picks)) / n
    jumps = sum(1 for a, b in zip(picks, picks[1:]) if b != a + 1) / (n - 1)
    return lost + jumps
