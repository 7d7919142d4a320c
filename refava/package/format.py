"""The packaged dataset's format: what the loader, the scorer and export read (constants, the manifest and its
configurations and splits, the row features); nothing here writes a dataset.

``refava package``: the workspace as a Hugging Face dataset folder that ``datasets.load_dataset`` reads offline.

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

import json
import os
from pathlib import Path

from ..errors import RefavaError

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


