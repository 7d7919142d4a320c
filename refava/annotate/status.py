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
    people: dict[str, dict] = defaultdict(lambda: {"describe": 0, "rejected": 0, "verify": 0, "verify_correct": 0,
                                                   "described_verified": 0, "described_found": 0,
                                                   "reasons": defaultdict(int)})
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
        found = row["picked_person_id"] == int(iid.rsplit("___", 1)[1])
        people[annotator]["verify"] += 1
        people[annotator]["verify_correct"] += found
        if iid in primary and primary[iid] != annotator:      # how well others find the people this one described
            people[primary[iid]]["described_verified"] += 1
            people[primary[iid]]["described_found"] += found
    for r in status_rows:
        if r["instance_id"] in primary:
            for reason in r["reasons"]:
                people[primary[r["instance_id"]]]["reasons"][reason.split(":", 1)[0]] += 1
    annotators = {}
    for name, e in sorted(people.items()):
        annotators[name] = {**e, "reasons": dict(sorted(e["reasons"].items())),
                            "rejection_rate": e["rejected"] / e["describe"] if e["describe"] else None,
                            "verify_accuracy": e["verify_correct"] / e["verify"] if e["verify"] else None,
                            "found_by_others": (e["described_found"] / e["described_verified"]
                                                if e["described_verified"] else None)}
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
    lines.append(f"{'annotator':<30} {'describe':>8} {'found':>6} {'rejected':>9} {'verify':>7} {'verify acc.':>11}")
    for name, e in report["annotators"].items():
        lines.append(f"{name:<30} {e['describe']:>8} {pct(e['found_by_others']):>6} {pct(e['rejection_rate']):>9} "
                     f"{e['verify']:>7} {pct(e['verify_accuracy']):>11}")
    lines.append("found: how often another annotator found the people this one described")
    return "\n".join(lines)


def failed_verifications(annotation_rows: list[dict], status_rows: list[dict]) -> list[dict]:
    """The verify answers that picked another box (or none) for the current text of an instance."""
    from .checks import normalise

    describe = latest([r for r in annotation_rows if r["stage"] == "describe"])
    primary: dict[str, dict] = {}
    for (iid, _), row in sorted(describe.items(), key=lambda kv: (kv[1]["created_at"], kv[0][1])):
        primary.setdefault(iid, row)
    out = []
    for (iid, verifier), row in sorted(latest([r for r in annotation_rows if r["stage"] == "verify"]).items()):
        text = primary.get(iid, {}).get("text")
        if text and row["text"] and normalise(row["text"]) == normalise(text) and \
                row["picked_person_id"] != int(iid.rsplit("___", 1)[1]):
            out.append({"instance_id": iid, "clip_id": iid.rsplit("___", 1)[0], "text": text,
                        "describer": primary[iid]["annotator"], "verifier": verifier,
                        "picked_person_id": row["picked_person_id"]})
    return out


def lead_report_html(ws, report: dict, failures: list[dict], instances) -> str:
    """One self-contained page for the annotation lead: per annotator what they wrote, how often others found their
    people, how they did as verifiers, why their expressions were rejected; and every failed verification drawn on
    its keyframe (green: the person meant; red: the box the verifier chose)."""
    import base64
    import html

    import cv2
    import numpy as np

    from ..framestore import DamagedFrameStoreError, clean_path, read_keyframes

    boxes = {i.instance_id: i.box_xyxy for i in instances}
    keyframes: dict[str, bytes] = {}
    for video_id in sorted({f["clip_id"].rsplit("___", 1)[0] for f in failures}):
        path = clean_path(ws.root, video_id)
        if path.exists():
            try:
                keyframes.update(read_keyframes(path))
            except DamagedFrameStoreError:
                pass                         # drawn without its keyframe, as a missing store is

    def pct(v):
        return "-" if v is None else f"{100 * v:.0f} %"

    rows = []
    for name, a in report["annotators"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in a["reasons"].items()) or "-"
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{a['describe']}</td><td>{pct(a['found_by_others'])} of "
                    f"{a['described_verified']}</td><td>{pct(a['verify_accuracy'])} of {a['verify']}</td>"
                    f"<td>{pct(a['rejection_rate'])}</td><td>{html.escape(reasons)}</td></tr>")
    cards = []
    for f in failures:
        data = keyframes.get(f["clip_id"])
        img = ""
        if data is not None:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            h, w = image.shape[:2]
            for iid, colour in ((f["instance_id"], (0, 200, 0)),
                                (f"{f['clip_id']}___{f['picked_person_id']}", (0, 0, 230))):
                if iid in boxes and (colour[1] or f["picked_person_id"] is not None):
                    x1, y1, x2, y2 = boxes[iid]
                    cv2.rectangle(image, (int(x1 * w), int(y1 * h)), (int(x2 * w), int(y2 * h)), colour, 3)
            encoded = base64.b64encode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1]).decode()
            img = f'<img src="data:image/jpeg;base64,{encoded}" alt="{html.escape(f["instance_id"])}">'
        chose = "none of the boxes" if f["picked_person_id"] is None else f"person {f['picked_person_id']}"
        cards.append(f'<figure>{img}<figcaption><b>{html.escape(f["text"])}</b><br>{html.escape(f["instance_id"])}: '
                     f'described by {html.escape(f["describer"])}, {html.escape(f["verifier"])} chose '
                     f'{chose}</figcaption></figure>')
    return "\n".join([
        "<!doctype html><html><head><meta charset='utf-8'><title>RefAVA annotation: the lead's view</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 8px}figure{display:inline-block;margin:8px;max-width:420px}img{max-width:420px}</style></head>",
        "<body><h1>RefAVA annotation: the lead's view</h1>",
        f"<p>{report['instances']} instances; statuses: "
        + ", ".join(f"{k} {v}" for k, v in report["statuses"].items()) + "</p>",
        "<h2>Annotators</h2><table><tr><th>annotator</th><th>expressions written</th><th>their people found by "
        "others</th><th>as verifier: correct</th><th>rejected</th><th>rejection reasons</th></tr>",
        *rows, "</table>",
        f"<h2>Failed verifications ({len(failures)})</h2>",
        "<p>Green: the person the expression was written for. Red: the box the verifier chose.</p>",
        *cards, "</body></html>"])
