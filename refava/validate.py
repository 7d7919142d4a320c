"""Validation of records and inputs: problems with an id, what was expected, what was found, and what to do.

Long stages do not stop at the first bad row: they collect :class:`Problem` objects in a :class:`ProblemLog`,
which counts them by kind, prints a summary and writes a machine-readable report.  ``--strict`` turns a non-empty
log into a failure.  Functions named ``check_*`` return problems; ``validate_*`` raise the first one.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence


# Kinds of problem, with the advice printed once per kind in summaries.
PROBLEM_ADVICE = {
    "malformed_task": "a task of the export has a field of the wrong JSON type; export it again from Label Studio (JSON)",
    "malformed_row": "fix the row (8 comma-separated columns: video_id,timestamp,x1,y1,x2,y2,action_id,person_id)",
    "invalid_box": "boxes are x1,y1,x2,y2 normalised to [0, 1] with x2 > x1 and y2 > y1; fix or drop the row",
    "unknown_action": "the action id is not in the label map; use the 80-class AVA map or fix the id",
    "duplicate_row": "the same row appears twice; the copy was ignored",
    "conflicting_box": "one person has two different boxes at one keyframe; the first box was kept",
    "unsafe_id": "ids become file names: use letters, digits, '-' and '_' only",
    "missing_movie": "put the movie file into the movies folder (or run `refava download`) and rerun ingest",
    "unreadable_movie": "the file could not be opened or decoded; download it again (`refava download`) and rerun",
    "truncated_movie": "decoding stopped early; download the file again and rerun (finished clips were kept)",
    "keyframe_past_end": "the clip window reaches past the end of the movie; check the movie is complete",
    "keyframe_before_start": "the clip window starts before the movie does; check the timestamp",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input: ``kind`` (a key of PROBLEM_ADVICE), where it is, what was expected/found."""

    kind: str
    where: str
    id: str
    expected: str
    found: str

    def message(self) -> str:
        return f"{self.where}: {self.id}: expected {self.expected}, found {self.found}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d) -> "Problem":
        return cls(**{k: d[k] for k in ("kind", "where", "id", "expected", "found")})


class ProblemLog:
    """Problems of one run, counted by kind."""

    def __init__(self, problems: Iterable[Problem] = ()):
        self.problems: list[Problem] = list(problems)

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def extend(self, problems: Iterable[Problem]) -> None:
        self.problems.extend(problems)

    def __len__(self) -> int:
        return len(self.problems)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    def of_kind(self, kind: str) -> list[Problem]:
        return [p for p in self.problems if p.kind == kind]

    def summary_lines(self, examples: int = 3) -> list[str]:
        lines = []
        for kind, count in self.counts().items():
            lines.append(f"  {kind}: {count}  ({PROBLEM_ADVICE.get(kind, '')})")
            for p in self.of_kind(kind)[:examples]:
                lines.append(f"    - {p.message()}")
            if count > examples:
                lines.append(f"    - ... {count - examples} more in the report")
        return lines

    def to_list(self) -> list[dict]:
        return [p.to_dict() for p in self.problems]


def check_box(box: Sequence[float], *, where: str, id: str) -> Problem | None:
    """A problem if ``box`` is not x1,y1,x2,y2 in [0, 1] with x2 > x1 and y2 > y1, else None.

    >>> check_box((0.5, 0.1, 0.3, 0.9), where="a.csv line 3", id="v___0902___1").found
    'x2=0.3 <= x1=0.5'
    """
    if len(box) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box):
        return Problem("invalid_box", where, id, "4 finite numbers x1,y1,x2,y2", repr(tuple(box)))
    x1, y1, x2, y2 = box
    names = ("x1", "y1", "x2", "y2")
    for name, value in zip(names, box):
        if not 0.0 <= value <= 1.0:
            return Problem("invalid_box", where, id, f"{name} in [0, 1]", f"{name}={value:g}")
    if x2 <= x1:
        return Problem("invalid_box", where, id, "x2 > x1", f"x2={x2:g} <= x1={x1:g}")
    if y2 <= y1:
        return Problem("invalid_box", where, id, "y2 > y1", f"y2={y2:g} <= y1={y1:g}")
    return None
