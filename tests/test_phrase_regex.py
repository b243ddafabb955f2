"""The phrase compiler behind the rule reader's data: expansion, longest-first, payloads, boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor.phrase_regex import PhraseRegex, expand_leading, literal


def test_leading_groups_are_spelled_out() -> None:
    assert expand_leading("((is|are) )?not (seen|found)") == [
        "is not (seen|found)",
        "are not (seen|found)",
        "not (seen|found)",
    ]
    assert expand_leading("no") == ["no"]
    assert expand_leading("and (?=there)") == ["and (?=there)"]


def test_longest_phrase_wins_and_payload_names_it() -> None:
    rx = PhraseRegex([("no", "neg"), ("no longer", "resolved"), ("(is|are)? not seen", "back")])
    assert rx.finditer("no longer seen; effusion is not seen; no") == [
        (0, 9, "resolved"),
        (25, 36, "back"),
        (38, 40, "neg"),
    ]


def test_words_are_whole_and_spaces_are_any_whitespace() -> None:
    rx = PhraseRegex([("no", 1), ("free of", 2)])
    assert rx.finditer("nodule; noted; free\n  of; no") == [(15, 24, 2), (26, 28, 1)]


def test_raw_patterns_and_punctuation_heads() -> None:
    rx = PhraseRegex([(", and", "t"), ("and (?=there)", "t2")], raw=[(r"\.(?!\d)", "end")])
    assert rx.finditer("a 1.5 cm nodule, and there. x") == [(15, 20, "t"), (26, 27, "end")]
    assert rx.finditer("y and there") == [(2, 6, "t2")]


def test_a_phrase_that_matches_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        PhraseRegex([("(a|b)?", 1)])


@given(st.lists(st.text(alphabet="abc .-/'()|?*+[]\\{}^$", min_size=1, max_size=8), min_size=1, max_size=6))
def test_literal_phrases_match_exactly_themselves(words: list[str]) -> None:
    """Vocabulary terms go through `literal`: whatever their characters, each matches its own text."""
    words = [w for w in (" ".join(w.split()) for w in words) if w and w[0].isalnum() and w[-1].isalnum()]
    if not words:
        return
    rx = PhraseRegex([(literal(w), w) for w in words])
    for w in words:
        found = rx.finditer(w)
        assert found and found[0][0] == 0, (w, found, rx.pattern.pattern)
        start, end, phrase = found[0]
        assert w[start:end] == phrase  # what matched is the phrase its payload names, character for character
