"""Reading annotation sources (Label Studio export files, the RAVAR authors' pickles) and the versioned
annotations table."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AnnotationFormatError
from ..tables import read_table, write_table
from ..validate import Problem
from .convert import guess_stage, ls_task_to_annotations

CONTENT_KEYS = ("text", "flags", "picked", "picked_person_id")


@dataclass
class ImportResult:
    added: int = 0
    unchanged: int = 0
    updated: int = 0
    version: int = 0
    problems: list[Problem] = field(default_factory=list)
    stage: str = ""


def load_label_studio_export(path: str | os.PathLike) -> list[dict]:
    """Read a Label Studio full JSON export (a list of tasks); a truncated or malformed file is refused whole."""
    from ..io import InputError, read_json

    path = Path(path)
    if not path.exists():
        raise AnnotationFormatError(f"{path}: export file not found")
    try:
        data = read_json(path, what="Label Studio export")
    except InputError as exc:
        raise AnnotationFormatError(f"{exc}; export it again from Label Studio (JSON, not JSON_MIN)") from None
    if not isinstance(data, list) or any(not isinstance(t, dict) for t in data):
        raise AnnotationFormatError(f"{path}: expected a Label Studio JSON export (a list of tasks), "
                                    f"found {type(data).__name__}")
    if data and "annotations" not in data[0]:
        raise AnnotationFormatError(f"{path}: tasks have no 'annotations' key: this is a JSON_MIN or CSV-style export; "
                                    f"export as JSON, which keeps which box every answer belongs to")
    return data


def load_ravar_release(folder: str | os.PathLike, split: str) -> dict[str, dict]:
    """The RAVAR authors' release for one split: three pickles keyed ``video___timestamp___person`` (box, action
    ids, expressions), joined by key, never by order; loaded without executing pickle code.

    Files looked for: ``{split}_set_boxes.pkl``/``{split}_set_box.pkl``, ``{split}_set_labels.pkl``,
    ``{split}_set_texts.pkl``/``{split}_set_text.pkl``.
    """
    import numpy as np

    from ..ava.proposals import safe_load_pickle

    folder = Path(folder)

    def find(*names):
        for name in names:
            if (folder / name).exists():
                return folder / name
        raise AnnotationFormatError(f"{folder}: none of {list(names)} found for split {split!r}")

    boxes = safe_load_pickle(find(f"{split}_set_boxes.pkl", f"{split}_set_box.pkl"))
    labels = safe_load_pickle(find(f"{split}_set_labels.pkl", f"{split}_set_label.pkl"))
    texts = safe_load_pickle(find(f"{split}_set_texts.pkl", f"{split}_set_text.pkl"))
    for name, obj in (("boxes", boxes), ("labels", labels), ("texts", texts)):
        if not isinstance(obj, dict):
            raise AnnotationFormatError(f"{folder}: {split} {name}: expected a dict keyed 'video___timestamp___person', "
                                        f"found {type(obj).__name__}")
    keys = set(boxes) | set(labels) | set(texts)
    out = {}
    for key in sorted(keys):
        text = texts.get(key)
        if isinstance(text, (list, tuple)):
            text = " ".join(str(t) for t in text)
        label = labels.get(key)
        if label is not None:
            arr = np.asarray(label).ravel()
            label = [int(i) + 1 for i in np.flatnonzero(arr)] if arr.size == 80 else [int(a) for a in arr]
        box = boxes.get(key)
        out[str(key)] = {"box": None if box is None else [float(v) for v in np.asarray(box, float).ravel()[:4]],
                         "actions": label, "text": text}
    return out


def ravar_to_rows(records: dict[str, dict], *, source: str, known_instances: set[str] | None = None):
    rows, problems = [], []
    for key, rec in records.items():
        parts = key.rsplit("___", 2)
        if len(parts) != 3:
            problems.append(Problem("unknown_region", source, key, "a key 'video___timestamp___person'", repr(key)))
            continue
        iid = f"{parts[0]}___{int(parts[1]):04d}___{int(parts[2])}"
        if known_instances is not None and iid not in known_instances:
            problems.append(Problem("unknown_region", source, iid, "an instance of the instances table", "no such instance"))
            continue
        if rec["text"] is None:
            problems.append(Problem("missing_expression", source, iid, "an expression in the texts pickle", "none"))
            continue
        rows.append({"annotation_id": f"ravar:{source}:{iid}", "instance_id": iid, "clip_id": iid.rsplit("___", 1)[0],
                     "stage": "describe", "annotator": "ravar-authors", "created_at": "", "lead_time_s": None,
                     "text": rec["text"], "flags": [], "picked": None, "picked_person_id": None,
                     "ls_project_id": None, "ls_task_id": None, "ls_annotation_id": None, "source": source,
                     "task_kind": None})
    return rows, problems


def read_annotations(path: Path) -> list[dict]:
    return read_table("annotations", path).to_pylist() if path.exists() else []


def merge_annotations(path: Path, new_rows: list[dict], *, provenance: dict) -> ImportResult:
    """Append ``new_rows`` to the annotations table as a new version; identical answers are not added again.

    An answer whose content changed (edited in Label Studio) is added as a new row of the new version; the
    latest version wins in checks.  Nothing stored is ever removed.
    """
    existing = read_annotations(path)
    version = max((r["version"] for r in existing), default=0) + 1
    latest: dict[str, dict] = {}
    for row in sorted(existing, key=lambda r: r["version"]):
        latest[row["annotation_id"].split("#", 1)[0]] = row
    result = ImportResult(version=version)
    added = []
    for row in new_rows:
        base = row["annotation_id"]
        before = latest.get(base)
        if before is not None and all(before[k] == row[k] for k in CONTENT_KEYS):
            result.unchanged += 1
            continue
        row = {**row, "version": version}
        if before is not None:
            row["annotation_id"] = f"{base}#v{version}"
            result.updated += 1
        else:
            result.added += 1
        added.append(row)
        latest[base] = row
    if added:
        write_table("annotations", existing + added, path, provenance={"stage": "annotate", **provenance})
    return result


def import_export_file(path: str | os.PathLike, table_path: Path, *, stage: str | None = None,
                       known_instances: set[str] | None = None, verify_map: dict | None = None) -> ImportResult:
    """Import a Label Studio JSON export into the annotations table (see :func:`merge_annotations`)."""
    path = Path(path)
    tasks = load_label_studio_export(path)
    stage = stage or guess_stage(tasks)
    rows, problems = [], []
    for task in tasks:
        converted = ls_task_to_annotations(task, stage, source=path.name, known_instances=known_instances,
                                           verify_map=verify_map)
        rows.extend(converted.rows)
        problems.extend(converted.problems)
    result = merge_annotations(table_path, rows, provenance={"source": path.name, "stage_kind": stage})
    result.problems, result.stage = problems, stage
    return result
