"""The official RefAVA scorer: any model's predictions on a split, scored with the RAVAR metrics.

``refava evaluate --predictions FILE --split test [--dataset DIR]`` reads the ground truth from a packaged dataset
(its ``annotations_only`` configuration: no pixels are read) and the predictions from

* JSON lines: one object per instance, ``{"instance_id": "...", "scores": [80 numbers], "box": [x1, y1, x2, y2]}``
  (``box`` optional, normalised to [0, 1] like the dataset's ``box``), or
* csv: a header ``instance_id``, then 80 score columns, then optionally ``x1, y1, x2, y2``. The score columns are
  taken in ClassLabel order, or by name where the header names them by the dataset's action names or as
  ``0`` .. ``79`` / ``score_0`` .. ``score_79``.

Scores are any real numbers where higher means more likely (probabilities or logits). Every instance of the split
must be predicted exactly once; missing, duplicate and unknown ids, a wrong number of scores and non-finite numbers
are refused with the line they are on. The metrics are those of refava's own runs (:func:`refava.metrics.evaluate`):
mAP and AUROC macro and weighted, mIOU and mAP at IoU 0.2 / 0.5 (when boxes are given), mAP per action group, and
the AP of every class.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RefavaError

BOX_COLUMNS = ("x1", "y1", "x2", "y2")


class PredictionsError(RefavaError, ValueError):
    """A predictions file that cannot be scored; the message names the line and what to change."""


@dataclass
class GroundTruth:
    """One split of a packaged dataset: ids in dataset order, multi-hot labels, boxes, class names and groups."""

    ids: list[str]
    labels: np.ndarray          # (N, C) bool
    boxes: np.ndarray           # (N, 4) float64, normalised
    names: list[str]
    groups: list[int]           # per class: 0 person movement, 1 object manipulation, 2 person interaction
    source: str


def load_ground_truth(dataset: str | os.PathLike, split: str, config: str | None = None) -> GroundTruth:
    """The ground truth of ``split`` (train / val / validation / test) from a packaged dataset folder; ``config``
    restricts it to the rows of one configuration (e.g. ``test_fog_s3``)."""
    import pyarrow.parquet as pq

    from .ava import default_label_map
    from .package.format import GROUP_OF_TYPE, config_split, read_manifest

    folder = Path(dataset)
    manifest = read_manifest(folder, PredictionsError, "pass --dataset with the folder `refava package` wrote")
    name = config or ("annotations_only" if "annotations_only" in manifest["configs"] else "default")
    hf_split = config_split(manifest, folder, name, split, PredictionsError)
    splits = manifest["configs"][name]["splits"]
    ids, actions, boxes = [], [], []
    for shard in splits[hf_split]:
        table = pq.read_table(folder / shard["path"], columns=["instance_id", "actions", "box"])
        ids += table.column("instance_id").to_pylist()
        actions += table.column("actions").to_pylist()
        boxes += table.column("box").to_pylist()
    label_map = default_label_map()
    label_ids = sorted(label_map)
    names = [label_map[i].name for i in label_ids]
    meta = pq.read_schema(folder / splits[hf_split][0]["path"]).metadata or {}
    stored = json.loads(meta.get(b"huggingface", b"{}")).get("info", {}).get("features", {})
    stored_names = stored.get("actions", {}).get("feature", {}).get("names")
    if stored_names and stored_names != names:
        raise PredictionsError(f"{folder}: the dataset's action names differ from refava's AVA v2.2 label map "
                               f"(first: {stored_names[:3]}); this scorer knows AVA v2.2's 80 classes")
    labels = np.zeros((len(ids), len(names)), dtype=bool)
    for row, acts in enumerate(actions):
        labels[row, acts] = True
    return GroundTruth(ids, labels, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), names,
                       [GROUP_OF_TYPE.get(label_map[i].label_type, 0) for i in label_ids],
                       f"{folder} ({name}/{hf_split})")


@dataclass
class Predictions:
    scores: dict[str, np.ndarray]
    boxes: dict[str, np.ndarray] | None
    path: str


def read_predictions(path: str | os.PathLike, names: list[str]) -> Predictions:
    """Predictions from a JSON-lines or csv file (see the module doc), checked line by line."""
    path = Path(path)
    if not path.exists():
        raise PredictionsError(f"{path}: no such predictions file")
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf").lstrip()
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson") or head.startswith(b"{"):
        return _read_jsonl(path, len(names))
    return _read_csv(path, names)


def _finite(values, where: str, what: str) -> np.ndarray:
    if any(isinstance(v, bool) or (isinstance(v, str) and len(v) > 64) for v in values):
        wrong = next(v for v in values if isinstance(v, bool) or (isinstance(v, str) and len(v) > 64))
        raise PredictionsError(f"{where}: {what} must be numbers, found {type(wrong).__name__} {str(wrong)[:40]!r}")
    try:
        out = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise PredictionsError(f"{where}: {what} must be numbers, found {[str(v)[:20] for v in list(values)[:5]]!r}"
                               f"...") from None
    bad = [i for i, v in enumerate(out) if not math.isfinite(v)]
    if bad:
        raise PredictionsError(f"{where}: {what} must be finite, found {out[bad[0]]} at position {bad[0]}"
                               f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}; a diverged model's "
                               f"scores cannot be ranked")
    return out


def _add(pred: dict, boxes: dict, seen: dict, instance_id, scores, box, where: str, n: int) -> None:
    if not isinstance(instance_id, str) or not instance_id:
        raise PredictionsError(f"{where}: expected a non-empty instance_id string, found {str(instance_id)[:60]!r}")
    if len(instance_id) > 200:
        raise PredictionsError(f"{where}: an instance_id of {len(instance_id):,} characters ({instance_id[:40]!r}...): "
                               f"expected VIDEO___TIMESTAMP___PERSON")
    if instance_id in seen:
        raise PredictionsError(f"{where}: instance {instance_id[:120]} is predicted twice (first at {seen[instance_id]}); "
                               f"keep one prediction per instance")
    seen[instance_id] = where
    if not isinstance(scores, (list, tuple)) or len(scores) != n:
        found = len(scores) if isinstance(scores, (list, tuple)) else type(scores).__name__
        raise PredictionsError(f"{where}: instance {instance_id}: expected {n} scores (one per action class, in "
                               f"ClassLabel order), found {found}")
    pred[instance_id] = _finite(scores, where, "scores")
    if box is not None:
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            raise PredictionsError(f"{where}: instance {instance_id}: box must be [x1, y1, x2, y2], found {box!r}")
        boxes[instance_id] = _finite(box, where, "box")


def _check_boxes(pred: dict, boxes: dict, path: Path):
    if boxes and len(boxes) != len(pred):
        lacking = next(i for i in pred if i not in boxes)
        raise PredictionsError(f"{path}: {len(boxes)} of {len(pred)} predictions have a box (instance {lacking} has "
                               f"none); give a box for every instance or for none")
    return boxes or None


def _read_jsonl(path: Path, n: int) -> Predictions:
    from .io import InputError, iter_json_lines

    pred, boxes, seen = {}, {}, {}
    try:
        for number, obj in iter_json_lines(path, what="predictions"):
            where = f"{path}:{number}"
            if not isinstance(obj, dict):
                raise PredictionsError(f"{where}: expected a JSON object, found {type(obj).__name__}; one object per "
                                       f'line: {{"instance_id": ..., "scores": [{n} numbers], "box": [4 numbers]}}')
            scores, box = obj.get("scores"), obj.get("box")
            for what, values in (("scores", scores), ("box", box)):
                if isinstance(values, list):
                    wrong = next((v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))), None)
                    if wrong is not None:
                        raise PredictionsError(f"{where}: {what} must be JSON numbers, found "
                                               f"{type(wrong).__name__} {str(wrong)[:40]!r}")
            _add(pred, boxes, seen, obj.get("instance_id"), scores, box, where, n)
    except InputError as exc:
        raise PredictionsError(str(exc)) from None
    return Predictions(pred, _check_boxes(pred, boxes, path), str(path))


def _read_csv(path: Path, names: list[str]) -> Predictions:
    from .io import InputError, iter_csv

    n = len(names)
    pred, boxes, seen = {}, {}, {}
    try:
        rows = iter_csv(path, what="predictions csv")
        _, header = next(rows, (1, None))
        if not header or header[0].strip() != "instance_id":
            raise PredictionsError(f"{path}:1: expected a header starting with instance_id, found "
                                   f"{[h[:40] for h in (header or ['(empty file)'])[:3]]}")
        header = [h.strip() for h in header]
        has_box = header[-4:] == list(BOX_COLUMNS)
        score_cols = header[1:len(header) - 4 if has_box else len(header)]
        if len(score_cols) != n:
            raise PredictionsError(f"{path}:1: expected {n} score columns after instance_id"
                                   f"{' (then x1, y1, x2, y2)' if has_box else ''}, found {len(score_cols)}")
        order = _column_order(score_cols, names)
        for number, row in rows:
            if not row or not any(c.strip() for c in row):
                continue
            where = f"{path}:{number}"
            if len(row) != len(header):
                raise PredictionsError(f"{where}: {len(row)} fields, the header has {len(header)}")
            scores = [row[1 + i] for i in order]
            box = row[-4:] if has_box else None
            _add(pred, boxes, seen, row[0].strip(), scores, box, where, n)
    except InputError as exc:
        raise PredictionsError(str(exc)) from None
    return Predictions(pred, _check_boxes(pred, boxes, path), str(path))


def _column_order(columns: list[str], names: list[str]) -> list[int]:
    """For each class (ClassLabel order), its position among the score columns."""
    for key in (lambda i, name: name, lambda i, name: str(i), lambda i, name: f"score_{i}"):
        wanted = [key(i, name) for i, name in enumerate(names)]
        if set(wanted) == set(columns):
            return [columns.index(w) for w in wanted]
    return list(range(len(columns)))


def score(gt: GroundTruth, pred: Predictions) -> dict:
    """The metrics of ``pred`` against ``gt`` (percentages), after checking that the ids are exactly the split's."""
    from . import metrics as M

    known = set(gt.ids)
    unknown = [i for i in pred.scores if i not in known]
    if unknown:
        raise PredictionsError(f"{pred.path}: {len(unknown)} instance id(s) are not in {gt.source}, e.g. "
                               f"{', '.join(unknown[:3])}; predict the split you score (--split)")
    missing = [i for i in gt.ids if i not in pred.scores]
    if missing:
        raise PredictionsError(f"{pred.path}: {len(missing)} of {len(gt.ids)} instance(s) of {gt.source} have no "
                               f"prediction, e.g. {', '.join(missing[:3])}; predict every instance of the split")
    scores = np.stack([pred.scores[i] for i in gt.ids]) if gt.ids else np.zeros((0, len(gt.names)))
    boxes = np.stack([pred.boxes[i] for i in gt.ids]) if pred.boxes and gt.ids else None
    out = {"instances": len(gt.ids), "ground_truth": gt.source, "predictions": pred.path}
    out.update(M.evaluate(gt.labels, scores, boxes, gt.boxes if boxes is not None else None, groups=gt.groups))
    per = M.multilabel_map(gt.labels, scores)["per_class"]
    out["ap_per_class"] = {gt.names[c]: 100 * v for c, v in sorted(per.items())}
    return out


def write_predictions(path: str | os.PathLike, ids: list[str], scores: np.ndarray,
                      boxes: np.ndarray | None = None) -> None:
    """Predictions as JSON lines, the format :func:`read_predictions` reads (used by ``refava evaluate --run``)."""
    from .fsutil import write_text_atomic

    lines = []
    for row, instance_id in enumerate(ids):
        obj = {"instance_id": instance_id, "scores": [float(v) for v in scores[row]]}
        if boxes is not None:
            obj["box"] = [float(v) for v in boxes[row]]
        lines.append(json.dumps(obj))
    write_text_atomic(Path(path), "\n".join(lines) + ("\n" if lines else ""))
