"""``refava export --format fiftyone``: a folder that FiftyOne imports with its own API
(``fo.Dataset.from_dir(DIR, dataset_type=fo.types.LegacyFiftyOneDataset)``; ``tools/fiftyone.sh open DIR`` does it
and opens the App)::

    samples.json        one sample per keyframe: the keyframe image, ``video_id``, ``keyframe_s``, ``split`` (also a
                        tag), and ``people``: a Detections field with one Detection per RefAVA instance: the box,
                        ``refava_id`` (the instance id: FiftyOne reserves ``instance_id``), ``person_id``, ``expression``,
                        ``rephrasings``, ``actions`` (names),
                        ``action_ids`` (AVA ids), ``status`` and ``verified`` (annotation status and cross-check),
                        ``annotators``
    metadata.json       the dataset's name, media type and info (refava version, the dataset's manifest digest)
    data/<video>_<second>.jpg                   the keyframes
    fields/keyframe_<setting>/<video>_<second>.jpg  each corruption setting's keyframe, as a media field
                        ``keyframe_<setting>`` of the sample (FiftyOne resolves it like ``filepath``)

FiftyOne pins packages that clash with refava's: it lives in its own environment (``make fiftyone``); refava
writes the folder without importing it.
"""
from __future__ import annotations

import json
from pathlib import Path

CORE_CONFIGS = ("default", "annotations_only", "rephrased")


def export_fiftyone(folder: Path, manifest: dict, splits: list[str], out: Path, images: bool, summary, rows_of,
                    label_names: list[str], label_ids: list[int]) -> None:
    """Write the FiftyOne folder of ``splits`` into ``out``; ``rows_of(split)`` gives the dataset's rows."""
    samples: dict[str, dict] = {}
    for split in splits:
        n = 0
        for row in rows_of(split):
            n += 1
            key = f"{row['video_id']}_{int(row['keyframe_s']):04d}"
            sample = samples.get(key)
            if sample is None:
                sample = samples[key] = {
                    "filepath": f"data/{key}.jpg", "tags": [split], "split": split, "video_id": row["video_id"],
                    "keyframe_s": int(row["keyframe_s"]), "keyframe_time_s": row["keyframe_time_s"],
                    "metadata": {"_cls": "ImageMetadata", "width": row["keyframe_width"],
                                 "height": row["keyframe_height"]},
                    "people": {"_cls": "Detections", "detections": []}}
                if images and row.get("keyframe"):
                    path = out / sample["filepath"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(row["keyframe"]["bytes"])
                    summary.images += 1
            x1, y1, x2, y2 = (float(v) for v in row["box"])
            sample["people"]["detections"].append({
                "_cls": "Detection", "label": "person", "bounding_box": [x1, y1, x2 - x1, y2 - y1],
                "refava_id": row["instance_id"], "person_id": int(row["person_id"]),
                "expression": row["expression"], "rephrasings": list(row.get("rephrasings") or []),
                "actions": [label_names[a] for a in sorted(row["actions"])],
                "action_ids": [label_ids[a] for a in sorted(row["actions"])],
                "status": "accepted", "verified": row.get("verified"), "annotators": list(row.get("annotators") or [])})
        summary.rows[split] = n
    if images:
        _corrupted_keyframes(folder, manifest, splits, samples, out, summary)
    ordered = [samples[k] for k in sorted(samples)]
    for sample in ordered:
        sample["people"]["detections"].sort(key=lambda d: d["person_id"])
    (out / "samples.json").write_text(json.dumps({"samples": ordered}, ensure_ascii=False) + "\n", encoding="utf-8")
    from ..fsutil import sha256_file
    from ..package.format import MANIFEST

    meta = {"name": "refava", "media_type": "image",
            "info": {"source": "refava export --format fiftyone", "refava_version": manifest.get("refava_version"),
                     "dataset_manifest_sha256": sha256_file(folder / MANIFEST),
                     "action_names": label_names}}
    (out / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _corrupted_keyframes(folder: Path, manifest: dict, splits: list[str], samples: dict, out: Path, summary) -> None:
    """Each corruption configuration's keyframes as the media field ``keyframe_<setting>`` of their samples."""
    import pyarrow.parquet as pq

    for name, config in sorted(manifest["configs"].items()):
        if name in CORE_CONFIGS or not config.get("pixels"):
            continue
        for split, shards in config["splits"].items():
            ours = {"validation": "val"}.get(split, split)          # configurations are named by refava's split
            if split not in splits or not name.startswith(f"{ours}_"):
                continue
            field = f"keyframe_{name[len(ours) + 1:]}"
            for shard in shards:
                table = pq.read_table(folder / shard["path"], columns=["video_id", "keyframe_s", "keyframe"])
                for row in table.to_pylist():
                    key = f"{row['video_id']}_{int(row['keyframe_s']):04d}"
                    if key not in samples or field in samples[key]:
                        continue
                    rel = f"fields/{field}/{key}.jpg"
                    path = out / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(row["keyframe"]["bytes"])
                    samples[key][field] = rel
                    summary.images += 1
