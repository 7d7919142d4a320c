"""``refava export``: a packaged RefAVA in the formats that action-detection and grounding code reads.

* ``--format ava``: what SlowFast, mmaction2 and PyTorchVideo's AVA loaders read::

      annotations/ava_<split>_v2.2.csv          AVA ground truth: video_id, second, x1, y1, x2, y2, action id, person id
      annotations/ava_action_list_v2.2.pbtxt    the label map (``label { name label_id label_type }``)
      annotations/ava_<split>_predicted_boxes.csv  the ground-truth boxes as detections (score 1.0), for loaders that
                                                 test on detected boxes
      annotations/refava_<split>_expressions.csv   the side table: instance_id, video_id, second, person_id,
                                                 expression, rephrasings (a JSON list)
      frame_lists/<split>.csv                   SlowFast's frame list: ``original_vido_id video_idx frame_id path
                                                 labels`` (space separated), one line per stored frame
      frames/<video_id>/<video_id>_<frame:06d>.jpg  the stored sampled frames, named by their 1-based frame number
                                                 at 30 fps from the movie's start
      keyframes/<video_id>/<video_id>_<frame:06d>.jpg  the stored keyframes (their own size), named the same way

  Only the frames refava stored are there (the keyframe and ``frames`` sampled frames per clip; ``refava ingest
  --frames all`` stores all 90 of each window).  A frame list has a line for every position p from its origin
  (900 s as AVA's, for movies annotated from 902 s on; else 0 s): the frame at origin + p/30 s, the nearest stored
  one where none is, and at a keyframe's position (second - origin) x 30 that keyframe's movie frame, so SlowFast's
  reader finds it; ``refava-export.json`` says whether the lists are dense (contiguous clips for SlowFast, mmaction2)
  or sparse (keyframe-only loaders).
  AVA's own split name ``val`` is used for validation.

* ``--format coco``: ``refava_<split>.json`` per split, COCO-style with a RefCOCO-style ``refs`` list: one image
  per keyframe (``images/<video_id>_<second>.jpg``), one annotation per person (``bbox`` in pixels, x, y, w, h;
  ``category_id`` 1 = person; ``actions`` the AVA ids), and per annotation a ref with the expression and its
  rephrasings as ``sentences``.  pycocotools' ``COCO`` loads each file.

* ``--format fiftyone``: a folder FiftyOne imports with its own API (keyframes, every person a detection carrying
  the expression, rephrasings, actions, split and annotation status; corrupted keyframes as media fields); see
  :mod:`refava.export.fiftyone_format`.

* ``--format webdataset``: tar shards of a chosen size for streaming (``<split>/refava-<split>-NNNNNN.tar``: per
  row the JSON, the keyframe and the sampled frames as JPEG), written in parallel and resumable; see
  :mod:`refava.export.wds`.

Both read the dataset folder `refava package` wrote (no workspace needed), write into a temporary folder and
rename it into place, and end with ``refava-export.json`` (counts, the dataset's manifest digest).
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import RefavaError
from ..fsutil import sha256_file
from ..io import OUTPUT_MARK, output_folder

FORMATS = ("ava", "coco", "webdataset", "fiftyone")
EXPORT_MANIFEST = "refava-export.json"
AVA_SPLIT = {"train": "train", "validation": "val", "test": "test"}
FPS = 30


class ExportError(RefavaError, ValueError):
    """The export cannot be written."""


@dataclass
class ExportSummary:
    out: Path
    format: str
    rows: dict[str, int] = field(default_factory=dict)
    images: int = 0
    files: list[str] = field(default_factory=list)
    frame_lists: dict[str, dict] = field(default_factory=dict)   # video -> origin, positions, frames per clip
    notes: list[str] = field(default_factory=list)                # what the output suits, said to the user


def _f(value) -> str:
    """The shortest decimal that reads back to the same float32 (boxes are stored as float32)."""
    return np.format_float_positional(np.float32(value), trim="-")


def _dataset_rows(folder: Path, manifest: dict, split: str, pixels: bool):
    """Rows of ``split`` of the dataset folder, batch by batch as dicts; with ``pixels`` the default configuration
    (keyframe and frames bytes), else annotations_only (or default without its image columns)."""
    import pyarrow.parquet as pq

    configs = manifest["configs"]
    name = "default" if pixels or "annotations_only" not in configs else "annotations_only"
    rephrased = {}
    if "rephrased" in configs and split in configs["rephrased"]["splits"]:
        for shard in configs["rephrased"]["splits"][split]:
            t = pq.read_table(folder / shard["path"], columns=["instance_id", "rephrasings"])
            rephrased.update(zip(t.column("instance_id").to_pylist(), t.column("rephrasings").to_pylist()))
    for shard in configs[name]["splits"].get(split, []):
        pf = pq.ParquetFile(folder / shard["path"])
        columns = [c for c in pf.schema_arrow.names if pixels or c not in ("keyframe", "frames")]
        for batch in pf.iter_batches(batch_size=256, columns=columns):
            for row in batch.to_pylist():
                row["rephrasings"] = rephrased.get(row["instance_id"], [])
                yield row


def export_dataset(dataset: str | os.PathLike, out: str | os.PathLike, fmt: str, *, split: str | None = None,
                   images: bool = True, log: Callable[[str], None] = print, protected=(),
                   shard_bytes: int = 256 * 10 ** 6, workers: int = 4, progress: bool = False) -> ExportSummary:
    """Export the packaged dataset folder ``dataset`` to ``out`` in format ``fmt`` (see the module doc;
    ``shard_bytes`` and ``workers`` for webdataset, :mod:`refava.export.wds`)."""
    from ..package.format import MANIFEST, config_split, read_manifest

    folder = Path(dataset)
    manifest = read_manifest(folder, ExportError, "run `refava package` first or pass --dataset with the folder it "
                                                  "wrote")
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out = Path(out).resolve()
    summary = ExportSummary(out, fmt)
    with output_folder(out, protected=[folder, *protected], owned=_export_files, what=f"{fmt} export") as tmp:
        names = ([config_split(manifest, folder, "default", split, ExportError)] if split
                 else list(manifest["configs"]["default"]["splits"]))
        shards = None
        if fmt == "webdataset":
            from .wds import export_webdataset

            shards = export_webdataset(folder, manifest, names, out, tmp, shard_bytes=shard_bytes, workers=workers,
                                       images=images, progress=progress, log=log)
            for name, entries in shards["splits"].items():
                summary.rows[name] = sum(e["rows"] for e in entries)
            summary.images = sum(e["images"] for entries in shards["splits"].values() for e in entries)
        if fmt == "fiftyone":
            from ..ava import default_label_map
            from .fiftyone_format import export_fiftyone

            labels = default_label_map()
            export_fiftyone(folder, manifest, names, tmp, images, summary,
                            lambda name: _dataset_rows(folder, manifest, name, images),
                            [labels[i].name for i in _label_ids()], _label_ids())
        for name in names if fmt in ("ava", "coco") else ():
            (_ava_split if fmt == "ava" else _coco_split)(folder, manifest, name, tmp, images, summary)
        summary.files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()
                               and p.suffix != ".jpg" and p.name != OUTPUT_MARK)
        record = {"format": fmt, "dataset": str(folder.resolve()),
                  "dataset_manifest_sha256": sha256_file(folder / MANIFEST), "rows": summary.rows,
                  "images": summary.images, "files": summary.files}
        if shards is not None:
            record["shards"] = shards
        if summary.frame_lists:
            summary.notes.append(_frame_list_note(summary.frame_lists))
            record["frame_lists"] = {"videos": summary.frame_lists, "note": summary.notes[-1]}
        (tmp / EXPORT_MANIFEST).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    if fmt == "webdataset":
        from .wds import remove_parts

        remove_parts(out)                       # the export is in place: a resume has nothing left to reuse
    return summary


def _export_files(folder: Path) -> set[str] | None:
    """The files refava wrote in an export folder (None: not an export).  Exports made before the folder recorded
    them name their files in refava-export.json, images aside."""
    from ..io import _marked_files

    marked = _marked_files(folder)
    if marked is not None:
        return marked
    try:
        record = json.loads((folder / EXPORT_MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    listed = {f for f in record.get("files") or [] if isinstance(f, str)}
    return listed | {EXPORT_MANIFEST} | {p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg")}


# --- AVA ----------------------------------------------------------------------------------------------------------

def _label_ids() -> list[int]:
    from ..ava import default_label_map

    return sorted(default_label_map())


def _write_csv(path: Path, rows: list[list], delimiter: str = ",", header: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _ava_split(folder: Path, manifest: dict, split: str, out: Path, images: bool,
               summary: ExportSummary) -> None:
    from ..ava import default_label_map, save_label_map_pbtxt

    ids = _label_ids()
    ava = AVA_SPLIT[split]
    gt, detections, expressions = [], [], []
    frame_list: dict[str, _StoredFrames] = {}
    written: set[str] = set()
    video_index: dict[str, int] = {}
    n = 0
    for row in _dataset_rows(folder, manifest, split, images):
        n += 1
        video, second, person = row["video_id"], row["keyframe_s"], row["person_id"]
        box = [_f(v) for v in row["box"]]
        for action in sorted(row["actions"]):
            gt.append([video, f"{second:04d}", *box, ids[action], person])
        detections.append([video, f"{second:04d}", *box, "", "1.0"])
        expressions.append([row["instance_id"], video, second, person, row["expression"],
                            json.dumps(row["rephrasings"], ensure_ascii=False)])
        if images:
            video_index.setdefault(video, len(video_index))
            clip = frame_list.setdefault(video, _StoredFrames())
            clip.frames_per_clip.add(len(row["frames"] or []))
            stored = [(True, row["keyframe_time_s"], row["keyframe"])]
            stored += [(False, t, image) for t, image in zip(row["frame_times_s"], row["frames"])]
            for is_key, t, image in stored:
                if t is None or image is None:
                    continue
                frame = int(round(t * FPS)) + 1
                # keyframes (their own size) and sampled frames (one size for all) are kept apart: a frame list
                # reads the sampled ones, whose sizes match
                rel = f"{'keyframes' if is_key else 'frames'}/{video}/{video}_{frame:06d}.jpg"
                if is_key:
                    clip.keyframes[second] = (frame, rel)
                else:
                    clip.times[rel] = t
                    clip.numbers[frame] = rel
                if rel in written:
                    continue
                written.add(rel)
                path = out / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(image["bytes"])
    summary.rows[split] = n
    summary.images += len(written)
    base = out / "annotations"
    _write_csv(base / f"ava_{ava}_v2.2.csv", sorted(gt, key=lambda r: (r[0], r[1], r[7], r[6])))
    _write_csv(base / f"ava_{ava}_predicted_boxes.csv", detections)
    _write_csv(base / f"refava_{ava}_expressions.csv", expressions,
               header=["instance_id", "video_id", "timestamp", "person_id", "expression", "rephrasings"])
    labels = default_label_map()
    if not (base / "ava_action_list_v2.2.pbtxt").exists():
        save_label_map_pbtxt({i: labels[i] for i in ids}, base / "ava_action_list_v2.2.pbtxt")
    if images:
        lines = ["original_vido_id video_idx frame_id path labels"]
        for video, vi in sorted(video_index.items(), key=lambda kv: kv[1]):
            origin, paths = frame_list[video].positions()
            summary.frame_lists[video] = {"origin_s": origin, "positions": len(paths),
                                          "frames_per_clip": sorted(frame_list[video].frames_per_clip)}
            lines += [f"{video} {vi} {p} {path} \"\"" for p, path in enumerate(paths)]   # labels: "" as AVA's lists
        path = out / "frame_lists" / f"{ava}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _frame_list_note(videos: dict[str, dict]) -> str:
    """Which loaders the frame lists suit: contiguous clips only from a dataset with every frame of each window."""
    per_clip = sorted({n for v in videos.values() for n in v["frames_per_clip"]})
    origins = sorted({v["origin_s"] for v in videos.values()})
    where = (f"position p of a video's list is the frame at origin + p/30 s (origin {' or '.join(map(str, origins))} "
             f"s: 900 as AVA's lists for movies annotated from 902 s on, else 0), so SlowFast's (second - 900) x 30 "
             f"(with its 900 set to the origin) finds each keyframe")
    if per_clip == [90]:
        return (f"frame lists: dense (all 90 frames of each window); {where}; gaps between windows hold the nearest "
                f"stored frame. They suit SlowFast, mmaction2 and PyTorchVideo's AVA loaders")
    return (f"frame lists: sparse ({'/'.join(map(str, per_clip))} sampled frames per clip); {where}; every other "
            f"position holds the nearest stored frame, so a clip read around a keyframe repeats frames. They suit "
            f"keyframe-only loaders; for SlowFast / mmaction2 clips export a dataset ingested with --frames all")


AVA_START_S = 900          # AVA's annotated 15 minutes start here; its frame lists start here too


@dataclass
class _StoredFrames:
    """One video's stored frames in an AVA export: sampled frame path -> time (s) and frame number -> path, keyframe
    second -> (frame number, keyframe path)."""

    times: dict[str, float] = field(default_factory=dict)
    numbers: dict[int, str] = field(default_factory=dict)
    keyframes: dict[int, tuple[int, str]] = field(default_factory=dict)
    frames_per_clip: set = field(default_factory=set)

    def positions(self) -> tuple[int, list[str]]:
        """SlowFast's view: the list's origin (900 s, as AVA's lists, for a movie annotated from 902 s on; else 0 s)
        and the path at every position p = (time - origin) x 30 up to the last stored frame, the nearest sampled
        frame filling gaps and other frame rates.  A keyframe's position (second - origin) x 30 holds the keyframe's
        own movie frame: the sampled frame of that frame number when one is stored (``--frames all`` stores every
        frame of the window), else the keyframe image."""
        import bisect

        origin = AVA_START_S if min(self.keyframes) >= AVA_START_S else 0
        ordered = sorted(self.times.items(), key=lambda kv: (kv[1], kv[0])) or sorted(
            ((rel, (n - 1) / FPS) for n, rel in self.keyframes.values()), key=lambda kv: (kv[1], kv[0]))
        times = [t for _, t in ordered]
        last = max(int(round((times[-1] - origin) * FPS)), *((s - origin) * FPS for s in self.keyframes))
        paths = []
        for p in range(last + 1):
            t = origin + p / FPS
            i = bisect.bisect_left(times, t)
            near = min((j for j in (i - 1, i) if 0 <= j < len(times)), key=lambda j: (abs(times[j] - t), j))
            paths.append(ordered[near][0])
        for second, (number, rel) in self.keyframes.items():
            paths[(second - origin) * FPS] = self.numbers.get(number, rel)
        return origin, paths


def read_ava_export(out: str | os.PathLike, split: str) -> list:
    """The instances of an AVA export's ``split``, read back with refava's own AVA reader (for round trips)."""
    from ..ava.csv import group_instances, load_ava_csv

    path = Path(out) / "annotations" / f"ava_{AVA_SPLIT.get(split, split)}_v2.2.csv"
    return group_instances(load_ava_csv(path, known_actions=_label_ids()), source=path.name)


# --- COCO -----------------------------------------------------------------------------------------------------------

def _coco_split(folder: Path, manifest: dict, split: str, out: Path, images: bool,
                summary: ExportSummary) -> None:
    from ..ava import default_label_map

    labels = default_label_map()
    ids = _label_ids()
    coco = {"info": {"description": "RefAVA (refava export --format coco)", "split": split},
            "licenses": [{"id": 1, "name": "CC BY 4.0 (annotations); frames belong to the AVA movies' rights "
                                            "holders", "url": "https://creativecommons.org/licenses/by/4.0/"}],
            "images": [], "annotations": [], "refs": [],
            "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
            "action_categories": [{"id": i, "name": labels[i].name} for i in ids]}
    image_of: dict[str, int] = {}
    sent_id = 0
    n = 0
    for row in _dataset_rows(folder, manifest, split, images):
        n += 1
        key = f"{row['video_id']}_{row['keyframe_s']:04d}"
        width, height = row["keyframe_width"], row["keyframe_height"]
        if key not in image_of:
            image_of[key] = len(image_of) + 1
            file_name = f"images/{key}.jpg"
            coco["images"].append({"id": image_of[key], "file_name": file_name, "width": width, "height": height,
                                   "video_id": row["video_id"], "keyframe_s": row["keyframe_s"], "license": 1})
            if images and row.get("keyframe"):
                path = out / file_name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(row["keyframe"]["bytes"])
                summary.images += 1
        x1, y1, x2, y2 = (float(np.float32(v)) for v in row["box_px"])
        ann_id = len(coco["annotations"]) + 1
        coco["annotations"].append({
            "id": ann_id, "image_id": image_of[key], "category_id": 1, "iscrowd": 0,
            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
            "instance_id": row["instance_id"], "person_id": row["person_id"],
            "actions": [ids[a] for a in sorted(row["actions"])]})
        sentences = []
        for text in [row["expression"], *row["rephrasings"]]:
            if text:
                sentences.append({"sent_id": sent_id, "raw": text, "sent": text.lower(),
                                  "tokens": text.lower().replace(",", " ").split()})
                sent_id += 1
        coco["refs"].append({"ref_id": ann_id, "ann_id": ann_id, "image_id": image_of[key], "category_id": 1,
                             "split": AVA_SPLIT[split], "file_name": f"images/{key}.jpg",
                             "instance_id": row["instance_id"], "sent_ids": [s["sent_id"] for s in sentences],
                             "sentences": sentences})
    summary.rows[split] = n
    (out / f"refava_{AVA_SPLIT[split]}.json").write_text(json.dumps(coco, ensure_ascii=False) + "\n",
                                                         encoding="utf-8")
