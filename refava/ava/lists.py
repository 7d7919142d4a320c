"""AVA excluded-timestamp files and movie file-name lists."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import AnnotationFormatError
from ..fsutil import SAFE_ID
from .text import read_text


def load_excluded_timestamps(path: str | os.PathLike) -> set[tuple[str, int]]:
    """Read ``video_id,timestamp`` rows into a set of (video_id, second)."""
    path = Path(path)
    if not path.exists():
        raise AnnotationFormatError(f"{path}: excluded-timestamps file not found")
    out = set()
    for line_no, line in enumerate(read_text(path, "excluded-timestamps file").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) != 2:
            raise AnnotationFormatError(f"{path.name} line {line_no}: expected 'video_id,timestamp', found {line!r}")
        try:
            out.add((cols[0], int(cols[1])))
        except ValueError:
            raise AnnotationFormatError(f"{path.name} line {line_no}: expected an integer timestamp, found {cols[1]!r}") from None
    return out


def load_file_list(path: str | os.PathLike) -> dict[str, str]:
    """Read a movie file-name list (one ``<video_id>.<ext>`` a line); return {video_id: file name}.

    Ids may start with '-' or '_'; names that are not a safe id plus an extension are refused.
    """
    path = Path(path)
    if not path.exists():
        raise AnnotationFormatError(f"{path}: file-name list not found")
    out: dict[str, str] = {}
    for line_no, line in enumerate(read_text(path, "file-name list").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        stem, dot, ext = name.rpartition(".")
        if not dot or not SAFE_ID.match(stem) or not ext.isalnum():
            raise AnnotationFormatError(f"{path.name} line {line_no}: expected '<video_id>.<ext>' with a safe id, found {name!r}")
        if stem in out:
            raise AnnotationFormatError(f"{path.name} line {line_no}: video id {stem!r} listed twice ({out[stem]}, {name})")
        out[stem] = name
    return out
