"""``refava annotate status``: progress per stage, verification accuracy, agreement, rejection per annotator."""
from __future__ import annotations

from collections import defaultdict

from .checks import MAX_WORDS, MIN_WORDS, find_action_words, latest, tokens


def annotation_status(instances, annotation_rows: list[dict], status_rows: list[dict]) -> dict:
    total = len(instances)
    describe = latest([r for r in annotation_rows if r["stage"] == "describe"])
    verify = latest([r for r in annotation_rows if r["stage"] == "verify"])
    described = {iid for iid, _ in describe}
    verified = {iid for iid, _ in verify}
    correct = sum(r["picked_person_id"] == int(iid.rsplit("___", 1)[1]) for (iid, _), r in verify.items())
    status = {r["instance_id"]: r for r in status_rows}
    counts: dict[str, int] = defaultdict(int)
    for r in status_rows:
        counts[r["status"]] += 1
    multi = [iid for iid in described if len(status.get(iid, {}).get("annotators", [])) >= 2]
    agree = sum(status[iid]["status"] != "conflict" for iid in multi)

    primary: dict[str, str] = {}
    for (iid, annotator), row in sorted(describe.items(), key=lambda kv: (kv[1]["created_at"], kv[0][1])):
        primary.setdefault(iid, annotator)
    people: dict[str, dict] = defaultdict(lambda: {"describe": 0, "rejected": 0, "verify": 0, "verify_correct": 0})
    for (iid, annotator), row in describe.items():
        entry = people[annotator]
        entry["describe"] += 1
        text = row["text"] or ""
        own = bool(find_action_words(text)) or not MIN_WORDS <= len(tokens(text)) <= MAX_WORDS
        inst_status = status.get(iid, {}).get("status")
        if own or (primary[iid] == annotator and inst_status in ("needs_revision", "conflict")) or \
                (primary[iid] != annotator and inst_status == "conflict"):
            entry["rejected"] += 1
    for (iid, annotator), row in verify.items():
        people[annotator]["verify"] += 1
        people[annotator]["verify_correct"] += row["picked_person_id"] == int(iid.rsplit("___", 1)[1])
    annotators = {}
    for name, e in sorted(people.items()):
        annotators[name] = {**e, "rejection_rate": e["rejected"] / e["describe"] if e["describe"] else None,
                            "verify_accuracy": e["verify_correct"] / e["verify"] if e["verify"] else None}
    reasons: dict[str, int] = defaultdict(int)
    for r in status_rows:
        for reason in r["reasons"]:
            reasons[reason.split(":", 1)[0]] += 1
    return {
        "instances": total,
        "progress": {"describe": {"done": len(described), "share": len(described) / total if total else 0.0},
                     "verify": {"done": len(verified), "share": len(verified) / total if total else 0.0}},
        "verification_accuracy": correct / len(verify) if verify else None,
        "agreement": {"instances_with_two_describers": len(multi),
                      "agreeing": agree, "rate": agree / len(multi) if multi else None},
        "statuses": dict(sorted(counts.items())),
        "reasons": dict(sorted(reasons.items())),
        "annotators": annotators,
    }


def format_status(report: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:5.1f}%"

    lines = [f"instances: {report['instances']}"]
    for stage, p in report["progress"].items():
        lines.append(f"  {stage:<9} {p['done']:>6} done ({pct(p['share'])})")
    lines.append(f"verification accuracy: {pct(report['verification_accuracy'])}")
    a = report["agreement"]
    lines.append(f"agreement between describers: {pct(a['rate'])} of {a['instances_with_two_describers']} instances")
    lines.append("statuses: " + ", ".join(f"{k} {v}" for k, v in report["statuses"].items()))
    if report["reasons"]:
        lines.append("reasons:  " + ", ".join(f"{k} {v}" for k, v in report["reasons"].items()))
    lines.append("")
    lines.append(f"{'annotator':<30} {'describe':>8} {'rejected':>9} {'verify':>7} {'verify acc.':>11}")
    for name, e in report["annotators"].items():
        lines.append(f"{name:<30} {e['describe']:>8} {pct(e['rejection_rate']):>9} {e['verify']:>7} "
                     f"{pct(e['verify_accuracy']):>11}")
    return "\n".join(lines)
