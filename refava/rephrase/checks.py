"""Checks on every rephrasing: a usable sentence that still picks out the same person.

``check_rephrasing(original, candidate)`` returns the reasons a candidate is rejected (empty when accepted):
empty, a copy, a refusal or an explanation instead of a sentence, more than one sentence, too short or too long,
action words (the annotation guidelines forbid them), and a changed referent: gender, position words and colour
words of the original must be kept and not contradicted (a small model was seen turning "on the left" into "on the
right"), and no clothing or feature may be added (it was also seen adding glasses).  Age words and the modifiers
of a position ("far left", "second from the right") must be kept, no position may be added, broken prepositions ("on
the middle") are refused, an instance's rephrasings must differ, and a rephrasing must fit its own person better
than any other person of the clip (the similarity ``annotate check`` uses for conflicting describers).
"""
from __future__ import annotations

import re

from ..annotate.checks import GENDER, _similarity, contradiction, find_action_words, normalise, tokens

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
AGE = {"old": "old", "elderly": "old", "aged": "old", "older": "old", "senior": "old", "young": "young",
       "younger": "young", "little": "young", "child": "young", "kid": "young", "teenage": "young",
       "teenager": "young", "boy": "young", "girl": "young", "baby": "young", "adult": "adult",
       "middle-aged": "adult"}
# words that sharpen a position: "far left" is not "left", "second from the right" not "right"
POSITION_MODIFIERS = {"far", "second", "third", "first", "last", "leftmost", "rightmost", "extreme", "very"}
# prepositions that do not go with a position word (a small model writes them; annotators do not)
UNGRAMMATICAL = re.compile(r"\b(on the (?:middle|centre|center)|in the (?:far )?(?:left|right)|at the (?:left|right))\b")
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


def check_rephrasing(original: str, candidate: str, *, raw: str | None = None, others: tuple[str, ...] = (),
                     earlier: tuple[str, ...] = ()) -> list[str]:
    """Reasons to reject ``candidate`` as a rephrasing of ``original`` (an empty list: accepted).

    ``others``: the expressions of the other people of the same clip (a rephrasing that fits one of them better
    than its own picks out someone else); ``earlier``: the instance's rephrasings accepted so far (no duplicates).
    """
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
    aa, ab = _groups(a, AGE), _groups(b, AGE)
    for age in sorted(aa - ab):
        reasons.append(f"age lost: {age}" if not ab else f"age changed: {sorted(aa)} -> {sorted(ab)}")
    for age in sorted(ab - aa):
        if aa:
            break                                    # reported as changed above
        reasons.append(f"age added: {age}")
    pa, pb = _groups(a, POSITION_GROUPS), _groups(b, POSITION_GROUPS)
    for word in sorted(pa - pb):
        reasons.append(f"position word lost: {word}")
    for word in sorted(pb - pa):
        if OPPOSITE.get(word) in pa:
            reasons.append(f"position contradicted: {OPPOSITE[word]} -> {word}")
        else:
            reasons.append(f"position added: {word}")
    ma, mb = set(a) & POSITION_MODIFIERS, set(b) & POSITION_MODIFIERS
    for word in sorted(ma - mb):
        reasons.append(f"position modifier lost: {word}")
    for word in sorted(mb - ma):
        reasons.append(f"position modifier added: {word}")
    bad = UNGRAMMATICAL.search(candidate.lower())
    if bad and not UNGRAMMATICAL.search(original.lower()):
        reasons.append(f"ungrammatical: '{bad.group(1)}'")
    added = sorted(set(b) & ATTRIBUTES - set(a))
    if added:
        reasons.append("attribute added: " + ", ".join(added))
    ca, cb = _groups(a, COLOURS), _groups(b, COLOURS)
    for colour in sorted(ca - cb):
        reasons.append(f"colour lost: {colour}")
    for colour in sorted(cb - ca):
        reasons.append(f"colour added: {colour}")
    if any(normalise(candidate) == normalise(e) for e in earlier):
        reasons.append("a duplicate of an earlier rephrasing of this expression")
    if others:
        own = _similarity(candidate, original)
        best = max(others, key=lambda o: _similarity(candidate, o))
        if _similarity(candidate, best) > own or (contradiction(candidate, original) and not contradiction(candidate, best)):
            reasons.append(f"fits another person of the clip better: '{best}'")
    return reasons
