"""Checks on every rephrasing: a usable sentence that still picks out the same person.

``check_rephrasing(original, candidate)`` returns the reasons a candidate is rejected (empty when accepted):
empty, a copy, a refusal or an explanation instead of a sentence, more than one sentence, too short or too long,
action words (the annotation guidelines forbid them), and a changed referent: gender, position words and colour
words of the original must be kept and not contradicted (a small model was seen turning "on the left" into "on the
right"), and no clothing or feature may be added (it was also seen adding glasses).  Age words must be kept; the
modifiers of a position ("far left", "second from the right") too when another person of the clip shares the position
(without it the phrase would fit them as well); no position may be added; phrases that read badly ("on the middle",
"a old woman", "in red shirt") are refused; an instance's rephrasings must differ, and a rephrasing must fit its own person better
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
UNGRAMMATICAL = re.compile(r"\b(on the (?:middle|centre|center)|at the middle|in the (?:far )?(?:left|right)|"
                           r"at the (?:left|right))\b")
# a singular garment needs its article: "in a red shirt", not "in red shirt" ("in red" and "in red trousers" are fine)
GARMENTS = ("shirt|t-shirt|jacket|coat|dress|skirt|vest|suit|hat|cap|sweater|hoodie|uniform|scarf|tie|blouse|top|"
            "jumper|cardigan|robe|gown|apron|helmet|beret")
BARE_GARMENT = re.compile(r"\b((?:in|with|wearing) (?:(?:dark|light|bright) )?(?:%s) (?:%s))\b" % (
    "|".join(sorted(set(COLOURS) - {"dark", "light"})), GARMENTS))
# a garment is worn "in" it, not "on" it ("the old lady on a purple shirt")
WORN_ON = re.compile(r"\b(on (?:a|an) (?:[a-z]+ )?(?:%s))\b" % GARMENTS)
# "a" before a vowel sound, "an" before a consonant one (the exceptions are the words that start otherwise)
ARTICLE = re.compile(r"\b(a (?!(?:uni|use|usu|one|once|eu|ewe|uti|ur))[aeiou][a-z]*|"
                     r"an (?!(?:hour|honest|honou?r|heir))[b-df-hj-np-tv-z][a-z]*)\b")
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


def fluency_problems(text: str) -> list[str]:
    """The phrases that read badly: a preposition that does not go with its position ("on the middle", "in the far
    left", "at the middle"), an article that does not agree ("a old woman"), a singular garment without its article
    ("in red shirt")."""
    low = text.lower()
    found = [m.group(1) for m in UNGRAMMATICAL.finditer(low)]
    found += [m.group(1) for m in ARTICLE.finditer(low)]
    found += [m.group(1) for m in BARE_GARMENT.finditer(low)]
    found += [m.group(1) for m in WORN_ON.finditer(low)]
    return found


def _shares_position(groups: set[str], others: tuple[str, ...] | None) -> str | None:
    """Another person's expression with one of these position words, which a position without its modifier ("left"
    for "far left") would then also fit; None when there is none (or when the clip is not known)."""
    for other in others or ():
        if groups & _groups(tokens(other), POSITION_GROUPS):
            return other
    return None


def only_reorders(original: str, candidate: str) -> bool:
    """The candidate uses exactly the source's words (articles aside), in another order: it says nothing new."""
    def bag(text: str) -> list[str]:
        return sorted(w for w in tokens(text) if w not in ("the", "a", "an"))
    return bag(original) == bag(candidate)


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct-n (Li et al., 2016): distinct n-grams over all n-grams of the texts (1.0: nothing repeats)."""
    grams = [tuple(words[i:i + n]) for words in (tokens(t) for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def check_rephrasing(original: str, candidate: str, *, raw: str | None = None, others: tuple[str, ...] | None = None,
                     earlier: tuple[str, ...] = ()) -> list[str]:
    """Reasons to reject ``candidate`` as a rephrasing of ``original`` (an empty list: accepted).

    ``others``: the expressions of the other people of the same clip (a rephrasing that fits one of them better
    than its own picks out someone else, and a position modifier may be dropped only when no other person shares
    the position); None when the clip is not known (a dropped modifier is then always refused);
    ``earlier``: the instance's rephrasings accepted so far (no duplicates).
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
        if aa - ab:
            break                                    # reported as changed above
        reasons.append(f"age added: {age}" if not aa else f"age contradicted: {sorted(aa)} and {age}")
    pa, pb = _groups(a, POSITION_GROUPS), _groups(b, POSITION_GROUPS)
    for word in sorted(pa - pb):
        reasons.append(f"position word lost: {word}")
    for word in sorted(pb - pa):
        if OPPOSITE.get(word) in pa:
            reasons.append(f"position contradicted: {OPPOSITE[word]} -> {word}")
        else:
            reasons.append(f"position added: {word}")
    ma, mb = set(a) & POSITION_MODIFIERS, set(b) & POSITION_MODIFIERS
    if ma - mb:
        sharer = _shares_position(pb, others)
        for word in sorted(ma - mb):
            if others is None:
                reasons.append(f"position modifier lost: {word}")
            elif sharer is not None:
                reasons.append(f"position modifier lost: {word} (another person of the clip is also "
                               f"{'/'.join(sorted(pb))}: '{sharer}')")
    for word in sorted(mb - ma):
        reasons.append(f"position modifier added: {word}")
    reasons += [f"ungrammatical: '{bad}'" for bad in fluency_problems(candidate) if bad not in fluency_problems(original)]
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
