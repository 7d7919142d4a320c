"""Checks on every rephrasing: a usable sentence that still picks out the same person.

``check_rephrasing(original, candidate)`` returns the reasons a candidate is rejected (empty when accepted):
empty, a copy, a refusal or an explanation instead of a sentence, more than one sentence, too short or too long,
action words (the annotation guidelines forbid them), and a changed referent: gender, position words and colour
words of the original must be kept and not contradicted (a small model was seen turning "on the left" into "on the
right"), and no clothing or feature may be added (it was also seen adding glasses).
"""
from __future__ import annotations

import re

from ..annotate.checks import GENDER, find_action_words, normalise, tokens

POSITION_GROUPS = {
    "left": "left", "leftmost": "left", "right": "right", "rightmost": "right",
    "centre": "centre", "center": "centre", "middle": "centre", "central": "centre",
    "front": "front", "foreground": "front", "back": "back", "behind": "back", "background": "back",
    "rear": "back", "top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom",
}
OPPOSITE = {"left": "right", "right": "left", "front": "back", "back": "front", "top": "bottom", "bottom": "top"}
COLOURS = {
    "black": "black", "white": "white", "grey": "grey", "gray": "grey", "red": "red", "blue": "blue",
    "green": "green", "yellow": "yellow", "orange": "orange", "purple": "purple", "violet": "purple",
    "pink": "pink", "brown": "brown", "beige": "beige", "tan": "beige", "navy": "navy", "maroon": "maroon",
    "golden": "gold", "gold": "gold", "silver": "silver", "dark": "dark", "light": "light", "blond": "blond",
    "blonde": "blond", "khaki": "khaki", "turquoise": "turquoise", "teal": "turquoise",
}
# things a person wears or has: a rephrasing that adds one describes someone else (the few-shot model likes to)
ATTRIBUTES = {"glasses", "sunglasses", "hat", "cap", "beard", "moustache", "mustache", "tie", "scarf", "bag",
              "backpack", "jacket", "coat", "shirt", "dress", "skirt", "vest", "suit", "uniform", "helmet", "hood",
              "hoodie", "sweater", "jeans", "trousers", "pants", "shorts", "gloves", "earrings", "necklace",
              "watch", "apron", "ponytail", "bald", "hair", "beret", "turban", "veil", "mask", "sleeves"}
REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i cannot|i can't|as an ai|language model|here (is|are)|sure[,!]|certainly|"
    r"rephras|paraphras|original sentence|sentence:|expression:|note:|translation)", re.IGNORECASE)
MIN_WORDS = 3


def clean_output(text: str) -> str:
    """What is compared: first non-empty line, without surrounding quotes, bullets or a label."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    out = lines[0] if lines else ""
    out = re.sub(r"^(?:[-*\u2022]|\d+[.)])\s*", "", out)
    out = out.strip().strip("\"'\u201c\u201d\u2018\u2019`").strip()
    return out


def _groups(words: list[str], table: dict[str, str]) -> set[str]:
    return {table[w] for w in words if w in table}


def _sentences(text: str) -> int:
    body = re.sub(r"\b(mr|mrs|ms|dr|st|e\.g|i\.e)\.", "", text.strip().lower())
    parts = [p for p in re.split(r"[.!?;]+(?:\s|$)", body) if p.strip()]
    return max(1, len(parts))


def check_rephrasing(original: str, candidate: str, *, raw: str | None = None) -> list[str]:
    """Reasons to reject ``candidate`` as a rephrasing of ``original`` (an empty list: accepted)."""
    reasons = []
    if not candidate.strip():
        return ["empty output"]
    if normalise(candidate) == normalise(original):
        return ["a copy of the input"]
    if REFUSAL.search(candidate) or (raw is not None and REFUSAL.search(raw.splitlines()[0] if raw.strip() else "")):
        reasons.append("a refusal or an explanation, not a rephrasing")
    if _sentences(candidate) > 1:
        reasons.append("more than one sentence")
    n, m = len(tokens(candidate)), len(tokens(original))
    if n < max(MIN_WORDS, m // 2):
        reasons.append(f"too short: {n} words for {m}")
    if n > 2 * m + 6:
        reasons.append(f"too long: {n} words for {m}")
    actions = find_action_words(candidate)
    new_actions = [a for a in actions if a not in find_action_words(original)]
    if new_actions:
        reasons.append("action word(s): " + ", ".join(new_actions))
    a, b = tokens(original), tokens(candidate)
    ga, gb = {GENDER[w] for w in a if w in GENDER}, {GENDER[w] for w in b if w in GENDER}
    if ga and gb and ga != gb:
        reasons.append(f"gender changed: {sorted(ga)} -> {sorted(gb)}")
    elif len(ga) == 1 and not gb:
        reasons.append("gender lost")
    pa, pb = _groups(a, POSITION_GROUPS), _groups(b, POSITION_GROUPS)
    for word in sorted(pa - pb):
        reasons.append(f"position word lost: {word}")
    for word in sorted(pb):
        if OPPOSITE.get(word) in pa and word not in pa:
            reasons.append(f"position contradicted: {OPPOSITE[word]} -> {word}")
    added = sorted(set(b) & ATTRIBUTES - set(a))
    if added:
        reasons.append("attribute added: " + ", ".join(added))
    ca, cb = _groups(a, COLOURS), _groups(b, COLOURS)
    for colour in sorted(ca - cb):
        reasons.append(f"colour lost: {colour}")
    for colour in sorted(cb - ca):
        reasons.append(f"colour added: {colour}")
    return reasons
