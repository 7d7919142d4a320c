"""Detections for the location-semantic stream read from a table instead of computed by a detector.

RefAtomNet's location tokens are the keyframe's detections: a corner box and the text embedding of the detected
class.  Besides DETR on the keyframe, they can come from

* AVA's dense-proposals pickle (``'video_id,TTTT' -> float (N, 5)``: x1, y1, x2, y2, score; all persons), or
* a csv of precomputed detections, one box per line: ``video_id,keyframe_s,x1,y1,x2,y2,score`` (normalised
  corners; a header line is allowed), for instance a detector run once elsewhere.

Every detection is a person, so its semantic part is the embedding of "person".  Per keyframe the ``k`` highest
scores are kept (``k`` = the most any keyframe has, at most 100, DETR's query count) and the rest of the ``k`` slots
are zeros; keyframes absent from the table get zeros only, and are counted.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import RefavaError

MAX_DETECTIONS = 100


class DetectionTableError(RefavaError, ValueError):
    pass


@dataclass
class DetectionTable:
    boxes: dict[tuple[str, int], np.ndarray]      # (video id, second) -> float64 (N, 5), best score first
    source: str
    k: int = 0
    missing: set = field(default_factory=set)   # keyframes asked for and not in the table
    min_score: float = 0.0                      # detections below this score are left out (high confidence only)

    def __post_init__(self):
        if not self.k:
            self.k = max(1, min(MAX_DETECTIONS, max((len(b) for b in self.boxes.values()), default=1)))

    def tokens(self, video_ids, seconds, person: torch.Tensor) -> torch.Tensor:
        """Location tokens (B, k, 4 + d) for keyframes (video id, second), with ``person`` (d,) as the class part."""
        out = torch.zeros(len(video_ids), self.k, 4 + person.shape[-1])
        for i, key in enumerate(zip(video_ids, (int(s) for s in seconds))):
            found = self.boxes.get(key)
            if found is None:
                self.missing.add(key)
                continue
            top = found[found[:, 4] >= self.min_score][: self.k]
            out[i, : len(top), :4] = torch.from_numpy(top[:, :4]).float()
            out[i, : len(top), 4:] = person
        return out


def load_detection_table(path: str | os.PathLike, min_score: float = 0.0) -> DetectionTable:
    """A dense-proposals pickle (``.pkl``) or a detections csv; boxes sorted by score, best first; detections
    scored below ``min_score`` are not used."""
    path = Path(path)
    if not path.is_file():
        raise DetectionTableError(f"{path}: detections file not found; pass AVA's dense-proposals pickle or a csv "
                                  f"video_id,keyframe_s,x1,y1,x2,y2,score")
    if path.suffix == ".pkl":
        from ..ava.proposals import load_proposals

        raw = load_proposals(path)
        boxes = {}
        for key, arr in raw.items():
            if arr.shape[1] == 4:                                  # no scores: all equal
                arr = np.concatenate([arr, np.ones((len(arr), 1))], axis=1)
            boxes[key] = arr
    else:
        boxes = _read_csv(path)
    for key, arr in boxes.items():
        bad = ~((arr[:, :4] >= -1e-6) & (arr[:, :4] <= 1 + 1e-6)).all(axis=1)
        if bad.any():
            raise DetectionTableError(f"{path}: keyframe {key[0]},{key[1]:04d}: expected normalised corners in "
                                      f"[0, 1], found {arr[bad][0, :4].tolist()}; divide pixel boxes by the frame size")
        boxes[key] = arr[np.argsort(-arr[:, 4], kind="stable")]
    return DetectionTable(boxes, str(path), min_score=min_score)


def _read_csv(path: Path) -> dict[tuple[str, int], np.ndarray]:
    rows: dict[tuple[str, int], list] = {}
    with open(path, newline="") as fh:
        for number, line in enumerate(csv.reader(fh), start=1):
            if not line or (number == 1 and not _is_number(line[2] if len(line) > 2 else "")):
                continue                                            # blank line, or the header
            if len(line) != 7:
                raise DetectionTableError(f"{path}, line {number}: expected 7 fields video_id,keyframe_s,x1,y1,x2,y2,"
                                          f"score, found {len(line)}: {','.join(line)[:120]}")
            try:
                key = (line[0], int(line[1]))
                values = [float(v) for v in line[2:]]
            except ValueError:
                raise DetectionTableError(f"{path}, line {number}: expected an integer second and five numbers, "
                                          f"found {','.join(line)[:120]}") from None
            rows.setdefault(key, []).append(values)
    if not rows:
        raise DetectionTableError(f"{path}: no detections in the file")
    return {key: np.array(values, dtype=np.float64) for key, values in rows.items()}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


__all__ = ["DetectionTable", "DetectionTableError", "load_detection_table"]
