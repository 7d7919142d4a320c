"""Label Studio exports of referring expressions for the sample corpus, as two annotators would leave them.

The exports follow Label Studio's full JSON export (a list of tasks with ``annotations`` and ``predictions``)
for the configs in ``annotation/``: *describe* (per-region ``expression`` text and ``flags`` choices on the
pre-drawn AVA boxes, whose region ids are ``person_<id>``) and *verify* (a ``pick`` choice of a box number for
one expression), the verify tasks in exactly the shape `refava annotate push --stage verify` sends (an opaque key,
nothing naming the person), with the map the pushing workspace keeps (``labelstudio_verify_tasks.json``: import
with ``--verify-map``).  Annotator 2 verifies every expression, annotator 3 a second time for even person ids.  Planted flaws, listed in ``sample_export_flaws.json``: an expression naming an action, a
duplicate expression within a clip, a failed verification, a flagged box, and a describer disagreement.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from .annotate import blind
from .annotate.verifyplan import make_entry, task_data
from .fsutil import write_json_atomic

ANNOTATORS = {1: "annotator1@refava.example", 2: "annotator2@refava.example", 3: "annotator3@refava.example"}
EPOCH = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def region_id(person_id: int) -> str:
    return f"person_{person_id}"


def _rect_value(box) -> dict:
    x1, y1, x2, y2 = box
    return {"x": round(x1 * 100, 3), "y": round(y1 * 100, 3), "width": round((x2 - x1) * 100, 3),
            "height": round((y2 - y1) * 100, 3), "rotation": 0}


def _when(minutes: float) -> str:
    return (EPOCH + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def _verify_export(truth: list[dict], clips: dict, expressions: dict, flaws: dict, failed_clip: str, rng,
                   ann_id: int, seed: int) -> tuple[list[dict], dict]:
    """The verify export and the map its pushing workspace keeps."""
    # the verify stage as `refava annotate push --stage verify` sends it: opaque keys and image names, boxes
    # numbered per task, tasks in the secret's order; the answers live in the map, as in a workspace
    secret = f"refava-sample-corpus-{seed}".encode()
    failed_target = sorted(r["instance_id"] for r in truth if r["clip_id"] == failed_clip)[0]
    entries: dict[str, dict] = {}
    verify_tasks = []
    for row in sorted(truth, key=lambda r: r["instance_id"]):
        people = [p["person_id"] for p in clips[row["clip_id"]]]
        for slot in (["w0"] + (["w1"] if row["person_id"] % 2 == 0 else [])):   # a second verifier for some
            key = blind.task_key(secret, row["instance_id"], expressions[row["instance_id"]], slot)
            entries[key] = make_entry(secret, key, row["instance_id"], expressions[row["instance_id"]], slot, "work",
                                      people)
    for task_id, key in enumerate(blind.push_order(secret, sorted(entries)), start=1):
        entry = entries[key]
        numbers = entry["box_numbers"]
        correct = next(n for n, pid in numbers.items() if pid == int(entry["instance_id"].rsplit("___", 1)[1]))
        pick = correct
        if entry["instance_id"] == failed_target and entry["slot"] == "w0":
            pick = next((n for n in numbers if n != correct), "none")
            flaws["failed_verification"].append(entry["instance_id"])
        who = 2 if entry["slot"] == "w0" else 3
        ann_id += 1
        verify_tasks.append({
            "id": task_id,
            "data": task_data(f"/data/local-files/?d=labelstudio/keyframes_numbered/{entry['image']}", key, entry),
            "annotations": [{"id": ann_id, "completed_by": who, "was_cancelled": False, "ground_truth": False,
                             "result": [{"id": f"pick_{task_id}", "from_name": "pick", "to_name": "image",
                                         "type": "choices", "origin": "manual", "value": {"choices": [pick]}}],
                             "created_at": _when(600 + task_id), "updated_at": _when(600 + task_id),
                             "lead_time": round(float(rng.uniform(5, 30)), 3), "task": task_id, "project": 2}],
            "predictions": [], "project": 2, "created_at": _when(590), "updated_at": _when(600 + task_id)})

    return verify_tasks, entries


def make_label_studio_exports(truth: list[dict], out_dir: Path, *, seed: int = 0) -> dict:
    """Write describe and verify exports for ``truth`` rows (one per person); return their paths and flaws."""
    rng = np.random.default_rng(seed + 1)
    clips: dict[str, list[dict]] = {}
    for row in truth:
        clips.setdefault(row["clip_id"], []).append(row)
    clip_ids = sorted(clips)
    flaws: dict[str, list[str]] = {"action_word": [], "duplicate_in_clip": [], "failed_verification": [],
                                   "flagged_box": [], "describer_conflict": []}
    multi = [c for c in clip_ids if len(clips[c]) >= 2]
    action_clip, dup_clip, flag_clip, conflict_clip = multi[1], multi[3], multi[5], multi[7]
    describe_tasks = []
    expressions: dict[str, str] = {}
    ann_id = 1000
    for task_id, clip_id in enumerate(clip_ids, start=1):
        people = sorted(clips[clip_id], key=lambda r: r["person_id"])
        first = people[0]
        predictions = [{"id": task_id, "model_version": "ava-ground-truth", "score": 1.0, "result": [
            {"id": region_id(p["person_id"]), "from_name": "box", "to_name": "image", "type": "rectangle",
             "original_width": 320, "original_height": 240, "image_rotation": 0, "value": _rect_value(p["box"])}
            for p in people]}]
        annotations = []
        describers = [1] + ([2] if task_id % 3 == 0 or clip_id == conflict_clip else [])
        for user in describers:
            ann_id += 1
            result = []
            for p in people:
                text = p["expression"] if user == 1 else p["expression_alt"]
                iid = p["instance_id"]
                if user == 1 and clip_id == action_clip and p is people[0]:
                    text = f"{p['expression']} who is walking"
                    flaws["action_word"].append(iid)
                if user == 1 and clip_id == dup_clip and p is people[1]:
                    text = people[0]["expression"]
                    flaws["duplicate_in_clip"].append(iid)
                if user == 2 and clip_id == conflict_clip and p is people[0]:
                    other = people[1]
                    text = other["expression"]  # describes somebody else: the two describers disagree
                    flaws["describer_conflict"].append(iid)
                if user == 1:
                    expressions[iid] = text
                common = {"id": region_id(p["person_id"]), "to_name": "image", "original_width": 320,
                          "original_height": 240, "image_rotation": 0, "origin": "prediction-changed"}
                result.append({**common, "from_name": "box", "type": "rectangle", "value": _rect_value(p["box"])})
                result.append({**common, "from_name": "expression", "type": "textarea",
                               "value": {**_rect_value(p["box"]), "text": [text]}})
                if user == 1 and clip_id == flag_clip and p is people[-1]:
                    result.append({**common, "from_name": "flags", "type": "choices",
                                   "value": {**_rect_value(p["box"]), "choices": ["box_wrong"]}})
                    flaws["flagged_box"].append(iid)
            annotations.append({"id": ann_id, "completed_by": user, "result": result, "was_cancelled": False,
                                "ground_truth": False, "created_at": _when(task_id * 2 + user),
                                "updated_at": _when(task_id * 2 + user), "lead_time": round(float(rng.uniform(20, 90)), 3),
                                "task": task_id, "project": 1})
        describe_tasks.append({"id": task_id, "data": {"image": f"/data/local-files/?d=keyframes/{clip_id}.jpg",
                                                       "clip_id": clip_id, "video_id": first["video_id"],
                                                       "timestamp": first["timestamp"]},
                               "annotations": annotations, "predictions": predictions, "project": 1,
                               "created_at": _when(0), "updated_at": _when(task_id * 2 + 2)})

    verify_tasks, entries = _verify_export(truth, clips, expressions, flaws, multi[9], rng, ann_id, seed)

    describe_path = out_dir / "labelstudio_describe_export.json"
    verify_path = out_dir / "labelstudio_verify_export.json"
    write_json_atomic(describe_path, describe_tasks)
    write_json_atomic(verify_path, verify_tasks)
    write_json_atomic(out_dir / "labelstudio_verify_tasks.json", entries)
    write_json_atomic(out_dir / "sample_export_flaws.json", {"annotators": ANNOTATORS, "flaws": flaws})
    return {"describe_export": str(describe_path), "verify_export": str(verify_path),
            "describe_tasks": len(describe_tasks), "verify_tasks": len(verify_tasks)}
