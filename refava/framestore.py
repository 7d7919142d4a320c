"""Frame stores (``frames/clean/<video_id>.parquet``, ``frames/corrupted/<setting>/<video_id>.parquet``): the
per-clip checksums recorded when a store is written, and the check that finds a damaged one.

Every store records, in its own Parquet metadata, the sha256 of each clip's JPEG bytes (``clip_hash``): the clean
stores under ``clip_sha256``, the corrupted ones under ``outputs``.  A damaged block in the data pages then changes
a clip's hash; one in the footer makes the file unreadable.  Either way :func:`check_frame_store` names the movie
and the clip.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import ValidationError


CLEAN_DIR = Path("frames") / "clean"            # frames/clean/<video_id>.parquet
CORRUPTED_DIR = Path("frames") / "corrupted"    # frames/corrupted/<type>_s<severity>/<video_id>.parquet


class DamagedFrameStoreError(ValidationError):
    """A frame store's bytes do not match the checksums recorded when it was written."""


def clean_path(root: str | Path, video_id: str) -> Path:
    """Where the clean frame store of ``video_id`` lives in the workspace at ``root``."""
    return Path(root) / CLEAN_DIR / f"{video_id}.parquet"


def corrupted_path(root: str | Path, setting: str, video_id: str) -> Path:
    """Where the frame store of ``video_id`` under corruption ``setting`` (``fog_s3``) lives."""
    return Path(root) / CORRUPTED_DIR / setting / f"{video_id}.parquet"


def read_store(path: str | Path, columns: list[str] | None = None):
    """A frame store as an Arrow table (all of it cast to the frames schema, or only ``columns``); a store that
    cannot be read raises :class:`DamagedFrameStoreError` naming it."""
    from .errors import SchemaError
    from .tables import read_table

    try:
        return read_table("frames", path, columns=columns)
    except SchemaError as exc:
        raise DamagedFrameStoreError(f"{path} (movie {Path(path).stem}): {str(exc).split(': ', 1)[-1]}") from None


def clip_order(row: dict) -> tuple:
    """The order in which a clip's frames are hashed: by grid index, the keyframe after a sampled frame there."""
    return (row["grid_index"], row["role"] != "keyframe")


def clip_hash(jpegs: Iterable[bytes | memoryview]) -> str:
    """sha256 over a clip's JPEG bytes in :func:`clip_order` (length-prefixed, so boundaries count)."""
    h = hashlib.sha256()
    for data in jpegs:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def hash_rows(rows: Sequence[dict]) -> str:
    """:func:`clip_hash` of one clip's frame rows, in any order."""
    return clip_hash(r["jpeg"] for r in sorted(rows, key=clip_order))


def recorded_hashes(path: str | Path) -> dict[str, str] | None:
    """clip_id -> sha256 recorded in a frame store's metadata (None: the store records none, or is unreadable)."""
    from .tables import read_provenance

    try:
        meta = read_provenance(path)
    except (OSError, ValueError):
        return None
    if not meta:
        return None
    # a store with no clip (a movie shorter than the clip window) records an empty mapping: that is a record too
    for key in ("clip_sha256", "outputs"):
        if isinstance(meta.get(key), dict):
            return meta[key]
    return None


@dataclass(frozen=True)
class StoreProblem:
    path: str
    clip_id: str | None
    kind: str            # unreadable, no_checksums, checksum_mismatch, missing_clip, undecodable_jpeg
    detail: str


def check_frame_store(path: str | Path, *, decode: bool = False, root: Path | None = None) -> list[StoreProblem]:
    """The problems of one frame store: unreadable, clips whose JPEG bytes do not match their recorded
    checksum, recorded clips that are missing, and (``decode``) JPEGs that do not decode."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    name = str(path.relative_to(root)) if root else str(path)
    expected = recorded_hashes(path)
    columns = ["clip_id", "role", "grid_index", "jpeg"]
    try:
        pf = pq.ParquetFile(path)
        ids = pf.read(columns=["clip_id"]).column("clip_id").to_pylist()
    except (pa.ArrowException, OSError) as exc:
        return [StoreProblem(name, None, "unreadable", f"not readable as Parquet ({str(exc)[:160]})")]
    if expected is None:
        return [StoreProblem(name, None, "no_checksums", "records no clip checksums (written by an older refava)")]
    problems: list[StoreProblem] = []
    seen: set[str] = set()

    def check(clip_id: str, rows: list[dict]) -> None:
        seen.add(clip_id)
        digest = expected.get(clip_id)
        if digest is None:
            return
        if hash_rows(rows) != digest:
            problems.append(StoreProblem(name, clip_id, "checksum_mismatch",
                                         f"JPEG bytes do not match the sha256 recorded when the file was written "
                                         f"({digest[:12]}...): the file was damaged after it was written"))
            return
        if decode:
            for row in rows:
                bad = jpeg_problem(row["jpeg"])
                if bad:
                    problems.append(StoreProblem(name, clip_id, "undecodable_jpeg",
                                                 f"{row['role']} frame at grid index {row['grid_index']}: {bad}"))

    runs = [c for i, c in enumerate(ids) if i == 0 or ids[i - 1] != c]
    try:
        if len(runs) == len(set(runs)):
            # each clip's rows are together (as refava writes them): one row group at a time, in bounded memory
            current, rows = None, []
            for batch in pf.iter_batches(columns=columns, batch_size=4096):
                for row in batch.to_pylist():
                    if row["clip_id"] != current:
                        if current is not None:
                            check(current, rows)
                        current, rows = row["clip_id"], []
                    rows.append(row)
            if current is not None:
                check(current, rows)
        else:                                          # a file refava did not write: clips interleaved
            by_clip: dict[str, list[dict]] = {}
            for row in pf.read(columns=columns).to_pylist():
                by_clip.setdefault(row["clip_id"], []).append(row)
            for clip_id, rows in by_clip.items():
                check(clip_id, rows)
    except (pa.ArrowException, OSError) as exc:
        return [StoreProblem(name, None, "unreadable", f"not readable as Parquet ({str(exc)[:160]})")]
    for clip_id in sorted(set(expected) - seen):
        problems.append(StoreProblem(name, clip_id, "missing_clip", "recorded clip has no frames in the file"))
    return sorted(problems, key=lambda p: (p.clip_id or "", p.kind, p.detail))


def read_keyframes(path: str | Path, clip_ids: set[str] | None = None) -> dict[str, bytes]:
    """clip id -> keyframe JPEG bytes of one frame store (only ``clip_ids`` when given); a store that cannot be
    read raises :class:`DamagedFrameStoreError` naming it."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=["clip_id", "role", "jpeg"], filters=[("role", "=", "keyframe")])
    except (pa.ArrowException, OSError) as exc:
        raise DamagedFrameStoreError(f"{path}: not readable as a frame store ({str(exc)[:160]}); delete it and rerun "
                                     f"the stage that wrote it") from None
    if clip_ids is not None:
        table = table.filter(pc.is_in(table.column("clip_id"), value_set=pa.array(sorted(clip_ids), pa.string())))
    return dict(zip(table.column("clip_id").to_pylist(), table.column("jpeg").to_pylist()))


def clip_layout(path: str | Path) -> dict[str, dict]:
    """clip id -> what a frame store holds of it without its pixels: ``keyframe`` (pts_s, width, height),
    ``sampled`` (number of sampled frames) and ``sampled_size`` (the set of their (width, height)).  Raises
    :class:`DamagedFrameStoreError` when the store cannot be read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path, columns=["clip_id", "role", "pts_s", "width", "height"]).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise DamagedFrameStoreError(f"{path}: not readable as a frame store ({str(exc)[:160]})") from None
    out: dict[str, dict] = {}
    for row in rows:
        clip = out.setdefault(row["clip_id"], {"keyframe": None, "sampled": 0, "sampled_size": set()})
        if row["role"] == "keyframe":
            clip["keyframe"] = (row["pts_s"], row["width"], row["height"])
        else:
            clip["sampled"] += 1
            clip["sampled_size"].add((row["width"], row["height"]))
    return out


def jpeg_problem(data: bytes, *, cheap: bool = False) -> str | None:
    """Why ``data`` is not a decodable JPEG (None: it decodes).  ``cheap`` decodes at an eighth of the size in grey
    (every entropy-coded block is still read, so damaged data is still found, at a fraction of the cost)."""
    import simplejpeg

    if data[:2] != b"\xff\xd8":
        return f"not JPEG data ({len(data)} bytes, starts {bytes(data[:4]).hex()})"
    try:
        if cheap:
            simplejpeg.decode_jpeg(bytes(data), colorspace="GRAY", fastdct=True, fastupsample=True, min_factor=8)
        else:
            simplejpeg.decode_jpeg(bytes(data), colorspace="RGB")
    except (ValueError, RuntimeError) as exc:
        return f"does not decode ({exc})"
    return None


def require_intact(path: str | Path, computed: dict[str, str]) -> None:
    """Raise :class:`DamagedFrameStoreError` naming movie and clip when a clip's hash as read (``computed``:
    clip_id -> :func:`clip_hash`) differs from the one recorded when the store was written.  A store without
    records is refused too: its integrity cannot be told."""
    path = Path(path)
    expected = recorded_hashes(path)
    if expected is None:
        raise DamagedFrameStoreError(f"{path}: records no clip checksums (written by an older refava, or damaged "
                                     f"metadata); rerun the stage that wrote it with --force")
    for clip_id, digest in computed.items():
        if clip_id in expected and digest != expected[clip_id]:
            raise DamagedFrameStoreError(
                f"{path} (movie {path.stem}) clip {clip_id}: the JPEG bytes do not match the sha256 recorded when the "
                f"file was written; the file is damaged. Delete it and rerun the stage that wrote it "
                f"(`refava ingest` for frames/clean, `refava corrupt` for frames/corrupted), then package again")


__all__ = ["CLEAN_DIR", "CORRUPTED_DIR", "DamagedFrameStoreError", "clean_path", "corrupted_path", "read_store", "StoreProblem", "check_frame_store", "clip_hash", "clip_layout", "clip_order", "hash_rows",
           "jpeg_problem", "read_keyframes", "recorded_hashes", "require_intact"]
