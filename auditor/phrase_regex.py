"""Compile many data phrases into one fast regular expression that says which phrase matched.

The rule reader looks for a hundred or more cue and finding phrases in every draft. A plain alternation
of them makes the regex engine try every phrase at every position. Here the phrases are spelled out
so that each starts with a literal character, grouped under that character (a one-level trie, which
the engine skips in one comparison), and each ends in an empty group whose number names the phrase:
one pass over the text, ~10x faster than the alternation.

Phrase syntax (the reader's data): lower case; a space matches any run of whitespace; "(a|b)" and "?"
work as in regular expressions (groups need not be marked non-capturing, lookaheads "(?=" are kept);
every other character is literal, except in ``raw`` patterns. Word boundaries are added at both ends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


def literal(text: str) -> str:
    """A literal phrase in the phrase syntax (vocabulary terms): only the space stays special."""
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text)


def _top_level(text: str) -> list[tuple[int, str]]:
    """(index, char) of the characters at nesting depth 0, and of the parentheses that open or close it;
    escaped characters are skipped."""
    out: list[tuple[int, str]] = []
    depth, j = 0, 0
    while j < len(text):
        ch = text[j]
        if ch == "\\":
            j += 2
            continue
        if ch == ")":
            depth -= 1
        if depth == 0:
            out.append((j, ch))
        if ch == "(":
            depth += 1
        j += 1
    return out


def _close(text: str) -> int:
    """Index of the ")" closing the "(" that starts ``text``."""
    for j, ch in _top_level(text)[1:]:
        if ch == ")":
            return j
    raise ValueError(f"unbalanced parentheses in phrase {text!r}")


def _split_top(inner: str) -> list[str]:
    cuts = [j for j, ch in _top_level(inner) if ch == "|"]
    bounds = [-1, *cuts, len(inner)]
    return [inner[bounds[n] + 1 : bounds[n + 1]] for n in range(len(bounds) - 1)]


def expand_leading(phrase: str) -> list[str]:
    """The phrase's leading groups spelled out: "(is|are)? not" -> ["is not", "are not", "not"]."""
    if not phrase.startswith("(") or phrase.startswith("(?"):
        return [phrase]
    j = _close(phrase)
    inner, rest = phrase[1:j], phrase[j + 1 :]
    optional = rest.startswith("?")
    if optional:
        rest = rest[1:]
    out = [alt for part in _split_top(inner) for alt in expand_leading(part + rest)]
    if optional:
        out.extend(expand_leading(rest.lstrip()))
    return out


def _body(phrase: str) -> str:
    body = re.sub(r"(?<!\\)((?:\\\\)*)\((?!\?)", r"\1(?:", phrase).replace(" ", r"\s+")
    return body + r"\b"


def _head(alt: str) -> str:
    return alt[:2] if alt.startswith("\\") else alt[:1]


class PhraseRegex(Generic[T]):
    """One compiled regex over many phrases; `finditer` yields (start, end, payload) in text order,
    longest phrase first where several start at one place."""

    def __init__(self, phrases: Sequence[tuple[str, T]], raw: Sequence[tuple[str, T]] = ()) -> None:
        by_head: dict[str, list[tuple[str, T]]] = {}
        for phrase, payload in phrases:
            for alt in expand_leading(phrase):
                if not alt:
                    raise ValueError(f"phrase {phrase!r} can match the empty string")
                by_head.setdefault(_head(alt), []).append((alt, payload))
        parts = [f"(?:{pattern})()" for pattern, _ in raw]
        payloads: list[T | None] = [None, *(payload for _, payload in raw)]
        for is_word in (True, False):  # words behind one \b; then phrases that start with punctuation
            groups = []
            for head, alts in by_head.items():
                if head[-1].isalnum() != is_word:
                    continue
                alts.sort(key=lambda a: len(a[0]), reverse=True)
                groups.append(
                    head + "(?:" + "|".join(_body(alt[len(head) :]) + "()" for alt, _ in alts) + ")"
                )
                payloads.extend(payload for _, payload in alts)
            if is_word and groups:
                parts.append(r"\b(?:" + "|".join(groups) + ")")
            elif groups:
                parts.extend(groups)
        self.pattern = re.compile("|".join(parts))
        self._payloads = payloads

    def finditer(self, text: str) -> list[tuple[int, int, T]]:
        payloads = self._payloads
        return [
            (m.start(), m.end(), payloads[m.lastindex or 0])  # type: ignore[misc]
            for m in self.pattern.finditer(text)
        ]
