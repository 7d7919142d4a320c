"""``refava package --verify``: every shard against the manifest, every row against the schema."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import RefavaError
from ..fsutil import sha256_file
from .format import MANIFEST, PackageError, _is_refava_dataset

# --- verification -----------------------------------------------------------------------------------------------

@dataclass
class VerifyReport:
    shards: int
    rows: int
    problems: list[str]


def verify_dataset(folder: str | os.PathLike, *, rows: bool = True, decode: bool = True) -> VerifyReport:
    """Recompute every shard's checksum and row count against the manifest and check every row against
    ``schemas/dataset.schema.json``; with ``decode`` every JPEG is decoded (else only its magic number is read)."""
    from ..schemas import validate_rows

    folder = Path(folder)
    if not _is_refava_dataset(folder):
        raise PackageError(f"{folder}: not a refava dataset (no {MANIFEST}); package one with `refava package`")
    manifest = json.loads((folder / MANIFEST).read_text())
    problems: list[str] = []
    n_shards = n_rows = 0
    listed = set()
    for config, entry in manifest["configs"].items():
        for split, shards in entry["splits"].items():
            for shard in shards:
                n_shards += 1
                path = folder / shard["path"]
                listed.add(path.resolve())
                if not path.exists():
                    problems.append(f"{shard['path']}: missing (manifest lists it with {shard['rows']} rows)")
                    continue
                digest = sha256_file(path)
                if digest != shard["sha256"]:
                    problems.append(f"{shard['path']}: sha256 {digest[:12]}... but the manifest says "
                                    f"{shard['sha256'][:12]}...; the file changed after packaging")
                try:
                    pf = pq.ParquetFile(path)
                except (pa.ArrowInvalid, OSError) as exc:
                    problems.append(f"{shard['path']}: not readable as Parquet ({exc})")
                    continue
                if pf.metadata.num_rows != shard["rows"]:
                    problems.append(f"{shard['path']}: {pf.metadata.num_rows} rows, manifest says {shard['rows']}")
                n_rows += pf.metadata.num_rows
                if rows:
                    for i, batch in enumerate(pf.iter_batches(batch_size=256)):
                        records = [_jsonable(r, shard["path"], problems, decode) for r in batch.to_pylist()]
                        try:
                            validate_rows("dataset", records, source=f"{shard['path']} batch {i}")
                        except RefavaError as exc:
                            problems.append(str(exc))
    extra = [p for p in (folder / "data").rglob("*.parquet") if p.resolve() not in listed]
    problems += [f"{p.relative_to(folder)}: not in the manifest" for p in extra]
    return VerifyReport(n_shards, n_rows, problems)


def _jsonable(row: dict, where: str, problems: list[str], decode: bool = False) -> dict:
    from ..framestore import jpeg_problem

    def image(value, what):
        if value is None:
            return None
        data = value.get("bytes") or b""
        if data[:2] != b"\xff\xd8":
            problems.append(f"{where}: {row.get('instance_id')}: {what} is not JPEG data ({len(data)} bytes)")
        elif decode:
            bad = jpeg_problem(data)
            if bad:
                problems.append(f"{where}: {row.get('instance_id')}: {what} {bad}")
        return {"jpeg_bytes": len(data)}

    out = dict(row)
    if "keyframe" in out:
        out["keyframe"] = image(out["keyframe"], "keyframe")
    if "frames" in out:
        out["frames"] = [image(f, f"frame {i}") for i, f in enumerate(out["frames"])]
    return out


