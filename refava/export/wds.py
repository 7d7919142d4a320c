"""``refava export --format webdataset``: tar shards that ``webdataset`` and ``datasets.load_dataset("webdataset")``
stream, as video2dataset and img2dataset write them::

    <split>/refava-<split>-000000.tar, ...   one sample per row, in clip order (key <video>_<second>_<person>):
        <key>.json                       the row: every column but the images
        <key>.keyframe.jpg               the keyframe
        <key>.frame00.jpg, frame01, ...  the sampled frames in time order (the same count in every row of a split
                                         when the dataset has it: ``datasets`` needs every sample to hold the same
                                         fields)
    refava-export.json                   with the others' fields, ``shards``: per split, each shard's path, rows,
                                         bytes, sha256 and first and last key

Shards close when the next sample would take them past ``--shard-size`` (a shard holds at least one sample).  They
are written by ``--workers`` threads, each shard atomically into a parts folder beside the output
(``.<out>.parts``): a killed export resumes there, reusing every finished shard whose bytes match the plan, and
the parts folder goes when the export is swapped into place.  The tar members have fixed owners, modes and times,
so the same dataset and shard size give the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

IMAGES = ("keyframe", "frames")
PLAN_VERSION = 1


@dataclass
class Shard:
    split: str
    index: int
    rows: list[tuple[str, int]] = field(default_factory=list)   # (parquet file, row) per sample, in key order
    keys: list[str] = field(default_factory=list)
    bytes: int = 0

    @property
    def path(self) -> str:
        return f"{self.split}/refava-{self.split}-{self.index:06d}.tar"


def sample_key(row: dict) -> str:
    """The sample's key: sorts by clip, then person; no dots (webdataset splits a member name at its first dot)."""
    return f"{row['video_id']}_{int(row['keyframe_s']):05d}_{int(row['person_id']):04d}".replace(".", "-")


def _tar_size(sizes: list[int]) -> int:
    """Bytes the members take in a tar: a 512-byte header each, data padded to 512."""
    return sum(512 + -(-n // 512) * 512 for n in sizes)


def _closed(members: int) -> int:
    """A tar's size: its members, two zero blocks at the end, padded to tarfile's 10240-byte records."""
    return -(-(members + 1024) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def plan_shards(folder: Path, manifest: dict, split: str, shard_bytes: int, images: bool) -> list[Shard]:
    """The shards of ``split``: samples in key order, a new shard when the next sample would pass ``shard_bytes``."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    entries = []
    for shard in manifest["configs"]["default"]["splits"].get(split, []):
        path = folder / shard["path"]
        pf = pq.ParquetFile(path)
        names = ["video_id", "keyframe_s", "person_id"] + (list(IMAGES) if images else [])
        table = pf.read(columns=names)
        scalar_json = 2048                                    # the row's JSON, generously
        sizes = [scalar_json] * table.num_rows
        if images:                                            # sizes from Arrow: no JPEG bytes copied
            def padded(lengths) -> np.ndarray:
                n = np.asarray(pc.fill_null(lengths, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
                return 512 + -(-n // 512) * 512
            key = padded(pc.binary_length(pc.struct_field(table.column("keyframe"), "bytes")))
            frames = table.column("frames")
            per_row = np.zeros(table.num_rows, dtype=np.int64)
            flat = pc.list_flatten(frames)
            if len(flat):
                np.add.at(per_row, np.asarray(pc.list_parent_indices(frames).to_numpy(zero_copy_only=False)),
                          padded(pc.binary_length(pc.struct_field(flat, "bytes"))))
            sizes = (_tar_size([scalar_json]) + key + per_row).tolist()
        for i, row in enumerate(table.select(["video_id", "keyframe_s", "person_id"]).to_pylist()):
            entries.append((sample_key(row), shard["path"], i, sizes[i]))
    entries.sort()
    shards: list[Shard] = []
    for key, path, i, size in entries:
        if not shards or (shards[-1].rows and _closed(shards[-1].bytes + size) > shard_bytes):
            shards.append(Shard(split, len(shards)))
        shards[-1].rows.append((path, i))
        shards[-1].keys.append(key)
        shards[-1].bytes += size
    return shards


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


class _Tables:
    """The dataset's parquet files, each read once and shared by the writer threads (Arrow reads are thread-safe)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.cache: dict = {}
        import threading

        self.lock = threading.Lock()

    def row(self, path: str, i: int, images: bool) -> dict:
        import pyarrow.parquet as pq

        with self.lock:
            table = self.cache.get(path)
            if table is None:
                table = self.cache[path] = pq.read_table(self.folder / path, memory_map=True)
        names = [c for c in table.column_names if images or c not in IMAGES]
        return table.select(names).slice(i, 1).to_pylist()[0]


def write_shard(shard: Shard, tables: _Tables, rephrased: dict, with_images: bool, target: Path) -> dict:
    """One shard, atomically at ``target``; returns its manifest entry."""
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _write_shard(shard, tables, rephrased, with_images, target, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)                 # a full disk or an error: no torn shard is left
        raise


def _write_shard(shard: Shard, tables: _Tables, rephrased: dict, with_images: bool, target: Path, tmp: Path) -> dict:
    digest = hashlib.sha256()
    images = 0
    with open(tmp, "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for (path, i), key in zip(shard.rows, shard.keys):
                row = tables.row(path, i, with_images)
                record = {k: v for k, v in row.items() if k not in IMAGES}
                record["rephrasings"] = rephrased.get(row["instance_id"], [])
                _member(tar, f"{key}.json", json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
                if with_images:
                    _member(tar, f"{key}.keyframe.jpg", row["keyframe"]["bytes"])
                    for n, frame in enumerate(row["frames"] or []):
                        _member(tar, f"{key}.frame{n:02d}.jpg", frame["bytes"])
                    images += 1 + len(row["frames"] or [])
        raw.flush()
        os.fsync(raw.fileno())
    with open(tmp, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    os.replace(tmp, target)
    return {"path": shard.path, "rows": len(shard.rows), "bytes": target.stat().st_size,
            "sha256": digest.hexdigest(), "first_key": shard.keys[0], "last_key": shard.keys[-1], "images": images}


def _rephrasings(folder: Path, manifest: dict, split: str) -> dict:
    import pyarrow.parquet as pq

    out = {}
    config = manifest["configs"].get("rephrased")
    for shard in (config or {}).get("splits", {}).get(split, []):
        t = pq.read_table(folder / shard["path"], columns=["instance_id", "rephrasings"])
        out.update(zip(t.column("instance_id").to_pylist(), t.column("rephrasings").to_pylist()))
    return out


def export_webdataset(folder: Path, manifest: dict, splits: list[str], out: Path, tmp: Path, *, shard_bytes: int,
                      workers: int, images: bool, progress: bool = False,
                      log: Callable[[str], None] = print) -> dict:
    """Write the shards of ``splits`` into ``tmp`` (the export being built for ``out``), through the parts folder
    beside ``out``; returns the ``shards`` entry of the export's manifest and the row counts."""
    from ..fsutil import sha256_file, write_json_atomic
    from ..package.format import MANIFEST
    from ..progress import bar as _progress

    parts = out.parent / f".{out.name}.parts"
    plans = {split: plan_shards(folder, manifest, split, shard_bytes, images) for split in splits}
    plan_id = hashlib.sha256(json.dumps({"dataset": sha256_file(folder / MANIFEST), "shard_bytes": shard_bytes,
                                         "images": images, "version": PLAN_VERSION,
                                         "plans": {s: [p.keys for p in v] for s, v in plans.items()}},
                                        sort_keys=True).encode()).hexdigest()
    done = _finished_parts(parts, plan_id)
    todo = [s for plan in plans.values() for s in plan if s.path not in done]
    if done:
        log(f"webdataset: resuming: {len(done)} shard(s) of an unfinished export reused from {parts}")
    tables = _Tables(folder)
    rephrased = {split: _rephrasings(folder, manifest, split) for split in splits}
    bar = _progress(total=sum(len(s.rows) for s in todo), enabled=progress, desc="webdataset", unit="row")

    def one(shard: Shard) -> dict:
        entry = write_shard(shard, tables, rephrased[shard.split], images, parts / shard.path)
        write_json_atomic(parts / f"{shard.path}.json", entry)
        bar.update(len(shard.rows))
        return entry

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for entry in pool.map(one, todo):
                done[entry["path"]] = entry
    finally:
        bar.close()
    result: dict = {"shard_bytes": shard_bytes, "splits": {}}
    for split, plan in plans.items():
        result["splits"][split] = [done[s.path] for s in plan]
        for shard in plan:
            target = tmp / shard.path
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(parts / shard.path, target)
            except OSError:
                shutil.copyfile(parts / shard.path, target)
    return result


def _finished_parts(parts: Path, plan_id: str) -> dict[str, dict]:
    """The shards a killed export of the same plan finished (their bytes checked); a parts folder of another plan is
    emptied."""
    record = parts / "plan.json"
    try:
        same = json.loads(record.read_text()).get("plan") == plan_id
    except (OSError, ValueError):
        same = False
    if not same:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
        record.write_text(json.dumps({"plan": plan_id}))
        return {}
    from ..fsutil import sha256_file

    done = {}
    for meta in parts.rglob("*.tar.json"):
        try:
            entry = json.loads(meta.read_text())
            if sha256_file(parts / entry["path"]) == entry["sha256"]:
                done[entry["path"]] = entry
        except (OSError, ValueError, KeyError):
            continue
    for stale in parts.rglob("*.tmp"):
        stale.unlink(missing_ok=True)
    return done


def remove_parts(out: Path) -> None:
    shutil.rmtree(out.parent / f".{out.name}.parts", ignore_errors=True)


__all__ = ["Shard", "export_webdataset", "plan_shards", "remove_parts", "sample_key"]
