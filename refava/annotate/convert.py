"""Pure converters: Label Studio tasks (full JSON export) -> annotation rows.  No files, no network.

Region ids of the describe stage are ``person_<AVA person id>``; the task's ``data.clip_id`` names the clip,
so every answer joins back to ``{clip_id}___{person_id}``.  Verify tasks carry an opaque ``task_key``; the
workspace's map (``labelstudio/verify_tasks.json``) gives its ``instance_id``, ``box_numbers`` {shown number: person
id} and ``kind`` (work, honeypot or gold); exports made before the tasks were blind carry the first two in ``data``
and are still read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..validate import Problem

REGION = re.compile(r"^person_(\d+)$")
FLAGS = ("box_wrong", "not_a_person", "not_unique")


@dataclass
class Converted:
    rows: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def annotator_of(completed_by, users: dict | None = None) -> str:
    """Who answered: the Label Studio account's email (the same person on every server), from the export itself or
    from ``users`` ({user id: email}, the server's user list); ``ls-user-<id>`` only when neither has it."""
    if isinstance(completed_by, dict):
        email = completed_by.get("email") or (users or {}).get(completed_by.get("id"))
        return email or f"ls-user-{completed_by.get('id')}"
    return (users or {}).get(completed_by) or f"ls-user-{completed_by}"


def _base(task: dict, ann: dict, stage: str, source: str, instance_id: str, clip_id: str, users=None) -> dict:
    project = ann.get("project", task.get("project"))
    return {
        "annotation_id": f"ls:{project}:{ann.get('id')}:{instance_id}",
        "instance_id": instance_id, "clip_id": clip_id, "stage": stage,
        "annotator": annotator_of(ann.get("completed_by"), users),
        "created_at": str(ann.get("created_at") or ""), "lead_time_s": ann.get("lead_time"),
        "text": None, "flags": [], "picked": None, "picked_person_id": None,
        "ls_project_id": project, "ls_task_id": task.get("id"), "ls_annotation_id": ann.get("id"),
        "source": source, "task_kind": None,
    }


def ls_task_to_annotations(task: dict, stage: str, *, source: str = "", known_instances: set[str] | None = None,
                           users: dict | None = None, verify_map: dict | None = None) -> Converted:
    """One Label Studio task (with its ``annotations``) -> annotation rows of ``stage`` ("describe"/"verify").

    Cancelled (skipped) annotations are left out; unknown region ids, instances and answers are problems.
    """
    out = Converted()
    where = f"{source} task {task.get('id')}"
    shape = task_shape_problem(task)
    if shape is not None:
        expected, found = shape
        out.problems.append(Problem("malformed_task", where, str(task.get("id")), expected, found))
        return out
    for ann in task.get("annotations") or []:
        if ann.get("was_cancelled"):
            continue
        if stage == "describe":
            if not _describe_rows(out, task, ann, where, source, known_instances, users):
                break
        elif stage == "verify":
            if not _verify_row(out, task, ann, where, source, known_instances, users, verify_map):
                break
        else:
            raise ValueError(f"stage: expected 'describe' or 'verify', found {stage!r}")
    return out


def _describe_rows(out: Converted, task: dict, ann: dict, where: str, source: str, known_instances, users) -> bool:
    """The rows of one describe answer (one per boxed person it describes); False: the task itself is unusable."""
    data = task.get("data") or {}
    clip_id = data.get("clip_id")
    if not clip_id:
        out.problems.append(Problem("unknown_task", where, str(task.get("id")), "data.clip_id", "none"))
        return False
    regions: dict[str, dict] = {}
    for result in ann.get("result") or []:
        rid = str(result.get("id", ""))
        m = REGION.match(rid)
        if result.get("from_name") not in ("expression", "flags"):
            continue
        if not m:
            out.problems.append(Problem("unknown_region", where, rid, "a region id 'person_<AVA person id>'",
                                        f"{rid!r} (from {result.get('from_name')})"))
            continue
        iid = f"{clip_id}___{int(m.group(1))}"
        if known_instances is not None and iid not in known_instances:
            out.problems.append(Problem("unknown_region", where, iid, "an instance of the instances table",
                                        "no such instance (was the box removed or the clip excluded?)"))
            continue
        row = regions.setdefault(iid, _base(task, ann, "describe", source, iid, clip_id, users))
        value = result.get("value") or {}
        if result["from_name"] == "expression":
            texts = [t for t in value.get("text") or [] if isinstance(t, str)]
            row["text"] = " ".join(t.strip() for t in texts).strip() or None
        else:
            bad = [c for c in value.get("choices") or [] if c not in FLAGS]
            if bad:
                out.problems.append(Problem("unknown_answer", where, iid, f"flags in {FLAGS}", str(bad)))
            row["flags"] = sorted({c for c in value.get("choices") or [] if c in FLAGS})
    out.rows.extend(regions[k] for k in sorted(regions))
    return True


def _verify_row(out: Converted, task: dict, ann: dict, where: str, source: str, known_instances, users,
                verify_map) -> bool:
    """The row of one verify answer; False: the task itself is unusable (unknown key or instance)."""
    data = task.get("data") or {}
    # blind tasks carry an opaque key that the workspace's map resolves; older exports carried the answer
    entry = (verify_map or {}).get(data.get("task_key")) if data.get("task_key") else data
    if entry is None:
        out.problems.append(Problem("unknown_task", where, str(data.get("task_key")),
                                    "a verify task key of this workspace (labelstudio/verify_tasks.json)",
                                    "no such key: pushed from another workspace?"))
        return False
    iid = entry.get("instance_id")
    numbers = entry.get("box_numbers") or {}
    if not iid or (known_instances is not None and iid not in known_instances):
        out.problems.append(Problem("unknown_region", where, str(iid), "data.instance_id of a known instance",
                                    "missing or unknown"))
        return False
    picks = [c for r in ann.get("result") or [] if r.get("from_name") == "pick"
             for c in (r.get("value") or {}).get("choices") or []]
    if len(picks) != 1:
        out.problems.append(Problem("unknown_answer", where, iid, "exactly one pick", f"{picks}"))
        return True
    row = _base(task, ann, "verify", source, iid, iid.rsplit("___", 1)[0], users)
    row["text"] = data.get("expression")      # the text this answer verified: a rewrite needs a new check
    if data.get("task_key"):
        row["task_kind"] = entry.get("kind", "work")     # honeypot answers score the verifier, not the instance
    row["picked"] = picks[0]
    if picks[0] != "none":
        if picks[0] not in numbers:
            out.problems.append(Problem("unknown_answer", where, iid, f"a box number in {sorted(numbers)}",
                                        repr(picks[0])))
            return True
        row["picked_person_id"] = int(numbers[picks[0]])
    out.rows.append(row)
    return True


def task_shape_problem(task: dict) -> tuple[str, str] | None:
    """(expected, found) for the first part of a Label Studio task whose JSON type is wrong, else None: ``data``
    an object, ``annotations`` a list of objects, each ``result`` a list of objects, each ``value`` an object whose
    ``text`` and ``choices`` are lists."""
    def kind(value) -> str:
        return type(value).__name__.replace("dict", "object").replace("NoneType", "null")

    if not isinstance(task.get("data", {}), dict):
        return "'data' an object", kind(task["data"])
    for key in ("clip_id", "task_key", "expression"):
        value = (task.get("data") or {}).get(key)
        if value is not None and not isinstance(value, str):
            return f"data.{key} a string", kind(value)
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        return "'annotations' a list", kind(annotations)
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            return f"annotations[{i}] an object", kind(ann)
        results = ann.get("result") or []
        if not isinstance(results, list):
            return f"annotations[{i}].result a list", kind(results)
        for j, result in enumerate(results):
            where = f"annotations[{i}].result[{j}]"
            if not isinstance(result, dict):
                return f"{where} an object", kind(result)
            value = result.get("value") or {}
            if not isinstance(value, dict):
                return f"{where}.value an object", kind(value)
            for key in ("text", "choices"):
                if key in value and not isinstance(value[key], list):
                    return f"{where}.value.{key} a list", kind(value[key])
                wrong = [v for v in value.get(key) or [] if not isinstance(v, str)]
                if wrong:
                    return f"{where}.value.{key} a list of strings", f"{kind(wrong[0])} {str(wrong[0])[:40]}"
            for key in ("id", "from_name"):
                if key in result and not isinstance(result[key], (str, int)) or isinstance(result.get(key), bool):
                    return f"{where}.{key} a string", kind(result[key])
    return None


def guess_stage(tasks: list[dict]) -> str:
    """'verify' if the tasks carry an expression to check, else 'describe'."""
    data = (tasks[0].get("data") if tasks else None) or {}
    return "verify" if isinstance(data, dict) and "expression" in data else "describe"
