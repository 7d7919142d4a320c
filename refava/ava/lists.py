"""AVA excluded-timestamp files and movie file-name lists."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import AnnotationFormatError
from ..fsutil import SAFE_ID
from ..io import quote


def _lines(path: Path, what: str):
    """(line number, stripped text) of a small AVA text file, a line at a time through refava's bounded reader."""
    from ..io import InputError, iter_lines

    try:
        for line_no, line in iter_lines(path, what=what, max_line_bytes=1 << 16):
            yield line_no, line.strip()
    except InputError as exc:
        raise AnnotationFormatError(str(exc)) from None


def load_excluded_timestamps(path: str | os.PathLike) -> set[tuple[str, int]]:
    """Read ``video_id,timestamp`` rows into a set of (video_id, second)."""
    path = Path(path)
    if not path.exists():
        raise AnnotationFormatError(f"{path}: excluded-timestamps file not found")
    out = set()
    for line_no, line in _lines(path, "excluded-timestamps file"):
        if not line:
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) != 2:
            raise AnnotationFormatError(f"{path.name} line {line_no}: expected 'video_id,timestamp', found {quote(line)}")
        try:
            out.add((cols[0], int(cols[1])))
        except ValueError:
            raise AnnotationFormatError(f"{path.name} line {line_no}: expected an integer timestamp, found {quote(cols[1])}") from None
    return out


def load_file_list(path: str | os.PathLike) -> dict[str, str]:
    """Read a movie file-name list (one ``<video_id>.<ext>`` a line); return {video_id: file name}.

    Ids may start with '-' or '_'; names that are not a safe id plus an extension are refused.
    """
    path = Path(path)
    if not path.exists():
        raise AnnotationFormatError(f"{path}: file-name list not found")
    out: dict[str, str] = {}
    for line_no, name in _lines(path, "file-name list"):
        if not name:
            continue
        stem, dot, ext = name.rpartition(".")
        if not dot or not SAFE_ID.match(stem) or not ext.isalnum():
            raise AnnotationFormatError(f"{path.name} line {line_no}: expected '<video_id>.<ext>' with a safe id, found {quote(name)}")
        if stem in out:
            raise AnnotationFormatError(f"{path.name} line {line_no}: video id {stem!r} listed twice ({out[stem]}, {name})")
        out[stem] = name
    return out
