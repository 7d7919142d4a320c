"""``refava package``: build the dataset folder from the workspace (read the tables, make the rows, write the
shards with their checksums, swap the folder in)."""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StageError
from ..framestore import CLEAN_DIR, CORRUPTED_DIR, DamagedFrameStoreError, clip_hash, jpeg_problem, read_store, require_intact
from ..fsutil import sha256_file
from ..io import output_folder
from ..summary import Summary
from .format import (
    GROUP_OF_TYPE,
    HF_SPLIT,
    IMAGE_COLUMNS,
    MANIFEST,
    ROW_GROUP_BYTES,
    SHARD_BYTES,
    PackageError,
    _is_refava_dataset,
    _own_files,
    features,
)

# --- inputs -----------------------------------------------------------------------------------------------------

@dataclass
class Inputs:
    """Everything a package is made of, read from the workspace tables."""

    instances: dict[str, list]                           # split -> Instance records, sorted
    status: dict[str, dict]                              # instance id -> annotation_status row
    rephrasings: dict[str, list[str]]                    # instance id -> accepted rephrasings, in index order
    label_ids: list[int]                                 # AVA action ids in ClassLabel order
    label_names: list[str]
    label_groups: dict[int, int]                         # AVA id -> group index
    corruptions: dict[str, dict]                         # setting -> {"splits": {split: set(clip ids)}, "row": ...}
    hashes: dict[str, str]                               # input table -> sha256
    keyframe_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)   # clip id -> stored keyframe (w, h)
    rows: dict = field(default_factory=dict)             # scalar row cache, shared by the configurations
    rephrase_log: list[dict] = field(default_factory=list)   # the rephrasings table's rows (the card's counts)
    annotator_ids: str = "pseudonyms"                    # what `annotators` holds: pseudonyms or emails

    @cached_property
    def label_index(self) -> dict[int, int]:
        return {a: i for i, a in enumerate(self.label_ids)}


def read_inputs(ws, annotator_ids: str = "pseudonyms") -> Inputs:
    from ..ava import default_label_map
    from ..splits import accepted_instances
    from ..tables import read_table

    if not ws.table("splits").exists():
        raise StageError(f"{ws.table('splits')} not found: run `refava build-splits` first (the package has splits)")
    instances, _ = accepted_instances(ws)
    split_of = {r["instance_id"]: r["split"] for r in read_table("splits", ws.table("splits")).to_pylist()}
    by_split: dict[str, list] = defaultdict(list)
    unsplit = 0
    for inst in instances:
        if inst.instance_id in split_of:
            by_split[split_of[inst.instance_id]].append(inst)
        else:
            unsplit += 1
    if unsplit:
        raise StageError(f"{unsplit} accepted instance(s) are not in {ws.table('splits')}: the splits are stale; "
                         f"run `refava build-splits` again")
    unknown = set(by_split) - set(HF_SPLIT)
    if unknown:
        raise StageError(f"split(s) {sorted(unknown)} in {ws.table('splits')}: the package knows train, val and test")
    for rows in by_split.values():
        rows.sort(key=lambda i: (i.video_id, i.timestamp, i.person_id))
    status = {}
    if ws.table("annotation_status").exists():
        status = {r["instance_id"]: r for r in read_table("annotation_status", ws.table("annotation_status")).to_pylist()}
    if annotator_ids == "pseudonyms":      # account emails stay in the workspace; the dataset names no one
        from ..annotate.blind import pseudonym, secret

        key = secret(ws.root)
        status = {iid: {**r, "annotators": [pseudonym(key, a) for a in r.get("annotators") or []]}
                  for iid, r in status.items()}
    elif annotator_ids != "emails":
        raise ValueError(f"annotator_ids: expected 'pseudonyms' or 'emails', found {annotator_ids!r}")
    rephrasings: dict[str, list[str]] = {}
    rephrase_log: list[dict] = []
    if ws.table("rephrasings").exists():
        rows = rephrase_log = read_table("rephrasings", ws.table("rephrasings")).to_pylist()
        for r in sorted(rows, key=lambda r: (r["instance_id"], r["index"])):
            if r["status"] == "ok":
                rephrasings.setdefault(r["instance_id"], []).append(r["text"])
    labels = default_label_map()
    ids = sorted(labels)
    corruptions: dict[str, dict] = {}
    if ws.table("corruptions").exists():
        for r in read_table("corruptions", ws.table("corruptions")).to_pylist():
            entry = corruptions.setdefault(r["configuration"], {"splits": defaultdict(set), "row": r})
            entry["splits"][r["split"]].add(r["clip_id"])
    hashes = {name: sha256_file(ws.table(name)) for name in
              ("instances", "annotation_status", "splits", "rephrasings", "corruptions") if ws.table(name).exists()}
    sizes = {}
    if ws.table("clips").exists():
        clips = read_table("clips", ws.table("clips")).select(["clip_id", "keyframe_width", "keyframe_height"])
        sizes = {c: (w, h) for c, w, h in zip(*(clips.column(n).to_pylist() for n in clips.column_names))}
    return Inputs(dict(by_split), status, rephrasings, ids, [labels[i].name for i in ids],
                  {i: GROUP_OF_TYPE.get(labels[i].label_type, 0) for i in ids}, corruptions, hashes, sizes,
                  rephrase_log=rephrase_log, annotator_ids=annotator_ids)


# --- rows -------------------------------------------------------------------------------------------------------

class _Movie:
    """One movie's frames file: per clip its keyframe and sampled rows, and the JPEG column kept in Arrow."""

    def __init__(self, path: Path, pixels: bool):
        columns = ["clip_id", "role", "grid_index", "pts_s"] + (["jpeg"] if pixels else [])
        try:
            table = read_store(path, columns=columns)
        except DamagedFrameStoreError as exc:
            raise DamagedFrameStoreError(f"{exc}; the file is damaged: delete it, rerun the stage that wrote it, then "
                                         f"package again (`refava verify` lists every damaged file)") from None
        import numpy as np
        import pyarrow.compute as pc

        coded = pc.dictionary_encode(table.column("clip_id")).combine_chunks()
        clip = coded.indices.to_numpy(zero_copy_only=False)
        keyframe = pc.equal(table.column("role"), "keyframe").to_numpy(zero_copy_only=False)
        grid = table.column("grid_index").to_numpy()
        pts = table.column("pts_s").to_numpy()
        order = np.lexsort((grid, keyframe, clip))          # by clip, sampled before keyframe, by grid index
        bounds = np.flatnonzero(np.diff(clip[order])) + 1
        self.clips: dict[str, dict] = {}
        names = coded.dictionary.to_pylist()
        for rows in np.split(order, bounds) if len(order) else []:
            rows = rows.tolist()
            entry = {"keyframe": None, "sampled": [(int(grid[i]), i, float(pts[i])) for i in rows if not keyframe[i]],
                     "times": None}
            if keyframe[rows[-1]]:
                entry["keyframe"] = (rows[-1], float(pts[rows[-1]]))
            self.clips[names[clip[rows[0]]]] = entry
        self.jpeg = table.column("jpeg").combine_chunks() if pixels else None
        if pixels:
            buffers = self.jpeg.buffers()
            self.offsets = memoryview(buffers[1]).cast("i")[self.jpeg.offset:]
            self.data = (memoryview(buffers[2]) if buffers[2] is not None else memoryview(b"")).cast("B")
            # the bytes that ship are the bytes that were written: each clip against its recorded sha256
            computed = {}
            for rows in np.split(order, bounds) if len(order) else []:
                ordered = sorted((int(grid[i]), not keyframe[i], int(i)) for i in rows.tolist())
                computed[names[clip[rows[0]]]] = clip_hash(self.view(i) for *_, i in ordered)
            require_intact(path, computed)
            # a JPEG written damaged (its checksum taken of the damaged bytes) must not ship either
            for clip_id, entry in self.clips.items():
                rows = [i for _, i, _ in entry["sampled"]] + ([entry["keyframe"][0]] if entry["keyframe"] else [])
                for i in rows:
                    bad = jpeg_problem(self.view(i), cheap=True)
                    if bad:
                        raise DamagedFrameStoreError(
                            f"{path} (movie {path.stem}) clip {clip_id}, frame at grid index {int(grid[i])}: the JPEG "
                            f"{bad}; it was damaged before its checksum was taken. Rerun the stage that wrote the "
                            f"file with --force (`refava ingest --force` for frames/clean, `refava corrupt --force` "
                            f"for frames/corrupted), then package again")

    def view(self, row: int) -> memoryview:
        return self.data[self.offsets[row]:self.offsets[row + 1]]


def _row(inst, inputs: Inputs, clip: dict | None, *, rephrased: bool) -> dict:
    """One row's scalar fields; the parts that do not depend on the frames source are cached across configs."""
    key = (inst.instance_id, rephrased)
    base = inputs.rows.get(key)
    if base is None:
        index = inputs.label_index
        st = inputs.status.get(inst.instance_id, {})
        actions = [index[a] for a in inst.action_ids]
        labels = [0.0] * len(inputs.label_ids)
        for a in actions:
            labels[a] = 1.0
        width, height = inputs.keyframe_sizes.get(inst.clip_id, (0, 0))
        x1, y1, x2, y2 = inst.box_xyxy
        inputs.rows[key] = base = {
            "instance_id": inst.instance_id, "video_id": inst.video_id, "keyframe_s": inst.timestamp,
            "person_id": inst.person_id, "box": list(inst.box_xyxy),
            "box_px": [x1 * width, y1 * height, x2 * width, y2 * height],
            "keyframe_width": width, "keyframe_height": height,
            "actions": actions, "labels": labels,
            "action_groups": sorted({inputs.label_groups[a] for a in inst.action_ids}),
            "expression": st.get("expression") or "",
            **({"rephrasings": inputs.rephrasings.get(inst.instance_id, [])} if rephrased else {}),
            "annotators": list(st.get("annotators") or []),
            "verified": st.get("verified"),
        }
    times = [pts for _, _, pts in clip["sampled"]] if clip else []
    keyframe_time = clip["keyframe"][1] if clip else None
    nearest = min(range(len(times)), key=lambda i: abs(times[i] - keyframe_time)) if times else -1
    return {**base, "keyframe_time_s": keyframe_time, "frame_times_s": times, "keyframe_index": nearest}


class _Images:
    """One image column of a batch: a dictionary of distinct JPEGs and, per row, indices into it.

    JPEGs are found by a fingerprint (length and two small slices) and confirmed byte for byte against memoryviews
    of the movies' Arrow buffers, without copying them: frames shared by overlapping clips, or identical frames of
    a still scene, are stored once, and the dictionary holds no duplicate (Parquet writers fall back to plain
    encoding on one).  The dictionary is gathered from the Arrow columns at the end: each JPEG is copied once.
    """

    def __init__(self):
        self.values: list[tuple[_Movie, int]] = []
        self.index: dict[tuple, list[int]] = {}
        self.by_row: dict[tuple[int, int], int] = {}
        self.movies: list[_Movie] = []          # keeps every movie seen alive, so id() keys stay unique
        self.rows: list[list[int]] = []
        self.nbytes = 0
        self.new_bytes = 0

    def add(self, movie: _Movie, rows: list[int], seen: set) -> None:
        out = []
        for row in rows:
            if not self.movies or self.movies[-1] is not movie:
                self.movies.append(movie)
            at = self.by_row.get((id(movie), row))          # the people of one clip share its rows
            if at is not None:
                out.append(at)
                continue
            view = movie.view(row)
            n = len(view)
            key = (n, bytes(view[n // 2:n // 2 + 32]), bytes(view[-32:]))
            at = None
            for j in self.index.get(key, ()):
                other, other_row = self.values[j]
                if other.view(other_row).tobytes() == view.tobytes():
                    at = j
                    break
            if at is None:
                at = len(self.values)
                self.index.setdefault(key, []).append(at)
                self.values.append((movie, row))
                self.nbytes += n
                if key not in seen:          # for the statistic of distinct bytes across batches, the key suffices
                    seen.add(key)
                    self.new_bytes += n
            self.by_row[(id(movie), row)] = at
            out.append(at)
        self.rows.append(out)

    def dictionary(self) -> pa.Array:
        if not self.values:
            return pa.array([], pa.binary())
        runs, start = [], 0
        for i in range(1, len(self.values) + 1):
            if i == len(self.values) or self.values[i][0] is not self.values[start][0]:
                movie = self.values[start][0]
                runs.append(movie.jpeg.take(pa.array([r for _, r in self.values[start:i]], pa.int64())))
                start = i
        return pa.concat_arrays(runs)

    def struct(self, flat: list[int]) -> pa.StructArray:
        codes = pa.DictionaryArray.from_arrays(pa.array(flat, pa.int32()), self.dictionary())
        return pa.StructArray.from_arrays([codes, pa.nulls(len(flat), pa.string())], names=["bytes", "path"])

    def single(self) -> pa.StructArray:
        return self.struct([r[0] for r in self.rows])

    def lists(self) -> pa.ListArray:
        offsets = [0]
        for r in self.rows:
            offsets.append(offsets[-1] + len(r))
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), self.struct([i for r in self.rows for i in r]))


@dataclass
class Batch:
    """Rows of whole clips: scalar columns as dicts, image columns as dictionary-encoded JPEGs."""

    rows: list[dict] = field(default_factory=list)
    keyframes: _Images = field(default_factory=_Images)
    frames: _Images = field(default_factory=_Images)

    @property
    def new_bytes(self) -> int:
        return self.keyframes.new_bytes + self.frames.new_bytes

    def table(self, schema: pa.Schema, pixels: bool) -> pa.Table:
        names = [n for n in schema.names if n not in ("keyframe", "frames")]
        columns = {n: pa.array([r[n] for r in self.rows], schema.field(n).type) for n in names}
        if pixels:
            columns["keyframe"] = self.keyframes.single()
            columns["frames"] = self.frames.lists()
        return pa.table(columns)


def iter_batches(ws, inputs: Inputs, split: str, *, frames_dir: Path | None, pixels: bool, rephrased: bool,
                 clips: set[str] | None = None, skipped: dict | None = None,
                 seen: set | None = None) -> Iterator[Batch]:
    """Batches of rows of ``split``: whole clips, about ROW_GROUP_BYTES of unique JPEG each.

    ``frames_dir`` holds the per-movie frames files (frames/clean, or a corruption setting's folder); ``clips``
    restricts the rows to those clips; ``seen`` collects JPEG digests across batches, so that ``Batch.new_bytes``
    counts every distinct JPEG once (overlapping clip windows can share frames).
    """
    skipped = skipped if skipped is not None else {}
    seen = seen if seen is not None else set()
    by_movie: dict[str, list] = defaultdict(list)
    for inst in inputs.instances.get(split, []):
        if clips is None or inst.clip_id in clips:
            by_movie[inst.video_id].append(inst)
    from concurrent.futures import ThreadPoolExecutor

    present = []
    for video_id in sorted(by_movie):
        path = frames_dir / f"{video_id}.parquet"
        if path.exists():
            present.append((video_id, path))
        else:
            key = f"no frames file {path.relative_to(ws.root)}"
            skipped[key] = skipped.get(key, 0) + len(by_movie[video_id])
    batch = Batch()
    # the next movie is read (Parquet decoding releases the GIL) while this one's rows are built and written
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="refava-read") as reader:
        ahead = reader.submit(_Movie, present[0][1], pixels) if present else None
        for n, (video_id, _) in enumerate(present):
            movie = ahead.result()
            ahead = reader.submit(_Movie, present[n + 1][1], pixels) if n + 1 < len(present) else None
            if batch.rows and pixels:        # a batch's dictionaries come from one movie: one gather, no concatenation
                yield batch
                batch = Batch()
            last_clip = last_refs = None
            for inst in by_movie[video_id]:
                clip = movie.clips.get(inst.clip_id)
                if clip is None or clip["keyframe"] is None:
                    key = "clip has no stored keyframe (see reports/ingest.json)"
                    skipped[key] = skipped.get(key, 0) + 1
                    continue
                if inst.clip_id != last_clip and batch.rows and (
                        batch.keyframes.nbytes + batch.frames.nbytes >= ROW_GROUP_BYTES):
                    yield batch
                    batch = Batch()
                    last_clip = None
                batch.rows.append(_row(inst, inputs, clip, rephrased=rephrased))
                if pixels and inst.clip_id == last_clip:           # another person of the same clip: same frames
                    batch.keyframes.rows.append(last_refs[0])
                    batch.frames.rows.append(last_refs[1])
                elif pixels:
                    batch.keyframes.add(movie, [clip["keyframe"][0]], seen)
                    batch.frames.add(movie, [i for _, i, _ in clip["sampled"]], seen)
                    last_refs = (batch.keyframes.rows[-1], batch.frames.rows[-1])
                last_clip = inst.clip_id
    if batch.rows:
        yield batch


# --- writing ----------------------------------------------------------------------------------------------------

@dataclass
class ShardInfo:
    path: str
    rows: int
    bytes: int
    sha256: str


@dataclass
class ConfigInfo:
    name: str
    pixels: bool
    splits: dict[str, list[ShardInfo]] = field(default_factory=dict)
    description: str = ""
    unique_jpeg_bytes: int = 0

    def rows(self, split: str) -> int:
        return sum(s.rows for s in self.splits.get(split, []))


def _writer_schema(features, pixels: bool) -> pa.Schema:
    """The Arrow schema the writer sees: image bytes as dictionary arrays (written as Parquet dictionaries).

    Files are written without the stored Arrow schema, so readers see plain binary, and with the ``huggingface``
    key (the ``datasets`` features) as Parquet key-value metadata."""
    image = pa.struct([pa.field("bytes", pa.dictionary(pa.int32(), pa.binary())), pa.field("path", pa.string())])
    fields = []
    for f in features.arrow_schema:
        if pixels and f.name == "keyframe":
            f = pa.field("keyframe", image)
        elif pixels and f.name == "frames":
            f = pa.field("frames", pa.list_(image))
        fields.append(f)
    return pa.schema(fields)


class _GrowingHash:
    """SHA-256 of a file that a Parquet writer is still appending to, taken in steps as it grows.

    Arrow's file sink only appends, so the bytes already in the file are final: each ``update`` hashes what was
    added since the last one (from the page cache), and the shard's checksum is ready soon after it is closed
    instead of costing a second pass over the finished file at the end."""

    def __init__(self, path: Path):
        self.file = open(path, "rb")        # opened once: the shard is renamed when closed, the handle stays valid
        self.digest = hashlib.sha256()

    def update(self) -> None:
        while block := self.file.read(1 << 20):
            self.digest.update(block)

    def finish(self, shard: ShardInfo) -> None:
        with self.file:
            self.update()
        shard.sha256 = self.digest.hexdigest()


def write_split(out_dir: Path, config: str, split: str, batches: Iterable[Batch], features, pixels: bool,
                *, shard_bytes: int = SHARD_BYTES, hasher=None) -> tuple[list[ShardInfo], int]:
    """Write one configuration's split as Parquet shards; return the shards and the JPEG bytes first seen here."""
    folder = out_dir / "data" / config
    folder.mkdir(parents=True, exist_ok=True)
    hf_split = HF_SPLIT[split]
    schema = _writer_schema(features, pixels)
    metadata = {k.decode(): v.decode() for k, v in features.arrow_schema.metadata.items()}
    compression = {name: "zstd" for name in schema.names}
    if pixels:
        compression.update({column: "none" for column in IMAGE_COLUMNS})     # JPEG does not compress
    paths: list[Path] = []
    hashes: list[_GrowingHash] = []
    writer = None
    written = unique = 0

    def open_writer():
        path = folder / f"{hf_split}-{len(paths):05d}.partial.parquet"
        paths.append(path)
        sink = pq.ParquetWriter(path, schema, compression=compression, use_dictionary=True,
                                dictionary_pagesize_limit=1 << 30, store_schema=False,
                                write_statistics=[n for n in schema.names if n not in ("keyframe", "frames")])
        hashes.append(_GrowingHash(path))
        return sink

    def close(w):
        w.add_key_value_metadata(metadata)
        w.close()

    from concurrent.futures import ThreadPoolExecutor

    # Parquet writing releases the GIL: the next batch is built (and the next movie read) while this one is written
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="refava-write") as pool:
        pending = None
        for batch in batches:
            table = batch.table(schema, pixels)
            if pending is not None:
                pending.result()
            if writer is None or written >= shard_bytes:
                if writer is not None:
                    close(writer)
                writer, written = open_writer(), 0
            pending = pool.submit(_write_then_hash, writer, table, hashes[-1], hasher)
            written += table.nbytes
            unique += batch.new_bytes
        if pending is not None:
            pending.result()
    if writer is None:                       # an empty split still gets one (empty) shard
        writer = open_writer()
        writer.write_table(Batch().table(schema, pixels))
    close(writer)
    shards = []
    for i, path in enumerate(paths):
        final = folder / f"{hf_split}-{i:05d}-of-{len(paths):05d}.parquet"
        path.rename(final)
        shard = ShardInfo(final.relative_to(out_dir).as_posix(), pq.ParquetFile(final).metadata.num_rows,
                          final.stat().st_size, "")
        if hasher is not None:               # the rest of the checksum in the background while the next split is built
            hasher.submit(hashes[i].finish, shard)
        else:
            hashes[i].finish(shard)
        shards.append(shard)
    return shards, unique


class _Hasher:
    """One background thread for the shards' checksums (hashlib releases the GIL); ``close`` waits for it and
    raises the first error, so a failed checksum stops the build instead of leaving an empty one in the manifest."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refava-sha")
        self.futures = []

    def submit(self, fn, *args) -> None:
        self.futures.append(self.pool.submit(fn, *args))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for future in self.futures:
            future.result()


def _write_then_hash(writer, table: pa.Table, growing: _GrowingHash, hasher) -> None:
    """Write one batch as a row group, then hash what reached the file (in the hasher's thread when there is one)."""
    writer.write_table(table, row_group_size=table.num_rows)
    if hasher is not None:
        hasher.submit(growing.update)


def check_target(out: Path) -> None:
    """Refuse a target folder that holds anything but a refava dataset."""
    if out.exists() and not out.is_dir():
        raise PackageError(f"{out} is a file: pass --out with a folder for the dataset")
    if out.is_dir() and any(out.iterdir()) and not _is_refava_dataset(out):
        hint = " (in the refava source tree ./refava is the Python package)" if (out / "__init__.py").exists() else ""
        raise PackageError(f"refusing to write into {out}: it is neither empty nor a refava dataset (no {MANIFEST})"
                           f"{hint}; pass --out with an empty or new folder")


@dataclass
class PackageSummary:
    out: Path
    configs: list[ConfigInfo]
    instances: int
    skipped: dict[str, int]
    seconds: float
    packaged_bytes: int

    def lines(self) -> list[str]:
        out = []
        for c in self.configs:
            counts = ", ".join(f"{HF_SPLIT[s]} {c.rows(s)}" for s in c.splits)
            out.append(f"  {c.name:<22} {counts}")
        for reason, n in sorted(self.skipped.items()):
            out.append(f"  skipped {n} row(s): {reason}")
        return out


def run(ws, *, out=None, shard_bytes: int = SHARD_BYTES, repo: str | None = None, progress: bool = True,
        log: Callable[[str], None] = print, annotator_ids: str = "pseudonyms") -> Summary:
    """``refava package`` (and ``--push-to-hub REPO``): the dataset folder, what is in it, where it went."""
    summary = package_workspace(ws, out, shard_bytes=shard_bytes, log=log, progress=progress,
                                annotator_ids=annotator_ids)
    lines = [f"packaged {summary.instances} instances in {summary.seconds:.1f} s "
             f"({summary.packaged_bytes / 1e6:.1f} MB):", *summary.lines()]
    default = next(c for c in summary.configs if c.name == "default")
    shards = [s for v in default.splits.values() for s in v]
    if default.unique_jpeg_bytes:
        lines.append(f"default configuration: {sum(s.bytes for s in shards) / summary.instances / 1e3:.1f} kB per "
                     f"instance, {sum(s.bytes for s in shards) / default.unique_jpeg_bytes:.3f} x its unique JPEG "
                     f"bytes")
    lines.append(f"load it: cd {summary.out.parent} && python -c 'import datasets; "
                 f"print(datasets.load_dataset(\"{summary.out.name}\"))'")
    outputs = {"dataset": summary.out}
    if repo:
        from .hub import push_to_hub

        outputs["pushed"] = push_to_hub(summary.out, repo)
    return Summary("package", lines, outputs)


def package_workspace(ws, out: str | os.PathLike | None = None, *, shard_bytes: int = SHARD_BYTES,
                      log: Callable[[str], None] = print, progress: bool = True,
                      annotator_ids: str = "pseudonyms") -> PackageSummary:
    """Write the workspace's dataset to ``out`` (default ``<workspace>/refava``), atomically; see the module doc."""
    from .. import __version__
    from .card import dataset_card

    start = time.perf_counter()
    out = Path(out) if out is not None else ws.root / "refava"
    out = out.resolve()
    check_target(out)
    inputs = read_inputs(ws, annotator_ids)
    if not any(inputs.instances.values()):
        raise StageError("no accepted instances with a split: nothing to package (see `refava status`)")
    writer = output_folder(out, protected=[p for p in ws.protected_paths() if p != ws.root / "refava"],
                           owned=lambda folder: _own_files(folder) if _is_refava_dataset(folder) else None,
                           what="dataset", mark=False)
    with writer as tmp:
        for line in writer.recovered:
            log(f"package: {line}")
        skipped: dict[str, int] = {}
        configs: list[ConfigInfo] = []
        full = features(inputs.label_names, pixels=True)
        bare = features(inputs.label_names, pixels=False)
        with_text = features(inputs.label_names, pixels=True, rephrasings=True)
        clean = ws.root / CLEAN_DIR
        splits = [s for s in HF_SPLIT if s in inputs.instances]
        plan = [("default", True, False, None, None, splits,
                 "train / validation / test with the keyframe and the sampled frames of every clip"),
                ("annotations_only", False, False, None, None, splits,
                 "no pixels: ids, boxes, actions, expressions and frame times; rebuild frames with refava from the "
                 "movies")]
        rephrase_splits = [s for s in ("val", "test") if any(i.instance_id in inputs.rephrasings
                                                                  for i in inputs.instances.get(s, []))]
        if inputs.rephrasings and rephrase_splits:
            plan.append(("rephrased", True, True, None, None, rephrase_splits,
                         " and ".join(HF_SPLIT[s] for s in rephrase_splits)
                         + " with the LLM rephrasings of every expression"))
        for setting, entry in sorted(inputs.corruptions.items()):
            for split, clip_ids in sorted(entry["splits"].items()):
                if split in HF_SPLIT:
                    name = f"{split}_{setting}"
                    plan.append((name, True, False, ws.root / CORRUPTED_DIR / setting, clip_ids, [split],
                                 f"{HF_SPLIT[split]} under {setting}: " + entry["row"]["params"]))
        total = sum(len(inputs.instances[s]) for *_, spl, _ in plan for s in spl)
        from ..progress import bar as _progress

        bar = _progress(total=total, enabled=progress, desc="package", unit="row")
        hasher = _Hasher()
        for name, pixels, rephrased, frames_dir, clip_ids, config_splits, description in plan:
            info = ConfigInfo(name, pixels, description=description)
            seen: set = set()
            for split in config_splits:
                counted: dict[str, int] = {}

                def batches():
                    for batch in iter_batches(ws, inputs, split, frames_dir=frames_dir or clean, pixels=pixels,
                                              rephrased=rephrased, clips=clip_ids, skipped=counted, seen=seen):
                        bar.update(len(batch.rows))
                        yield batch
                feats = with_text if rephrased else full if pixels else bare
                shards, unique = write_split(tmp, name, split, batches(), feats, pixels,
                                             shard_bytes=shard_bytes, hasher=hasher)
                info.splits[split] = shards
                info.unique_jpeg_bytes += unique
                for reason, n in counted.items():
                    key = f"{name}/{HF_SPLIT[split]}: {reason}"
                    skipped[key] = skipped.get(key, 0) + n
            configs.append(info)
        bar.close()
        hasher.close()
        manifest = {
            "format": "refava-dataset", "refava_version": __version__, "inputs": inputs.hashes,
            "configs": {c.name: {"pixels": c.pixels, "rephrasings": c.name == "rephrased",
                                 "description": c.description,
                                 "unique_jpeg_bytes": c.unique_jpeg_bytes,
                                 "splits": {HF_SPLIT[s]: [vars(x) for x in shards] for s, shards in c.splits.items()}}
                        for c in configs},
            "skipped": skipped, "annotators": annotator_ids,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        (tmp / "README.md").write_text(dataset_card(manifest, inputs, full, bare, with_text))
    packaged = sum(x.bytes for c in configs for shards in c.splits.values() for x in shards)
    return PackageSummary(out, configs, sum(len(v) for v in inputs.instances.values()), skipped,
                          time.perf_counter() - start, packaged)


def recover_interrupted(out: Path, log: Callable[[str], None] = print) -> list[str]:
    """Put right what a killed ``package`` on this host left beside ``out`` (see :func:`refava.io.output_folder`)."""
    from ..io import recover_output_folder

    done = recover_output_folder(Path(out), lambda folder: _own_files(folder) if _is_refava_dataset(folder) else None)
    for line in done:
        log(f"package: {line}")
    return done


