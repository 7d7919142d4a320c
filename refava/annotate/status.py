"""``refava annotate status``: progress per stage, verification, agreement, honeypots, and per annotator what a
lead acts on; the lead's page."""
from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

from .checks import (HONEYPOT_KINDS, MAX_WORDS, MIN_WORDS, WAITING, Rules, counted_verdicts, find_action_words,
                     honeypot_scores, latest, primary_describe, tokens, untrusted, verify_answers)


def krippendorff_alpha(units: list[list]) -> float | None:
    """Krippendorff's alpha for nominal values: ``units`` holds, per item, the values its coders gave (items with
    fewer than two are not pairable).  None when nothing is pairable or every value is the same.

    >>> krippendorff_alpha([["a", "a"], ["b", "b"], ["a", "a"]])
    1.0
    >>> round(krippendorff_alpha([["a", "b"], ["a", "a"], ["b", "b"], ["b", "a"]]), 3)
    0.125
    """
    coincidences: Counter = Counter()
    for values in units:
        m = len(values)
        if m < 2:
            continue
        counts = Counter(values)
        for x in counts:
            for y in counts:
                coincidences[(x, y)] += counts[x] * (counts[y] - (x == y)) / (m - 1)
    totals: Counter = Counter()
    for (x, _), v in coincidences.items():
        totals[x] += v
    n = sum(totals.values())
    expected = sum(totals[x] * totals[y] for x in totals for y in totals if x != y)
    if n <= 1 or expected == 0:
        return None
    observed = sum(v for (x, y), v in coincidences.items() if x != y)
    return 1.0 - (n - 1) * observed / expected


def _agreement(answers: dict[str, dict[str, dict]], who: set[str] | None = None) -> dict:
    """Alpha and the share of agreeing pairs over the instances two or more of ``who`` answered; a value is the
    box picked (its person, or none)."""
    units, pairs, agree = [], 0, 0
    for iid, by in sorted(answers.items()):
        picks = [("none" if r["picked_person_id"] is None else r["picked_person_id"]) for v, r in sorted(by.items())
                 if who is None or v in who]
        if len(picks) < 2:
            continue
        units.append(picks)
        for x, y in combinations(picks, 2):
            pairs += 1
            agree += x == y
    alpha = krippendorff_alpha(units)
    return {"instances": len(units), "alpha": alpha, "pairs": pairs,
            "percent": agree / pairs if pairs else None}


def _person() -> dict:
    return {"describe": 0, "rejected": 0, "verify": 0, "verify_correct": 0, "self_verified": 0, "stale": 0,
            "described_verified": 0, "described_found": 0, "reasons": defaultdict(int)}


def _count_people(describe: dict, primary: dict, answers: dict, uncounted: dict, status: dict,
                  status_rows: list[dict]) -> dict[str, dict]:
    """Per annotator: expressions written and rejected, answers as verifier (counted, self, stale), how often others
    found the people they described, rejection reasons (faults of the expression only)."""
    people: dict[str, dict] = defaultdict(_person)
    for (iid, annotator), row in describe.items():
        entry = people[annotator]
        entry["describe"] += 1
        text = row["text"] or ""
        own = bool(find_action_words(text)) or not MIN_WORDS <= len(tokens(text)) <= MAX_WORDS
        inst_status = status.get(iid, {}).get("status")
        if own or (primary[iid]["annotator"] == annotator and inst_status in ("needs_revision", "conflict")) or \
                (primary[iid]["annotator"] != annotator and inst_status == "conflict"):
            entry["rejected"] += 1
    for iid, by in answers.items():                 # answers at the current text by someone other than the describer
        for verifier, row in by.items():
            found = row["picked_person_id"] == int(iid.rsplit("___", 1)[1])
            people[verifier]["verify"] += 1
            people[verifier]["verify_correct"] += found
            people[primary[iid]["annotator"]]["described_verified"] += 1
            people[primary[iid]["annotator"]]["described_found"] += found
    for why in uncounted.values():
        for reason in why:
            kind, rest = reason.split(":", 1)
            name = rest.strip().split(" ", 1)[0]
            if kind == "self_verified":
                people[name]["self_verified"] += 1
            elif kind == "stale_verification":
                people[name]["stale"] += 1
    for r in status_rows:
        if r["instance_id"] in primary:
            for reason in r["reasons"]:
                kind = reason.split(":", 1)[0]
                if kind not in WAITING:
                    people[primary[r["instance_id"]]["annotator"]]["reasons"][kind] += 1
    return people


def _annotator_rows(people: dict, scores: dict, blocked: dict, pairwise: dict) -> dict[str, dict]:
    annotators = {}
    for name, e in sorted(people.items()):
        pots = scores.get(name)
        with_others = [v for k, v in pairwise.items() if name in k.split(" / ") and v["instances"]]
        annotators[name] = {**e, "reasons": dict(sorted(e["reasons"].items())),
                            "rejection_rate": e["rejected"] / e["describe"] if e["describe"] else None,
                            "verify_accuracy": e["verify_correct"] / e["verify"] if e["verify"] else None,
                            "found_by_others": (e["described_found"] / e["described_verified"]
                                                if e["described_verified"] else None),
                            "honeypots": pots["answers"] if pots else 0,
                            "honeypot_accuracy": pots["accuracy"] if pots else None,
                            "trusted": name not in blocked,
                            "agreement_percent": (sum(v["percent"] * v["pairs"] for v in with_others) /
                                                  sum(v["pairs"] for v in with_others)) if with_others else None}
    return annotators


def _to_review(annotators: dict, blocked: dict) -> list[str]:
    """Verifiers failing honeypots; annotators under 80 % as verifiers or as describers (after 3 answers)."""
    weak = {n for n, a in annotators.items()
            if (a["verify_accuracy"] is not None and a["verify"] >= 3 and a["verify_accuracy"] < 0.8)
            or (a["found_by_others"] is not None and a["described_verified"] >= 3 and a["found_by_others"] < 0.8)}
    return sorted(set(blocked) | weak)


def annotation_status(instances, annotation_rows: list[dict], status_rows: list[dict],
                      rules: Rules | None = None) -> dict:
    """The figures of ``refava annotate status`` (reports/annotate-status.json)."""
    rules = rules or Rules()
    total = len(instances)
    describe = latest([r for r in annotation_rows if r["stage"] == "describe"])
    described = {iid for iid, _ in describe}
    primary = primary_describe(annotation_rows)
    answers = verify_answers(annotation_rows, primary)
    verdicts, uncounted = counted_verdicts(annotation_rows, primary, rules)
    scores = honeypot_scores(annotation_rows, primary)
    blocked = untrusted(scores, rules)
    status = {r["instance_id"]: r for r in status_rows}
    counts: dict[str, int] = defaultdict(int)
    reasons: dict[str, int] = defaultdict(int)
    for r in status_rows:
        counts[r["status"]] += 1
        for reason in r["reasons"]:
            reasons[reason.split(":", 1)[0]] += 1
    multi = [iid for iid in described if len(status.get(iid, {}).get("annotators", [])) >= 2]
    agree = sum(status[iid]["status"] != "conflict" for iid in multi)
    verifiers = sorted({v for by in answers.values() for v in by})
    pairwise = {f"{a} / {b}": _agreement(answers, {a, b}) for a, b in combinations(verifiers, 2)}
    annotators = _annotator_rows(_count_people(describe, primary, answers, uncounted, status, status_rows), scores,
                                 blocked, pairwise)
    counted = [f for v in verdicts.values() for f in v]
    verified = sum(status.get(i, {}).get("verified") is not None for i in described)
    return {
        "instances": total,
        "rules": {"verifiers_per_expression": rules.verifiers, "consensus": rules.consensus,
                  "honeypot_min_answers": rules.honeypot_min_answers,
                  "honeypot_min_accuracy": rules.honeypot_min_accuracy},
        "progress": {"describe": {"done": len(described), "share": len(described) / total if total else 0.0},
                     "verify": {"done": verified, "share": verified / total if total else 0.0}},
        "verification_accuracy": sum(counted) / len(counted) if counted else None,
        "verifications": {"counted": len(counted), "found": sum(counted),
                          "self_verified": sum(a["self_verified"] for a in annotators.values()),
                          "stale": sum(a["stale"] for a in annotators.values()),
                          "untrusted": sum(r.startswith("untrusted_verifier") for w in uncounted.values() for r in w)},
        "agreement": {"instances_with_two_describers": len(multi),
                      "agreeing": agree, "rate": agree / len(multi) if multi else None,
                      "verifiers": {**_agreement(answers), "pairs_of_verifiers": pairwise}},
        "honeypots": {name: {**s, "trusted": name not in blocked} for name, s in scores.items()},
        "statuses": dict(sorted(counts.items())),
        "reasons": dict(sorted(reasons.items())),
        "annotators": annotators,
        "next": {
            "push_verify": sorted(r["instance_id"] for r in status_rows if r["status"] == "pending_verification"),
            "revise": sorted(r["instance_id"] for r in status_rows if r["status"] in ("needs_revision", "conflict")),
            "push_describe": sorted(r["instance_id"] for r in status_rows if r["status"] == "missing"),
            "review_annotators": _to_review(annotators, blocked)},
    }


def pct(v) -> str:
    """A share as a percentage with one decimal ('-' when there is none): 99.6 %, never a rounded 100 %."""
    return "-" if v is None else f"{100 * v:.1f} %"


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_status(report: dict) -> str:
    lines = [f"instances: {report['instances']}"]
    for stage, p in report["progress"].items():
        lines.append(f"  {stage:<9} {p['done']:>6} done ({pct(p['share'])})")
    v = report["verifications"]
    lines.append(f"verification: {pct(report['verification_accuracy'])} of {v['counted']} counted answers found the "
                 f"person; not counted: {v['self_verified']} by the describer, {v['stale']} of an earlier text, "
                 f"{v['untrusted']} by verifiers failing honeypots")
    a = report["agreement"]
    va = a["verifiers"]
    lines.append(f"agreement between verifiers: alpha {_num(va['alpha'])}, {pct(va['percent'])} of {va['pairs']} "
                 f"pairs agree, over {va['instances']} instances with two or more verifiers")
    for pair, x in va["pairs_of_verifiers"].items():
        if x["instances"]:
            lines.append(f"  {pair}: alpha {_num(x['alpha'])}, {pct(x['percent'])} of {x['instances']} instances")
    lines.append(f"agreement between describers: {pct(a['rate'])} of {a['instances_with_two_describers']} instances")
    if report["honeypots"]:
        lines.append("honeypots: " + ", ".join(f"{n} {pct(s['accuracy'])} of {s['answers']}"
                                               + ("" if s["trusted"] else " (answers not counted)")
                                               for n, s in report["honeypots"].items()))
    else:
        lines.append("honeypots: none answered yet")
    lines.append("statuses: " + ", ".join(f"{k} {v}" for k, v in report["statuses"].items()))
    if report["reasons"]:
        lines.append("reasons:  " + ", ".join(f"{k} {v}" for k, v in report["reasons"].items()))
    lines.append("")
    lines.append(f"{'annotator':<28} {'written':>7} {'found':>8} {'rejected':>9} {'verified':>8} {'correct':>8} "
                 f"{'self':>5} {'honeypot':>9} {'agree':>8}")
    for name, e in report["annotators"].items():
        lines.append(f"{name:<28} {e['describe']:>7} {pct(e['found_by_others']):>8} {pct(e['rejection_rate']):>9} "
                     f"{e['verify']:>8} {pct(e['verify_accuracy']):>8} {e['self_verified']:>5} "
                     f"{pct(e['honeypot_accuracy']):>9} {pct(e['agreement_percent']):>8}")
    lines.append("found: how often another annotator found the people this one described; self: answers to their own "
                 "expressions (never counted)")
    n = report["next"]
    lines.append("")
    lines.append("next:")
    lines.append(f"  {len(n['push_verify'])} expressions wait for verifiers: `refava annotate push --stage verify`")
    lines.append(f"  {len(n['revise'])} expressions need revision, {len(n['push_describe'])} people are undescribed: "
                 f"`refava annotate push --stage describe`")
    if n["review_annotators"]:
        lines.append("  review these annotators (honeypots, accuracy or how often others find their people below "
                     "80 %): " + ", ".join(n["review_annotators"]))
    return "\n".join(lines)


def failed_verifications(annotation_rows: list[dict], status_rows: list[dict]) -> list[dict]:
    """The answers by someone other than the describer that picked another box (or none) for the current text of an
    instance (:func:`verify_answers`), then the missed honeypots (``kind``); ``picked`` is the box number the verifier
    clicked."""
    primary = primary_describe(annotation_rows)

    def failure(iid: str, verifier: str, row: dict, text: str, kind: str) -> dict:
        return {"instance_id": iid, "clip_id": iid.rsplit("___", 1)[0], "text": text,
                "describer": primary.get(iid, {}).get("annotator", "-"), "verifier": verifier,
                "picked": row["picked"], "picked_person_id": row["picked_person_id"], "kind": kind}

    out = [failure(iid, verifier, row, primary[iid]["text"], "work")
           for iid, by in verify_answers(annotation_rows, primary).items() for verifier, row in by.items()
           if row["picked_person_id"] != int(iid.rsplit("___", 1)[1])]
    honeypots = latest([r for r in annotation_rows if r["stage"] == "verify" and r.get("task_kind") in HONEYPOT_KINDS])
    out += [failure(iid, verifier, row, row["text"], row["task_kind"])
            for (iid, verifier), row in sorted(honeypots.items())
            if row["text"] and verifier != primary.get(iid, {}).get("annotator")
            and row["picked_person_id"] != int(iid.rsplit("___", 1)[1])]
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

    rows = []
    for name, a in report["annotators"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in a["reasons"].items()) or "-"
        honeypot = "-" if a["honeypot_accuracy"] is None else f"{pct(a['honeypot_accuracy'])} of {a['honeypots']}" + \
            ("" if a["trusted"] else " (not counted)")
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{a['describe']}</td><td>{pct(a['found_by_others'])} of "
                    f"{a['described_verified']}</td><td>{pct(a['rejection_rate'])}</td><td>{html.escape(reasons)}</td>"
                    f"<td>{pct(a['verify_accuracy'])} of {a['verify']}</td><td>{a['self_verified']}</td>"
                    f"<td>{html.escape(honeypot)}</td><td>{pct(a['agreement_percent'])}</td></tr>")
    nxt = report["next"]
    todo = [f"<li>{len(nxt['push_verify'])} expressions wait for verifiers: <code>refava annotate push --stage "
            f"verify</code></li>",
            f"<li>{len(nxt['revise'])} expressions need revision and {len(nxt['push_describe'])} people are "
            f"undescribed: <code>refava annotate push --stage describe</code></li>"]
    if nxt["review_annotators"]:
        todo.append("<li>review these annotators: " + ", ".join(html.escape(n) for n in nxt["review_annotators"])
                    + "</li>")
    va = report["agreement"]["verifiers"]
    v = report["verifications"]
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
        chose = "none of the boxes" if f["picked_person_id"] is None else \
            f"box {f['picked']} (person {f['picked_person_id']})"
        kind = "" if f["kind"] == "work" else f" [{f['kind']}]"
        cards.append(f'<figure>{img}<figcaption><b>{html.escape(f["text"])}</b>{kind}<br>'
                     f'{html.escape(f["instance_id"])}: described by {html.escape(f["describer"])}, '
                     f'{html.escape(f["verifier"])} chose {html.escape(chose)}</figcaption></figure>')
    return "\n".join([
        "<!doctype html><html><head><meta charset='utf-8'><title>RefAVA annotation: the lead's view</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 8px}figure{display:inline-block;margin:8px;max-width:420px}img{max-width:420px}</style></head>",
        "<body><h1>RefAVA annotation: the lead's view</h1>",
        f"<p>{report['instances']} instances; statuses: "
        + ", ".join(f"{k} {n}" for k, n in report["statuses"].items()) + "</p>",
        f"<p>Verification: {pct(report['verification_accuracy'])} of {v['counted']} counted answers found the person; "
        f"not counted: {v['self_verified']} self-verifications (the describer answering), {v['stale']} of an "
        f"earlier text, {v['untrusted']} by verifiers failing honeypots. Agreement between verifiers: "
        f"Krippendorff's alpha {'-' if va['alpha'] is None else format(va['alpha'], '.3f')}, "
        f"{pct(va['percent'])} of {va['pairs']} pairs agree ({va['instances']} instances).</p>",
        "<h2>What to do next</h2><ul>", *todo, "</ul>",
        *(["<h2>Agreement per pair of verifiers</h2><table><tr><th>verifiers</th><th>instances both answered</th>"
           "<th>Krippendorff's alpha</th><th>agreeing</th></tr>"]
          + [f"<tr><td>{html.escape(pair)}</td><td>{x['instances']}</td>"
             f"<td>{'-' if x['alpha'] is None else format(x['alpha'], '.3f')}</td><td>{pct(x['percent'])}</td></tr>"
             for pair, x in va["pairs_of_verifiers"].items() if x["instances"]] + ["</table>"]
          if any(x["instances"] for x in va["pairs_of_verifiers"].values()) else []),
        "<h2>Annotators</h2><table><tr><th>annotator</th><th>expressions written</th><th>their people found by "
        "others</th><th>rejected</th><th>rejection reasons</th><th>as verifier: correct</th>"
        "<th>self-verifications (not counted)</th><th>honeypots found</th><th>agrees with other verifiers</th></tr>",
        *rows, "</table>",
        f"<h2>Failed verifications ({len(failures)})</h2>",
        "<p>Green: the person the expression was written for. Red: the box the verifier chose.</p>",
        *cards, "</body></html>"])
