"""Which verify tasks a push adds (pure: no server, no files).

One task is one *slot*: one verifier's answer for one expression at its current text.  An expression needs
``[annotation] verifiers_per_expression`` counted answers; a slot whose answer does not count (the describer
answered, a verifier whose honeypots fail, the same verifier twice) is replaced by a new slot on the next push, so a
wrong answerer never blocks the right one.  Honeypots are slots for expressions whose answer is already known (found
by two other verifiers, or the lead's gold file), mixed into the same push under the same kind of key.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from . import blind
from .checks import Rules, assess, finders, verify_answers


@dataclass
class VerifyPlan:
    tasks: list[tuple[str, dict]] = field(default_factory=list)     # (task key, map entry), in push order
    open: int = 0               # slots on the server still waiting for an answer
    unpulled: int = 0           # answered on the server but not pulled yet (counted as open)
    skipped: dict = field(default_factory=dict)
    honeypot_candidates: int = 0

    @property
    def work(self) -> int:
        return sum(e["kind"] == "work" for _, e in self.tasks)

    @property
    def honeypots(self) -> int:
        return len(self.tasks) - self.work


def _skip(plan: VerifyPlan, why: str) -> None:
    plan.skipped[why] = plan.skipped.get(why, 0) + 1


def _next_slots(key: bytes, iid: str, text: str, prefix: str, on_server: set[str], count: int) -> list[tuple[str, str]]:
    """``count`` (slot, task key) pairs for the instance and text that are not on the server yet."""
    out, n = [], 0
    while len(out) < count:
        slot = f"{prefix}{n}"
        task = blind.task_key(key, iid, text, slot)
        if task not in on_server:
            out.append((slot, task))
        n += 1
    return out


def make_entry(key: bytes, task: str, instance_id: str, text: str, slot: str, kind: str,
               person_ids: list[int]) -> dict:
    """The workspace's record of one verify task (its line in labelstudio/verify_tasks.json): what it asks about,
    its boxes' numbering and its picture's name, both drawn from the secret."""
    return {"instance_id": instance_id, "clip_id": instance_id.rsplit("___", 1)[0], "text": text, "slot": slot,
            "kind": kind, "box_numbers": blind.box_numbers(key, task, person_ids), "image": blind.image_name(key, task)}


def task_data(image_url: str, task: str, entry: dict) -> dict:
    """What a verify task carries to Label Studio, and all a verifier can read: the numbered picture, the
    expression, the opaque key and the numbers to pick from."""
    return {"image": image_url, "expression": entry["text"], "task_key": task,
            "options": [{"value": n} for n in sorted(entry["box_numbers"], key=int)] + [{"value": "none"}]}


def plan_verify(instances: list, rows: list[dict], server_tasks: list[dict], pulled: set[int], rules: Rules,
                key: bytes, *, mapping: dict[str, dict], share: float = 0.0, gold: dict[str, str] | None = None,
                resend: bool = False) -> VerifyPlan:
    """The verify tasks to add.  ``server_tasks``: the verify project's tasks (with ``data.task_key`` and
    ``total_annotations``); ``pulled``: the Label Studio task ids whose answers are in ``rows``; ``mapping``: the
    workspace's verify map, which says what each task on the server asks about."""
    plan = VerifyPlan()
    clips: dict[str, list[int]] = {}
    for inst in instances:
        clips.setdefault(inst.clip_id, []).append(inst.person_id)
    found = assess(instances, rows, rules) if rows else None        # one pass: statuses, primaries, verdicts
    status = {r["instance_id"]: r for r in found.rows} if found else {}
    primary, verdicts = (found.primary, found.verdicts) if found else ({}, {})
    on_server = {(t.get("data") or {}).get("task_key"): t for t in ([] if resend else server_tasks)}
    open_keys = set()                     # tasks on the server still waiting for an answer, or for a pull
    for task_key, task in on_server.items():
        answered = (task.get("total_annotations") or 0) - (task.get("cancelled_annotations") or 0) > 0
        if not answered or task.get("id") not in pulled:
            plan.unpulled += bool(answered)
            open_keys.add(task_key)
    waiting = Counter((mapping[k]["instance_id"], mapping[k]["text"]) for k in open_keys
                      if k in mapping and mapping[k].get("kind", "work") == "work")
    entries = []

    def entry(iid: str, text: str, slot: str, task: str, kind: str) -> dict:
        return make_entry(key, task, iid, text, slot, kind, clips.get(iid.rsplit("___", 1)[0], []))

    for iid, row in sorted(primary.items()):
        text = row["text"]
        if not text:
            continue
        state = status.get(iid, {}).get("status")
        if not resend and state != "pending_verification":
            _skip(plan, "failed a check or already verified at this text")
            continue
        if iid.rsplit("___", 1)[0] not in clips:
            _skip(plan, "no such instance")
            continue
        needed = rules.verifiers - (0 if resend else len(verdicts.get(iid, [])))
        open_slots = waiting[(iid, text)]
        plan.open += min(open_slots, needed)
        for slot, task in _next_slots(key, iid, text, "w", set(on_server), max(0, needed - open_slots)):
            entries.append((task, entry(iid, text, slot, task, "work")))
    # honeypots: known answers, as many as the share asks for among this push's tasks
    known: dict[str, tuple[str, str]] = {}
    for iid, who in finders(verify_answers(rows, primary)).items():
        if len(who) >= 2 and status.get(iid, {}).get("status") == "accepted":
            known[iid] = (primary[iid]["text"], "honeypot")
    for iid, text in (gold or {}).items():
        if iid.rsplit("___", 1)[0] in clips:
            known[iid] = (text, "gold")
    plan.honeypot_candidates = len(known)
    work = len(entries)
    wanted = round(work * share / (1 - share)) if work and share > 0 else 0
    for iid in blind.push_order(key, sorted(known))[:wanted]:
        text, kind = known[iid]
        (slot, task), = _next_slots(key, iid, text, "h", set(on_server), 1)
        entries.append((task, entry(iid, text, slot, task, kind)))
    if wanted > len(known):
        plan.skipped["honeypots wanted but no known answer (needs instances found by two verifiers, or a gold "
                     "file)"] = wanted - len(known)
    order = {task: n for n, task in enumerate(blind.push_order(key, [t for t, _ in entries]))}
    plan.tasks = sorted(entries, key=lambda te: order[te[0]])
    return plan
