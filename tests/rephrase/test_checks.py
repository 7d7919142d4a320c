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
    reasons = check_rephrasing(ORIGINAL, candidate)
    if not expected:
        assert reasons == []
    for part in expected:
        assert any(r.startswith(part) for r in reasons), (part, reasons)


def test_clean_output_takes_the_first_line_without_quotes_or_labels():
    assert clean_output(' "the man at left in grey"\nDescription: next') == "the man at left in grey"
    assert clean_output("1. the woman in red") == "the woman in red"
    assert clean_output("\n\n") == ""
