"""Per-instance checks of referring expressions: action words, length, duplicates within a clip, verification,
flags, and disagreement between two describers."""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

from ..summary import Summary

MIN_WORDS, MAX_WORDS = 3, 25
GENDER = {"man": "m", "men": "m", "boy": "m", "gentleman": "m", "male": "m", "he": "m", "guy": "m",
          "woman": "f", "women": "f", "girl": "f", "lady": "f", "female": "f", "she": "f"}
POSITION_OPPOSITES = {"left": "right", "right": "left", "front": "back", "back": "front", "top": "bottom",
                      "bottom": "top", "foreground": "background", "background": "foreground"}
# Base forms that are also everyday nouns or adjectives in descriptions ("a white dress", "a watch", "close to
# the door"): only their verb inflections count as action words.
AMBIGUOUS = {"dress", "watch", "close", "open", "point", "press", "cook", "paint", "row", "drink", "text", "play",
             "work", "turn", "stand", "fall", "kiss", "hug", "ride", "shoot", "smoke", "touch", "answer", "exit",
             "lift", "cut", "hit", "kick", "catch", "sail", "swim", "dance", "fight", "push", "pull", "put",
             "take", "give", "grab", "wave", "clap", "shake", "read", "write", "listen", "throw", "lie", "get",
             "run", "walk", "jump", "chop", "dig", "stir", "shovel", "brush", "sing", "talk", "eat",
             "bow", "hand", "look", "smile", "hold", "carry"}
IRREGULAR = {"sit": ["sat"], "stand": ["stood"], "run": ["ran"], "lie": ["lay", "lain", "lying"], "get": ["got"],
             "fall": ["fell", "fallen"], "eat": ["ate", "eaten"], "drink": ["drank", "drunk"], "ride": ["rode", "ridden"],
             "write": ["wrote", "written"], "take": ["took", "taken"], "give": ["gave", "given"], "throw": ["threw", "thrown"],
             "catch": ["caught"], "hold": ["held"], "fight": ["fought"], "swim": ["swam"], "sing": ["sang", "sung"],
             "shake": ["shook", "shaken"], "read": [], "cut": [], "hit": [], "put": [], "shoot": ["shot"],
             "dig": ["dug"], "drive": ["drove", "driven"], "sleep": ["slept"], "bend": ["bent"], "kneel": ["knelt"],
             "lead": ["led"], "leap": ["leapt"], "carry": ["carried", "carries"]}
EXTRA_VERBS = ["sleep", "hold", "leap", "kneel", "bow", "crouch", "talk", "look", "speak", "serve", "pick",
               "smile", "laugh", "cry", "stare", "gaze", "chat", "converse", "stroll", "jog", "sprint", "glance"]


def _verbs_from_name(name: str) -> list[str]:
    name = re.sub(r"\(.*?\)", " ", name.lower())
    words = []
    for part in re.split(r"[/,]", name):
        tokens = re.findall(r"[a-z]+", part)
        if tokens:
            words.append(tokens[0])   # the verb leads each AVA action name ("carry/hold", "talk to", ...)
    return words


def _inflections(verb: str) -> set[str]:
    forms = {verb + "s", verb + "es"}
    if verb.endswith("e") and not verb.endswith("ee"):
        forms |= {verb[:-1] + "ing", verb + "d"}
    elif re.match(r".*[^aeiou][aeiou][bdgklmnprt]$", verb) and len(verb) <= 4:
        forms |= {verb + verb[-1] + "ing", verb + verb[-1] + "ed", verb + "ing", verb + "ed"}
    elif verb.endswith("y") and len(verb) > 2 and verb[-2] not in "aeiou":
        forms |= {verb + "ing", verb[:-1] + "ied", verb[:-1] + "ies"}
    else:
        forms |= {verb + "ing", verb + "ed"}
    forms |= set(IRREGULAR.get(verb, []))
    return forms


@lru_cache(maxsize=None)
def action_words(names: tuple[str, ...] | None = None) -> frozenset[str]:
    """Words that name an action: the verbs of the 80 AVA action names and their verb forms.

    >>> {"walking", "sitting", "talks", "sat"} <= action_words()
    True
    >>> "dress" in action_words(), "dressing" in action_words()
    (False, True)
    """
    if names is None:
        from ..ava import default_label_map

        names = tuple(c.name for c in default_label_map().values())
    verbs = {v for name in names for v in _verbs_from_name(name)} | set(EXTRA_VERBS)
    words: set[str] = set()
    for verb in verbs:
        if verb not in AMBIGUOUS:
            words.add(verb)
        words |= _inflections(verb)
    words |= {"dancer", "runner", "walker", "swimmer", "smoker", "driver", "reader", "singer"}
    return frozenset(words)


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def normalise(text: str) -> str:
    """Lower case, letters only, no leading article: duplicates are compared in this form."""
    words = tokens(text)
    while words and words[0] in ("the", "a", "an", "this", "that"):
        words = words[1:]
    return " ".join(words)


def find_action_words(text: str) -> list[str]:
    vocab = action_words()
    return sorted({w for w in tokens(text) if w in vocab})


def _content(text: str) -> set[str]:
    stop = {"the", "a", "an", "in", "on", "with", "and", "of", "to", "at", "is", "who", "wearing", "person"}
    return {w for w in tokens(text) if w not in stop}


def _similarity(a: str, b: str) -> float:
    x, y = _content(a), _content(b)
    return len(x & y) / len(x | y) if x | y else 0.0


def contradiction(a: str, b: str) -> str | None:
    """A reason if two expressions cannot describe the same person (gender or opposite positions), else None."""
    ga = {GENDER[w] for w in tokens(a) if w in GENDER}
    gb = {GENDER[w] for w in tokens(b) if w in GENDER}
    if len(ga) == 1 and len(gb) == 1 and ga != gb:
        return "gender differs"
    ta, tb = set(tokens(a)), set(tokens(b))
    for word, opposite in POSITION_OPPOSITES.items():
        if word in ta and opposite in tb and opposite not in ta and word not in tb:
            return f"'{word}' vs '{opposite}'"
    return None


def latest(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """The latest answer per (instance, annotator) (a later import or pull replaces an earlier answer)."""
    out: dict[tuple[str, str], dict] = {}
    for row in sorted(rows, key=lambda r: (r["version"], r["created_at"], r["annotation_id"])):
        out[(row["instance_id"], row["annotator"])] = row
    return out


@dataclass(frozen=True)
class Rules:
    """How verify answers become a verdict ([annotation] of refava.toml)."""

    verifiers: int = 1                  # distinct verifiers (never the describer) who must answer
    consensus: str = "unanimous"        # every answer must find the person, or a majority of ``verifiers``
    honeypot_min_answers: int = 3       # honeypot answers before a verifier's accuracy is judged
    honeypot_min_accuracy: float = 0.8  # below this, the verifier's answers do not count

    @classmethod
    def from_config(cls, config: dict) -> "Rules":
        a = config.get("annotation", {})
        return cls(int(a.get("verifiers_per_expression", 1)), str(a.get("consensus", "unanimous")),
                   int(a.get("honeypot_min_answers", 3)), float(a.get("honeypot_min_accuracy", 0.8)))


HONEYPOT_KINDS = ("honeypot", "gold")
# reasons that say why answers in hand do not count (yet): not a fault of the expression
WAITING = ("self_verified", "stale_verification", "untrusted_verifier", "awaiting_verifiers")


def _person(iid: str) -> int:
    return int(iid.rsplit("___", 1)[1])


def primary_describe(annotation_rows: list[dict]) -> dict[str, dict]:
    """The describe answer that counts per instance: the earliest describer's latest answer."""
    describe = latest([r for r in annotation_rows if r["stage"] == "describe"])
    out: dict[str, dict] = {}
    for (iid, _), row in sorted(describe.items(), key=lambda kv: (kv[1]["created_at"], kv[0][1])):
        out.setdefault(iid, row)
    return out


def honeypot_scores(annotation_rows: list[dict], primary: dict[str, dict] | None = None) -> dict[str, dict]:
    """{verifier: {answers, correct, accuracy}} over the honeypot tasks they answered whose answer is known
    without them: a gold answer, or an instance that at least two other verifiers found at its current text."""
    primary = primary_describe(annotation_rows) if primary is None else primary
    found = finders(verify_answers(annotation_rows, primary))
    scores: dict[str, dict] = defaultdict(lambda: {"answers": 0, "correct": 0})
    for (iid, verifier), row in sorted(latest([r for r in annotation_rows if r["stage"] == "verify"
                                               and r.get("task_kind") in HONEYPOT_KINDS]).items()):
        if row["task_kind"] == "honeypot" and len(found.get(iid, set()) - {verifier}) < 2:
            continue                                       # the known answer leans on this verifier's own work
        if verifier == primary.get(iid, {}).get("annotator"):
            continue                                       # they wrote it: no test of finding
        scores[verifier]["answers"] += 1
        scores[verifier]["correct"] += row["picked_person_id"] == _person(iid)
    return {v: {**s, "accuracy": s["correct"] / s["answers"]} for v, s in sorted(scores.items())}


def untrusted(scores: dict[str, dict], rules: Rules) -> dict[str, dict]:
    """The verifiers whose honeypot accuracy is below the rule after enough honeypot answers."""
    return {v: s for v, s in scores.items()
            if s["answers"] >= rules.honeypot_min_answers and s["accuracy"] < rules.honeypot_min_accuracy}


def verify_answers(annotation_rows: list[dict], primary: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """{instance: {verifier: answer}} of the work (non-honeypot) verify answers at the instance's current text by
    someone other than its describer: the answers agreement is measured on."""
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for (iid, verifier), row in sorted(latest([r for r in annotation_rows if r["stage"] == "verify" and
                                               r.get("task_kind") not in HONEYPOT_KINDS]).items()):
        current = primary.get(iid)
        if current and current["text"] and row["text"] and normalise(row["text"]) == normalise(current["text"]) \
                and verifier != current["annotator"]:
            out[iid][verifier] = row
    return out


def finders(answers: dict[str, dict[str, dict]]) -> dict[str, set[str]]:
    """{instance: the verifiers whose answer found its person}, from :func:`verify_answers`."""
    return {iid: {v for v, r in by.items() if r["picked_person_id"] == _person(iid)} for iid, by in answers.items()}


def _verdict(found: list[bool], rules: Rules) -> bool | None:
    """True/False once the answers decide under the rule, None while more are needed."""
    need = rules.verifiers
    if rules.consensus == "majority":
        majority = need // 2 + 1
        if sum(found) >= majority:
            return True
        if len(found) - sum(found) > need - majority:
            return False
        return None
    if not all(found):
        return False
    return True if len(found) >= need else None


def counted_verdicts(annotation_rows: list[dict], primary: dict[str, dict], rules: Rules):
    """({instance: [found?]}, {instance: [why an answer does not count]}): a verification counts only for the text
    it checked, only by someone other than that text's describer, and only by a verifier whose honeypot answers
    hold up."""
    blocked = untrusted(honeypot_scores(annotation_rows, primary), rules)
    verdicts: dict[str, list[bool]] = defaultdict(list)
    uncounted: dict[str, list[str]] = defaultdict(list)
    work = latest([r for r in annotation_rows if r["stage"] == "verify" and r.get("task_kind") not in HONEYPOT_KINDS])
    for (iid, verifier), row in sorted(work.items()):
        current = primary.get(iid)
        if current is None or not current["text"]:
            continue
        if row["text"] is None or normalise(row["text"]) != normalise(current["text"]):
            uncounted[iid].append(f"stale_verification: {verifier} checked an earlier text")
        elif verifier == current["annotator"]:
            uncounted[iid].append(f"self_verified: {verifier} wrote the expression")
        elif verifier in blocked:
            s = blocked[verifier]
            uncounted[iid].append(f"untrusted_verifier: {verifier} found {100 * s['accuracy']:.1f} % of "
                                  f"{s['answers']} honeypots")
        else:
            verdicts[iid].append(row["picked_person_id"] == _person(iid))
    return verdicts, uncounted


@dataclass
class Assessment:
    """What the checks found: one status row per instance, and on the way the describe answer that counts per
    instance and the verifications that count (for the verify plan, which needs all three)."""
    rows: list[dict]
    primary: dict[str, dict]
    verdicts: dict[str, list[bool]]


def check_instances(instances, annotation_rows: list[dict], rules: Rules | None = None) -> list[dict]:
    """One status row per instance (see schemas/annotation_status.schema.json)."""
    return assess(instances, annotation_rows, rules).rows


def assess(instances, annotation_rows: list[dict], rules: Rules | None = None) -> Assessment:
    """:func:`check_instances`, with the primary answers and the counted verdicts it computed."""
    rules = rules or Rules()
    describe = latest([r for r in annotation_rows if r["stage"] == "describe"])
    by_instance: dict[str, list[dict]] = defaultdict(list)
    for (iid, _), row in describe.items():
        by_instance[iid].append(row)
    for rows in by_instance.values():
        rows.sort(key=lambda r: (r["created_at"], r["annotator"]))
    primary = {iid: rows[0] for iid, rows in by_instance.items()}
    verdicts, uncounted = counted_verdicts(annotation_rows, primary, rules)
    clip_texts: dict[str, dict[str, str]] = defaultdict(dict)
    for iid, row in primary.items():
        if row["text"]:
            clip_texts[row["clip_id"]][iid] = normalise(row["text"])

    out = []
    for inst in sorted(instances, key=lambda i: i.instance_id):
        iid = inst.instance_id
        rows = by_instance.get(iid, [])
        reasons: list[str] = []
        status = "missing"
        text = rows[0]["text"] if rows else None
        verified = None
        if rows:
            reasons += _text_reasons(text, clip_texts[inst.clip_id], iid)
            flags = sorted({f for r in rows for f in r["flags"]})
            if flags:
                reasons.append("flagged: " + ", ".join(flags))
            verified = _verdict(verdicts[iid], rules) if verdicts.get(iid) else None
            if verified is False:
                reasons.append("failed_verification")
            conflict = _conflict(inst, rows, primary)
            if conflict:
                reasons.append("conflict: " + conflict)
                status = "conflict"
            elif reasons:
                status = "needs_revision"
            elif verified is None:
                status = "pending_verification"
                if verdicts.get(iid):
                    reasons.append(f"awaiting_verifiers: {len(verdicts[iid])} of {rules.verifiers} answers")
                reasons.extend(uncounted.get(iid, []))     # why the answers in hand do not count
            else:
                status = "accepted"
        out.append({"instance_id": iid, "clip_id": inst.clip_id, "video_id": inst.video_id, "status": status,
                    "reasons": reasons, "expression": text, "annotators": sorted({r["annotator"] for r in rows}),
                    "verified": verified})
    return Assessment(out, primary, verdicts)


def _text_reasons(text: str | None, clip_texts: dict[str, str], iid: str) -> list[str]:
    """Why an expression cannot be accepted as written: none, action words, length, a twin in its clip."""
    if not text:
        return ["no_expression"]
    reasons = []
    words = find_action_words(text)
    if words:
        reasons.append("action_word: " + ", ".join(words))
    n = len(tokens(text))
    if n < MIN_WORDS:
        reasons.append(f"too_short: {n} words (at least {MIN_WORDS})")
    if n > MAX_WORDS:
        reasons.append(f"too_long: {n} words (at most {MAX_WORDS})")
    mine = clip_texts.get(iid)
    twins = sorted(o for o, t in clip_texts.items() if o != iid and t == mine)
    if twins:
        reasons.append("duplicate_in_clip: same as " + ", ".join(twins))
    return reasons


def _conflict(inst, rows: list[dict], primary: dict[str, dict]) -> str | None:
    if len(rows) < 2 or not rows[0]["text"]:
        return None
    first = rows[0]
    others_in_clip = {iid: r["text"] for iid, r in primary.items()
                      if r["clip_id"] == inst.clip_id and iid != inst.instance_id and r["text"]}
    for other in rows[1:]:
        if not other["text"]:
            continue
        reason = contradiction(first["text"], other["text"])
        if reason:
            return f"{first['annotator']} and {other['annotator']} disagree ({reason})"
        own = _similarity(first["text"], other["text"])
        for iid, text in others_in_clip.items():
            if _similarity(text, other["text"]) > own:
                return (f"{other['annotator']}'s expression fits {iid} better than {first['annotator']}'s "
                        f"description of this person")
    return None


def run(ws) -> Summary:
    """``refava annotate check``: a status per instance (see :func:`check_instances`) in
    tables/annotation_status.parquet; the summary lists every instance that needs work."""
    from ..errors import StageError
    from ..fsutil import sha256_file
    from ..records import Instances
    from ..tables import write_table
    from .io import read_annotations

    rows = read_annotations(ws.table("annotations"))
    if not rows:
        raise StageError("no annotations yet: run `refava annotate import FILE` (or push/pull) first")
    rules = Rules.from_config(ws.config)
    status = check_instances(list(Instances.from_parquet(ws.table("instances"))), rows, rules)
    write_table("annotation_status", status, ws.table("annotation_status"), provenance={
        "stage": "annotate check", "inputs": {n: sha256_file(ws.table(n)) for n in ("instances", "annotations")},
        **({"rules": vars(rules)} if rules != Rules() else {})})
    counts: dict[str, int] = {}
    for r in status:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines = ["annotate check: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) +
             f" -> {ws.table('annotation_status')}"]
    lines += [f"  {r['status']:<15} {r['instance_id']}: {'; '.join(r['reasons'])}" for r in status
              if r["status"] not in ("accepted", "missing", "pending_verification")]
    return Summary("annotate check", lines)
