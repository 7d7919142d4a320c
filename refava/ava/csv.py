"""AVA ground-truth and results csv files."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import AnnotationFormatError
from ..fsutil import SAFE_ID
from ..io import quote
from ..records import Instance, clip_id_of, instance_id_of
from ..validate import Problem, ProblemLog, check_box


@dataclass(frozen=True)
class AvaRow:
    """One row of an AVA ground-truth csv: one box and one action of one person at one keyframe."""

    video_id: str
    timestamp: int
    box_xyxy: tuple[float, float, float, float]
    action_id: int
    person_id: int
    line: int


@dataclass(frozen=True)
class ResultRow:
    """One row of an AVA results csv: a detected box, an action and its score."""

    video_id: str
    timestamp: int
    box_xyxy: tuple[float, float, float, float]
    action_id: int
    score: float
    line: int


def _open_rows(path: Path):
    if not path.exists():
        raise AnnotationFormatError(f"{path}: file not found; give the path of an AVA csv file")
    from ..io import InputError, iter_csv

    try:
        for line_no, cols in iter_csv(path, what="AVA csv file"):      # one line in memory at a time
            if not cols or (len(cols) == 1 and not cols[0].strip()):
                continue
            yield line_no, [c.strip() for c in cols]
    except InputError as exc:
        raise AnnotationFormatError(str(exc)) from None


MAX_TIMESTAMP = 10 ** 6        # seconds: no movie is 11 days long (AVA's keyframes are 902..1798)
MAX_ID = 10 ** 9


def _parse_common(cols: list[str], where: str) -> tuple[str, int, tuple[float, float, float, float], int]:
    video_id = cols[0]
    try:
        timestamp = int(cols[1]) if len(cols[1]) <= 12 else None
    except ValueError:
        timestamp = None
    if timestamp is None or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise AnnotationFormatError(f"{where}: expected an integer timestamp 0..{MAX_TIMESTAMP} in column 2, found "
                                    f"{quote(cols[1])}")
    try:
        box = tuple(float(c) for c in cols[2:6])
    except ValueError:
        raise AnnotationFormatError(f"{where}: expected numbers x1,y1,x2,y2 in columns 3-6, found "
                                    f"{quote(cols[2:6])}") from None
    try:
        action_id = int(cols[6]) if len(cols[6]) <= 12 else MAX_ID + 1
    except ValueError:
        action_id = MAX_ID + 1
    if not 0 <= action_id <= MAX_ID:
        raise AnnotationFormatError(f"{where}: expected an integer action id in column 7, found {quote(cols[6])}")
    return video_id, timestamp, box, action_id  # type: ignore[return-value]


def load_ava_csv(path: str | os.PathLike, *, known_actions: Iterable[int] | None = None,
                 problems: ProblemLog | None = None) -> list[AvaRow]:
    """Read an AVA ground-truth csv (8 columns, no header) into rows; bad rows become problems.

    Each bad row (wrong column count, non-numbers, an unsafe video id, a box outside [0, 1] or with x2 <= x1, an
    action id outside ``known_actions``, an exact duplicate) is recorded in ``problems`` with its file and line and
    left out; pass ``problems=None`` to raise :class:`AnnotationFormatError` on the first one instead.

    >>> rows = load_ava_csv("tests/data/ava/ava_val_v2.1_first400rows.csv")   # doctest: +SKIP
    >>> rows[0].video_id, rows[0].timestamp, rows[0].action_id
    ('1j20qq1JyX4', 902, 12)
    """
    path = Path(path)
    known = set(known_actions) if known_actions is not None else None
    log = problems if problems is not None else None
    rows: list[AvaRow] = []
    seen: set[tuple] = set()

    def report(problem: Problem) -> None:
        if log is None:
            raise AnnotationFormatError(problem.message() + " (rerun without --strict to skip such rows)")
        log.add(problem)

    for line_no, cols in _open_rows(path):
        where = f"{path.name} line {line_no}"
        if len(cols) != 8:
            report(Problem("malformed_row", where, quote(cols[0])[:40] if cols else "?", "8 columns",
                           f"{len(cols)} columns"))
            continue
        try:
            video_id, timestamp, box, action_id = _parse_common(cols, where)
            person_id = int(cols[7]) if len(cols[7]) <= 12 else int("x")
        except AnnotationFormatError as exc:
            report(Problem("malformed_row", where, quote(cols[0])[:40], "numbers in columns 2-8", str(exc).split(": ", 1)[1]))
            continue
        except ValueError:
            report(Problem("malformed_row", where, cols[0], "an integer person id in column 8", quote(cols[7])))
            continue
        if not SAFE_ID.match(video_id):
            report(Problem("unsafe_id", where, quote(video_id)[:40], "a video id of letters, digits, '-' or '_'",
                           quote(video_id)))
            continue
        key_id = instance_id_of(video_id, timestamp, person_id) if timestamp >= 0 and person_id >= 0 else video_id
        if timestamp < 0 or person_id < 0:
            report(Problem("malformed_row", where, video_id, "timestamp and person id >= 0",
                           f"timestamp={timestamp}, person_id={person_id}"))
            continue
        problem = check_box(box, where=where, id=key_id)
        if problem is not None:
            report(problem)
            continue
        if known is not None and action_id not in known:
            report(Problem("unknown_action", where, key_id, "an action id in the label map", f"action_id={action_id}"))
            continue
        key = (video_id, timestamp, box, action_id, person_id)
        if key in seen:
            report(Problem("duplicate_row", where, key_id, "each (box, action, person) row once", "a repeat of an earlier row"))
            continue
        seen.add(key)
        rows.append(AvaRow(video_id, timestamp, box, action_id, person_id, line_no))  # type: ignore[arg-type]
    return rows


def group_instances(rows: Iterable[AvaRow], *, source: str = "", problems: ProblemLog | None = None,
                    excluded: set[tuple[str, int]] | None = None, excluded_counter: dict | None = None) -> list[Instance]:
    """Group csv rows into one :class:`Instance` per (video, keyframe second, person), sorted by key.

    Rows of one person at one keyframe must share the box; a different box is a ``conflicting_box`` problem and
    the first box is kept.  Keyframes in ``excluded`` are dropped and counted in ``excluded_counter['rows']``.
    """
    groups: dict[tuple[str, int, int], list[AvaRow]] = {}
    for row in rows:
        if excluded and (row.video_id, row.timestamp) in excluded:
            if excluded_counter is not None:
                excluded_counter["rows"] = excluded_counter.get("rows", 0) + 1
                excluded_counter.setdefault("keyframes", set()).add((row.video_id, row.timestamp))
            continue
        groups.setdefault((row.video_id, row.timestamp, row.person_id), []).append(row)
    instances = []
    for (video_id, timestamp, person_id), members in sorted(groups.items()):
        first = members[0]
        iid = instance_id_of(video_id, timestamp, person_id)
        for other in members[1:]:
            if other.box_xyxy != first.box_xyxy:
                problem = Problem("conflicting_box", f"{source} line {other.line}", iid,
                                  f"the box of line {first.line} {first.box_xyxy}", f"{other.box_xyxy}")
                if problems is None:
                    raise AnnotationFormatError(problem.message())
                problems.add(problem)
        lines = ",".join(str(m.line) for m in members)
        instances.append(Instance(
            instance_id=iid, clip_id=clip_id_of(video_id, timestamp), video_id=video_id, timestamp=timestamp,
            person_id=person_id, box_xyxy=first.box_xyxy, action_ids=tuple(sorted({m.action_id for m in members})),
            source=f"{source}:{lines}" if source else lines,
        ))
    return instances


def load_ava_results_csv(path: str | os.PathLike) -> list[ResultRow]:
    """Read an AVA results csv (video_id,timestamp,x1,y1,x2,y2,action_id,score); raise on the first bad row."""
    path = Path(path)
    out = []
    for line_no, cols in _open_rows(path):
        where = f"{path.name} line {line_no}"
        if len(cols) != 8:
            raise AnnotationFormatError(f"{where}: expected 8 columns (…,action_id,score), found {len(cols)}")
        video_id, timestamp, box, action_id = _parse_common(cols, where)
        try:
            score = float(cols[7])
        except ValueError:
            raise AnnotationFormatError(f"{where}: expected a score in column 8, found {cols[7]!r}") from None
        out.append(ResultRow(video_id, timestamp, box, action_id, score, line_no))
    return out
