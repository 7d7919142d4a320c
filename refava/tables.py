"""Reading and writing tables: parquet files cast to their schema, written atomically, with provenance.

Provenance lives in the parquet key-value metadata under ``refava``: the table name, refava's version, the stage's
parameters and the hashes of its inputs.  It holds no wall-clock time, so the same inputs give the same bytes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import SchemaError, StageError
from .fsutil import atomic_path
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
    return json.loads(raw) if raw else None
