"""Frozen record types and their collections.

Records are immutable; change them through ``dataclasses.replace``.  Units and conventions are in the names
(``duration_s``, ``box_xyxy``).  Collections own serialisation: ``Instances.from_parquet(path)``,
``Instances(...).to_parquet(path)``; both cast at the boundary to the table's schema.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Generic, Iterable, Iterator, Mapping, TypeVar

GRID_FPS = 30
GRID_FRAMES = 90
KEYFRAME_GRID_INDEX = 45


def clip_id_of(video_id: str, timestamp: int) -> str:
    """The clip key ``'{video_id}___{timestamp:04d}'``.

    >>> clip_id_of("-5KQ66BBWC4", 902)
    '-5KQ66BBWC4___0902'
    """
    return f"{video_id}___{int(timestamp):04d}"


def instance_id_of(video_id: str, timestamp: int, person_id: int) -> str:
    """The RAVAR authors' instance key ``'{video_id}___{timestamp:04d}___{person_id}'``.

    >>> instance_id_of("1j20qq1JyX4", 902, 0)
    '1j20qq1JyX4___0902___0'
    """
    return f"{video_id}___{int(timestamp):04d}___{int(person_id)}"


def parse_instance_id(instance_id: str) -> tuple[str, int, int]:
    """Split an instance id into (video_id, timestamp, person_id); video ids may themselves contain '_'."""
    video_id, timestamp, person_id = instance_id.rsplit("___", 2)
    return video_id, int(timestamp), int(person_id)


class Record:
    """Mixin: ``to_row``/``from_row`` for flat dataclasses whose fields match a table schema."""

    table: ClassVar[str]

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        for key, value in row.items():
            if isinstance(value, tuple):
                row[key] = list(value)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]):
        kwargs = {}
        for f in fields(cls):
            value = row[f.name]
            if isinstance(value, list):
                value = tuple(value)
            kwargs[f.name] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class Movie(Record):
    table: ClassVar[str] = "movies"
    video_id: str
    filename: str
    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration_s: float
    frame_count: int
    frame_count_source: str
    start_s: float
    size_bytes: int


@dataclass(frozen=True)
class Instance(Record):
    table: ClassVar[str] = "instances"
    instance_id: str
    clip_id: str
    video_id: str
    timestamp: int
    person_id: int
    box_xyxy: tuple[float, float, float, float]
    action_ids: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class Clip(Record):
    table: ClassVar[str] = "clips"
    clip_id: str
    video_id: str
    timestamp: int
    window_start_s: float
    window_end_s: float
    n_people: int
    n_frames: int
    frames_file: str
    keyframe_pts_s: float
    keyframe_width: int
    keyframe_height: int
    frame_width: int
    frame_height: int


R = TypeVar("R", bound=Record)


class RecordTable(Generic[R]):
    """An ordered, immutable collection of records of one table, keyed by its first field."""

    record_type: ClassVar[type]

    def __init__(self, records: Iterable[R] = ()):
        self._records = tuple(records)
        key = fields(self.record_type)[0].name
        self._index = {getattr(r, key): r for r in self._records}

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[R]:
        return iter(self._records)

    def __getitem__(self, key: str) -> R:
        return self._index[key]

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._records == other._records  # type: ignore[attr-defined]

    def ids(self) -> list[str]:
        return list(self._index)

    def to_rows(self) -> list[dict[str, Any]]:
        return [r.to_row() for r in self._records]

    def to_arrow(self):
        from .tables import rows_to_arrow

        return rows_to_arrow(self.record_type.table, self.to_rows())

    def to_parquet(self, path, *, provenance: Mapping[str, Any] | None = None) -> None:
        """Validate, cast and write the table atomically, with provenance in the file's metadata."""
        from .tables import write_table

        write_table(self.record_type.table, self.to_rows(), path, provenance=provenance)

    @classmethod
    def from_parquet(cls, path):
        from .tables import read_table

        table = read_table(cls.record_type.table, path)
        return cls(cls.record_type.from_row(row) for row in table.to_pylist())


class Movies(RecordTable[Movie]):
    record_type = Movie


class Instances(RecordTable[Instance]):
    record_type = Instance


class Clips(RecordTable[Clip]):
    record_type = Clip
