"""Reading and writing tables: parquet files cast to their schema, written atomically, with provenance.

Provenance lives in the parquet key-value metadata under ``refava``: the table name, refava's version, the stage's
parameters and the hashes of its inputs.  It holds no wall-clock time, so the same inputs give the same bytes.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import SchemaError, StageError
from .fsutil import atomic_path, owner, stale, write_json_atomic
from .schemas import arrow_schema, cast_table, validate_rows

PROVENANCE_KEY = b"refava"


def _check_extension(path: Path) -> None:
    if path.suffix != ".parquet":
        raise SchemaError(f"{path}: unknown table format {path.suffix!r}; expected a .parquet file")


def rows_to_arrow(name: str, rows: list[Mapping[str, Any]], *, source: str = "") -> pa.Table:
    """Validate ``rows`` against table ``name``'s JSON Schema and build an Arrow table of its schema."""
    validate_rows(name, rows, source=source or name)
    schema = arrow_schema(name)
    try:
        return pa.Table.from_pylist(list(rows), schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaError(f"{source or name}: rows do not fit schemas/{name}.schema.json: {exc}") from exc


def write_table(name: str, rows: Iterable[Mapping[str, Any]] | pa.Table, path: str | os.PathLike,
                *, provenance: Mapping[str, Any] | None = None, validate: bool = True) -> Path:
    """Write table ``name`` to ``path`` (.parquet) atomically; return the path.

    ``rows`` is a list of dicts (checked against the JSON Schema) or an Arrow table (cast to the Arrow schema).
    """
    from . import __version__

    path = Path(path)
    _check_extension(path)
    if isinstance(rows, pa.Table):
        table = cast_table(name, rows, source=str(path))
        if validate:
            validate_rows(name, table.to_pylist(), source=str(path))
    else:
        rows = list(rows)
        table = rows_to_arrow(name, rows, source=str(path)) if validate else pa.Table.from_pylist(rows, schema=arrow_schema(name))
    meta = {"table": name, "refava_version": __version__, **(dict(provenance) if provenance else {})}
    table = table.replace_schema_metadata({PROVENANCE_KEY: json.dumps(meta, sort_keys=True, default=str).encode()})
    # zstd for everything but binary payloads (JPEG): they do not compress, and reading them back would pay for it
    codecs = {f.name: ("none" if pa.types.is_binary(f.type) else "zstd") for f in table.schema}
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=codecs)
    return path


def read_table(name: str, path: str | os.PathLike, *, columns: list[str] | None = None) -> pa.Table:
    """Read table ``name`` from ``path`` and cast it to its schema; a missing file says which stage makes it."""
    path = Path(path)
    _check_extension(path)
    if not path.exists():
        raise StageError(f"table {name!r} not found at {path}: run the stage that writes it first "
                         f"(see `refava status`)")
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SchemaError(f"{path}: not a readable parquet file ({exc}); delete it and rerun the stage with --force") from exc
    if columns is not None:
        return table
    return cast_table(name, table.replace_schema_metadata(None), source=str(path))


def read_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance dict stored in a table file, or None if the file has none or does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        meta = pq.read_metadata(path).metadata or {}
    except (pa.ArrowInvalid, OSError):
        return None
    raw = meta.get(PROVENANCE_KEY)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:                     # damaged metadata: as good as none (the stage redoes the file)
        return None
    return value if isinstance(value, dict) else None


JOURNAL = ".commit.json"


@contextmanager
def commit_together(tables_dir: str | os.PathLike, names: list[str]):
    """Write several tables of ``tables_dir`` as one unit: a reader, or a run after a kill, sees all of the new
    tables or none of them.

    Yields ``{name: staging path}``; write each table there (``to_parquet``/``write_table``).  On success a
    journal (``.commit.json``) lists the renames, they are done, and the journal is removed; a kill after the
    journal is complete is rolled forward by :func:`recover_commit`, one before it leaves the old tables.

    >>> with commit_together("ws/tables", ["movies", "clips"]) as staged:   # doctest: +SKIP
    ...     movies.to_parquet(staged["movies"]); clips.to_parquet(staged["clips"])
    """
    tables_dir = Path(tables_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    recover_commit(tables_dir)
    staged = {name: tables_dir / f".{name}.{owner()}.staged.parquet" for name in names}
    try:
        yield staged
        missing = [name for name, path in staged.items() if not path.exists()]
        if missing:
            raise StageError(f"commit of {names} in {tables_dir}: table(s) {missing} were not written")
        write_json_atomic(tables_dir / JOURNAL, {"renames": {f"{n}.parquet": p.name for n, p in staged.items()}})
    except BaseException:
        for path in staged.values():
            path.unlink(missing_ok=True)
        raise
    recover_commit(tables_dir)


def recover_commit(tables_dir: str | os.PathLike) -> list[str]:
    """Finish a joint commit that a kill interrupted (see :func:`commit_together`), and remove staged tables of
    dead runs that never reached their journal.  Returns the tables renamed into place."""
    tables_dir = Path(tables_dir)
    journal = tables_dir / JOURNAL
    done = []
    if journal.exists():
        try:
            renames = json.loads(journal.read_text())["renames"]
        except (OSError, ValueError, KeyError):
            renames = {}             # a torn journal: its write never finished, so no rename had started
        for final, staged in renames.items():
            if (tables_dir / staged).exists():
                os.replace(tables_dir / staged, tables_dir / final)
                done.append(final)
        journal.unlink(missing_ok=True)
    for path in tables_dir.glob(".*.staged.parquet"):
        if stale(path.name):
            path.unlink(missing_ok=True)
    return done
