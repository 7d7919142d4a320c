"""``refava package``: the workspace as a Hugging Face dataset folder that ``datasets.load_dataset`` reads offline.

Layout of the folder (no loading script; the card's YAML names every configuration's files)::

    README.md                  dataset card: YAML (configs, dataset_info, license, ...) and the documentation
    refava-manifest.json       shard checksums and row counts, refava version, input hashes
    data/<config>/<split>-00000-of-00002.parquet

Configurations: ``default`` (train / validation / test, with pixels), ``annotations_only`` (no pixels: what can be
published without redistributing movie frames), ``rephrased`` (validation and test with LLM rephrasings, when the
workspace has them) and one per corruption setting and split that was generated (``test_fog_s3``).

Rows of one clip share their frames.  They are stored once per row group by Parquet's dictionary encoding (rows of a
clip are adjacent and the dictionary may hold a whole row group), so every row stays self-contained when loaded and
the files are barely larger than the unique JPEG bytes.
"""
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

from .errors import RefavaError, StageError
from .framestore import DamagedFrameStoreError, clip_hash, jpeg_problem, require_intact
from .fsutil import sha256_file
from .io import output_folder

MANIFEST = "refava-manifest.json"
GROUPS = ("person_movement", "object_manipulation", "person_interaction")
GROUP_OF_TYPE = {"PERSON_MOVEMENT": 0, "OBJECT_MANIPULATION": 1, "PERSON_INTERACTION": 2}
HF_SPLIT = {"train": "train", "val": "validation", "test": "test"}
ROW_GROUP_BYTES = 64 << 20        # unique JPEG bytes per row group: the dictionary page holds them once
SHARD_BYTES = 512 << 20
IMAGE_COLUMNS = ("keyframe.bytes", "frames.list.element.bytes")


class PackageError(RefavaError, ValueError):
    """The dataset folder cannot be written or does not verify."""


# --- features ---------------------------------------------------------------------------------------------------

def features(action_names: list[str], *, pixels: bool = True, rephrasings: bool = False):
    """The ``datasets.Features`` of a RefAVA row; ``pixels=False`` for the annotations-only configuration,
    ``rephrasings=True`` for the configuration that holds the LLM rephrasings (the others have no such column).

    ``labels`` is ``actions`` as a fixed-length multi-hot vector (one float per class, in ClassLabel order), so that
    PyTorch's default collate stacks it; ``box_px`` is ``box`` in pixels of the stored keyframe image
    (``keyframe_width`` x ``keyframe_height``); ``keyframe_index`` is the position in ``frames`` of the sampled frame
    nearest the keyframe in time (-1 when a row has no sampled frames).
    """
    from datasets import ClassLabel, Features, Image, List, Value

    spec = {
        "instance_id": Value("string"),
        "video_id": Value("string"),
        "keyframe_s": Value("int32"),
        "person_id": Value("int32"),
        "box": List(Value("float32"), length=4),
        "box_px": List(Value("float32"), length=4),
        "keyframe_width": Value("int32"),
        "keyframe_height": Value("int32"),
        "actions": List(ClassLabel(names=action_names)),
        "labels": List(Value("float32"), length=len(action_names)),
        "action_groups": List(ClassLabel(names=list(GROUPS))),
        "expression": Value("string"),
        **({"rephrasings": List(Value("string"))} if rephrasings else {}),
        "keyframe_time_s": Value("float64"),
        "frame_times_s": List(Value("float64")),
        "keyframe_index": Value("int32"),
        "annotators": List(Value("string")),
        "verified": Value("bool"),
    }
    if pixels:
        spec["keyframe"] = Image()
        spec["frames"] = List(Image())
    return Features(spec)


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

    @cached_property
    def label_index(self) -> dict[int, int]:
        return {a: i for i, a in enumerate(self.label_ids)}


def read_inputs(ws) -> Inputs:
    from .ava import default_label_map
    from .splits import accepted_instances
    from .tables import read_table

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
    rephrasings: dict[str, list[str]] = {}
    if ws.table("rephrasings").exists():
        rows = read_table("rephrasings", ws.table("rephrasings")).to_pylist()
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
                  {i: GROUP_OF_TYPE.get(labels[i].label_type, 0) for i in ids}, corruptions, hashes, sizes)


# --- rows -------------------------------------------------------------------------------------------------------

class _Movie:
    """One movie's frames file: per clip its keyframe and sampled rows, and the JPEG column kept in Arrow."""

    def __init__(self, path: Path, pixels: bool):
        columns = ["clip_id", "role", "grid_index", "pts_s"] + (["jpeg"] if pixels else [])
        try:
            table = pq.read_table(path, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise DamagedFrameStoreError(f"{path} (movie {path.stem}): not readable as Parquet ({str(exc)[:160]}); "
                                         f"the file is damaged: delete it, rerun the stage that wrote it, then "
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


def read_manifest(folder: str | os.PathLike, error: type[RefavaError] = PackageError,
                  hint: str = "pass the folder `refava package` wrote") -> dict:
    """The manifest of a packaged dataset folder; ``error`` (with ``hint`` on what to do) when there is none."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        raise error(f"{folder}: not a packaged RefAVA dataset (no {MANIFEST}); {hint}")
    return json.loads((folder / MANIFEST).read_text())


def config_split(manifest: dict, folder: str | os.PathLike, config: str, split: str,
                 error: type[RefavaError] = PackageError) -> str:
    """The Hugging Face name of ``split`` (train / val / validation / test) in configuration ``config`` of a
    packaged dataset; ``error`` naming what the folder has when either is missing."""
    configs = manifest["configs"]
    if config not in configs:
        raise error(f"{folder} has no configuration {config!r}; it has {', '.join(sorted(configs))}")
    name = HF_SPLIT.get(split, split)
    if name not in configs[config]["splits"]:
        raise error(f"{folder} configuration {config!r} has no split {split!r}; it has "
                    f"{', '.join(configs[config]['splits'])}")
    return name


def _is_refava_dataset(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST).read_text()).get("format") == "refava-dataset"
    except (OSError, ValueError):
        return False


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


def package_workspace(ws, out: str | os.PathLike | None = None, *, shard_bytes: int = SHARD_BYTES,
                      log: Callable[[str], None] = print, progress: bool = True) -> PackageSummary:
    """Write the workspace's dataset to ``out`` (default ``<workspace>/refava``), atomically; see the module doc."""
    from . import __version__
    from .card import dataset_card

    start = time.perf_counter()
    out = Path(out) if out is not None else ws.root / "refava"
    out = out.resolve()
    check_target(out)
    inputs = read_inputs(ws)
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
        clean = ws.root / "frames" / "clean"
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
                    plan.append((name, True, False, ws.root / "frames" / "corrupted" / setting, clip_ids, [split],
                                 f"{HF_SPLIT[split]} under {setting}: " + entry["row"]["params"]))
        total = sum(len(inputs.instances[s]) for *_, spl, _ in plan for s in spl)
        from .progress import bar as _progress

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
            "skipped": skipped,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        (tmp / "README.md").write_text(dataset_card(manifest, inputs, full, bare, with_text))
    packaged = sum(x.bytes for c in configs for shards in c.splits.values() for x in shards)
    return PackageSummary(out, configs, sum(len(v) for v in inputs.instances.values()), skipped,
                          time.perf_counter() - start, packaged)


def _own_files(folder: Path) -> set[str]:
    """The paths (relative, posix) that the refava dataset in ``folder`` wrote: its manifest lists them."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return set()
    own = {MANIFEST, "README.md"}
    for entry in (manifest.get("configs") or {}).values():
        for shards in (entry.get("splits") or {}).values():
            own.update(shard["path"] for shard in shards)
    return own


def recover_interrupted(out: Path, log: Callable[[str], None] = print) -> list[str]:
    """Put right what a killed ``package`` on this host left beside ``out`` (see :func:`refava.io.output_folder`)."""
    from .io import recover_output_folder

    done = recover_output_folder(Path(out), lambda folder: _own_files(folder) if _is_refava_dataset(folder) else None)
    for line in done:
        log(f"package: {line}")
    return done


# --- verification -----------------------------------------------------------------------------------------------

@dataclass
class VerifyReport:
    shards: int
    rows: int
    problems: list[str]


def verify_dataset(folder: str | os.PathLike, *, rows: bool = True, decode: bool = True) -> VerifyReport:
    """Recompute every shard's checksum and row count against the manifest and check every row against
    ``schemas/dataset.schema.json``; with ``decode`` every JPEG is decoded (else only its magic number is read)."""
    from .schemas import validate_rows

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
    from .framestore import jpeg_problem

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


def push_to_hub(folder: str | os.PathLike, repo: str) -> str:
    """Upload a packaged folder to a Hugging Face dataset repository (created if missing); return its URL.

    Every failure (no token, a bad repository name, offline mode, no connection, a refused token, no write access)
    is a :class:`PackageError` that says what happened and what to do; the folder itself is never touched."""
    from huggingface_hub import HfApi, constants, get_token

    folder = Path(folder)
    report = verify_dataset(folder, rows=False)
    if report.problems:
        raise PackageError(f"{folder} does not verify ({report.problems[0]}); not pushing")
    retry = f"then push again with `refava package --push-to-hub {repo}` (the folder {folder} is complete)"
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(repo)
        if repo.count("/") != 1:
            raise ValueError("expected NAMESPACE/NAME")
    except Exception as exc:                                   # HFValidationError is a ValueError
        raise PackageError(f"--push-to-hub {repo!r}: not a Hugging Face repository id ({_first_line(exc)}); "
                           f"expected NAMESPACE/NAME such as me/refava") from None
    if not get_token():
        raise PackageError(f"no Hugging Face token: set HF_TOKEN or run `hf auth login`, {retry}")
    if constants.HF_HUB_OFFLINE:
        raise PackageError(f"HF_HUB_OFFLINE is set: nothing can be uploaded; unset it, {retry}")
    endpoint = constants.ENDPOINT
    api = HfApi()
    try:
        api.create_repo(repo, repo_type="dataset", exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset",
                          commit_message="refava package")
    except Exception as exc:
        raise PackageError(f"pushing {folder} to {repo} on {endpoint} failed: {_hub_reason(exc)}; {retry}") from None
    return f"{endpoint.rstrip('/')}/datasets/{repo}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _hub_reason(exc: BaseException) -> str:
    """What went wrong in a Hub call, in words, with what to check."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return (f"the server refused the token (HTTP {status}): check that HF_TOKEN (or `hf auth login`) holds a "
                f"token with write access to this namespace")
    if status == 404:
        return "the repository or namespace was not found (HTTP 404): check the name and your organisation rights"
    if status is not None:
        return f"HTTP {status} ({_first_line(exc)})"
    name = type(exc).__name__
    if "Connect" in name or "Timeout" in name or isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return f"no connection to the Hub ({name}: {_first_line(exc)}); check the network, a proxy, or HF_ENDPOINT"
    return f"{name}: {_first_line(exc)}"
