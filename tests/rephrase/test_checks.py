"""The checks every rephrasing goes through."""
from __future__ import annotations

import pytest

from refava.rephrase.checks import check_rephrasing, clean_output

ORIGINAL = "the man in a grey vest on the left"


@pytest.mark.parametrize("candidate,expected", [
    ("the man on the left wearing a gray vest", []),
    ("on the left, a man with a grey vest", []),
    ("", ["empty output"]),
    ("The man in a grey vest on the left.", ["a copy of the input"]),
    ("the man in a grey vest on the right", ["position word lost: left", "position contradicted: left -> right"]),
    ("the woman in a grey vest on the left", ["gender changed"]),
    ("the person in a grey vest on the left", ["gender lost"]),
    ("the man in a blue vest on the left", ["colour lost: grey", "colour added: blue"]),
    ("the man on the left in a vest", ["colour lost: grey"]),
    ("the man walking on the left in a grey vest", ["action word(s): walking"]),
    ("Sure! The man on the left in grey.", ["a refusal or an explanation"]),
    ("I'm sorry, I can't rephrase that.", ["a refusal or an explanation"]),
    ("the man on the left. He wears a grey vest.", ["more than one sentence"]),
    ("man left", ["too short"]),
    ("the man on the left in a grey vest and glasses", ["attribute added: glasses"]),
    ("the man " + "who is very tall and " * 6 + "in a grey vest on the left", ["too long"]),
])
def test_checks(candidate, expected):
    assert_reasons(check_rephrasing(ORIGINAL, candidate), expected)


def assert_reasons(reasons: list[str], expected: list[str]) -> None:
    """No reason when none is expected; else every expected one begins some reason."""
    if not expected:
        assert reasons == []
    for part in expected:
        assert any(r.startswith(part) for r in reasons), (part, reasons)


def test_clean_output_takes_the_first_line_without_quotes_or_labels():
    assert clean_output(' "the man at left in grey"\nDescription: next') == "the man at left in grey"
    assert clean_output("1. the woman in red") == "the woman in red"
    assert clean_output("\n\n") == ""


@pytest.mark.parametrize("original, candidate, expected", [
    # the flawed rephrasings the embedded model produced on the sample (issue 19)
    ("the old woman in a red shirt on the far left", "on the left, the woman in a red shirt",
     ["age lost: old", "position modifier lost: far"]),
    ("the woman in a purple shirt in the middle", "in the middle, on the left, she is wearing a purple shirt",
     ["position added: left"]),
    ("the man in a blue shirt in the middle", "on the middle, the man in a blue shirt", ["ungrammatical: 'on the middle'"]),
    ("the old woman in a red shirt on the far left", "on the far left, the elderly woman in a red shirt", []),
    ("the young man in a white coat", "the old man in a white coat", ["age changed"]),
    ("the man in a white coat", "the young man in a white coat", ["age added: young"]),
    ("the man second from the right", "the man on the right", ["position modifier lost: second"]),
    ("the old woman in a purple shirt in the middle", "in the middle, a young woman in an old purple shirt",
     ["age contradicted"]),
])
def test_attributes_positions_and_grammar(original, candidate, expected):
    assert_reasons(check_rephrasing(original, candidate), expected)


def test_duplicates_and_a_better_fit_for_someone_else_are_rejected():
    original = "the man in a grey vest on the left"
    assert check_rephrasing(original, "on the left, the man in a grey vest",
                            earlier=("On the left, the man in a grey vest.",))[-1].startswith("a duplicate")
    others = ("the man in a black suit on the left",)
    assert check_rephrasing(original, "on the left, the man in a grey vest", others=others) == []
    # nothing else is wrong with it: only the clip's other person shows that it describes someone else
    reasons = check_rephrasing("the tall man near the door", "the man close to the window",
                               others=("the man near the window",))
    assert reasons == ["fits another person of the clip better: 'the man near the window'"], reasons
    assert check_rephrasing("the tall man near the door", "the tall man by the door",
                            others=("the man near the window",)) == []


# the clip of the sample's test split: three people, one per position
CLIP = ("the old woman in a red shirt on the far left", "the old woman in a purple shirt in the middle",
        "the old man in a blue shirt on the far right")


@pytest.mark.parametrize("original, candidate, bad", [
    # the three that read badly and were accepted on the sample (issue 26)
    (CLIP[1], "at the middle, the old woman in a purple shirt", "at the middle"),
    (CLIP[0], "on the far left, a old woman in a red shirt", "a old"),
    (CLIP[0], "on the far left, the old woman in red shirt", "in red shirt"),
    (CLIP[2], "in the far right, the old man wearing a blue shirt", "in the far right"),
    (CLIP[1], "on the middle, the old woman in a purple shirt", "on the middle"),
    (CLIP[1], "in the middle, an old woman wearing an purple shirt", "an purple"),
    (CLIP[1], "the old lady in the middle on a purple shirt", "on a purple shirt"),
])
def test_phrases_that_read_badly_are_rejected(original, candidate, bad):
    others = tuple(c for c in CLIP if c != original)
    assert f"ungrammatical: '{bad}'" in check_rephrasing(original, candidate, others=others)


@pytest.mark.parametrize("candidate", ["in the middle, an old woman wearing a purple shirt",
                                       "the elderly woman in the centre, in a purple shirt",
                                       "the old woman in the middle, in purple",
                                       "in the middle, the old woman in an ugly purple shirt",
                                       "a usual sight: the old woman in a purple shirt in the middle"])
def test_fluent_rephrasings_pass_the_fluency_checks(candidate):
    assert check_rephrasing(CLIP[1], candidate, others=(CLIP[0], CLIP[2])) == []


def test_a_dropped_modifier_is_rejected_only_when_another_person_shares_the_position():
    shorter = "on the left, the old woman wearing a red shirt"
    # alone on the left of her clip: "on the left" still picks her out
    assert check_rephrasing(CLIP[0], shorter, others=CLIP[1:]) == []
    # with somebody else on the left, "far" is what tells them apart
    crowded = CLIP[1:] + ("the young man in a green shirt on the left",)
    reasons = check_rephrasing(CLIP[0], shorter, others=crowded)
    assert reasons == ["position modifier lost: far (another person of the clip is also left: "
                       "'the young man in a green shirt on the left')"], reasons
    # the clip not known: refused, as before
    assert check_rephrasing(CLIP[0], shorter) == ["position modifier lost: far"]


def test_reorderings_and_distinct_n():
    from refava.rephrase.checks import distinct_n, only_reorders

    assert only_reorders(CLIP[0], "on the far left, the old woman in a red shirt")
    assert only_reorders(CLIP[0], "on the far left, an old woman in a red shirt")
    assert not only_reorders(CLIP[0], "on the far left, the old woman wearing a red shirt")
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n([], 2) == 0.0
