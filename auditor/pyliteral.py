"""Model answers written as Python literals instead of JSON, read safely.

Language models trained on code often answer ``[{'label': 'nodule_mass', 'box_2d': [0.1, 0.2, 0.3,
0.4]},]`` or ``{"label": "x", "box": None}``: single quotes, trailing commas, ``None``/``True``/``False``,
sometimes mixed with JSON's ``null``/``true``/``false``. These are not JSON, but their meaning is not in
doubt, so recovery reads them (with a note) instead of failing the generation.

Only ``ast.literal_eval`` is used: it evaluates literals and nothing else, so no model output can run
code. JSON's keywords are rewritten outside strings before evaluation. Pure logic, no I/O.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterator
from typing import Final

_KEYWORDS: Final = {"true": "True", "false": "False", "null": "None"}
_WORD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPENERS: Final = "[{("
_CLOSERS: Final = "]})"
MAX_LITERAL_CHARS: Final = 100_000
"""Longer candidates are not evaluated: the parser's work and memory stay bounded."""


def read_literal(text: str) -> object | None:
    """The whole text as one list or dict literal (after rewriting JSON keywords), else None."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{" or len(stripped) > MAX_LITERAL_CHARS:
        return None
    source, end = _bracketed(stripped, 0, MAX_LITERAL_CHARS)
    if source is None or end != len(stripped):
        return None
    return _evaluate(source)


def literal_values(text: str, max_starts: int = 400) -> Iterator[tuple[object, int]]:
    """Every list or dict literal that starts at a bracket in ``text``, with its end offset; the
    insides of a value already read are skipped. Work is bounded: at most ``max_starts`` openers, and
    about four passes over the text in all, so nested unclosed brackets cannot make it quadratic."""
    budget = 4 * len(text) + 20_000
    pos = 0
    for _ in range(max_starts):
        starts = [i for i in (text.find("[", pos), text.find("{", pos)) if i >= 0]
        if not starts or budget <= 0:
            return
        start = min(starts)
        source, end = _bracketed(text, start, min(budget, MAX_LITERAL_CHARS))
        budget -= end - start
        value = _evaluate(source) if source is not None else None
        if value is not None:
            yield value, end
            pos = end
        else:
            pos = start + 1


def _evaluate(source: str) -> object | None:
    if len(source) > MAX_LITERAL_CHARS:
        return None
    try:
        with warnings.catch_warnings():  # an invalid escape such as '\d' would print a SyntaxWarning
            warnings.simplefilter("ignore")
            value = ast.literal_eval(source)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    value = _as_json_shapes(value)
    return value if isinstance(value, list | dict) else None


def _as_json_shapes(value: object) -> object:
    """Tuples become lists and sets stay out: what remains has JSON's shapes (literals are small and
    shallow here: the parser has already accepted them)."""
    if isinstance(value, tuple | list):
        return [_as_json_shapes(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_json_shapes(item) for key, item in value.items()}
    return value


def _bracketed(text: str, start: int, limit: int) -> tuple[str | None, int]:
    """From the opener at ``start`` to its matching closer, quote-aware, with JSON keywords rewritten
    outside strings: the rewritten source (None when it does not close within ``limit`` characters)
    and the offset where the scan stopped."""
    out: list[str] = []
    depth = 0
    quote: str | None = None
    i, n = start, len(text)
    while i < n and i - start <= limit:
        char = text[i]
        if quote is not None:
            if char == "\\" and i + 1 < n:
                out.append(text[i : i + 2])
                i += 2
                continue
            if char == quote:
                quote = None
            elif char == "\n":
                return None, i  # a string literal cannot span lines: this is not a literal
            out.append(char)
            i += 1
            continue
        if char in "'\"":
            quote = char
        elif char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth -= 1
            if depth == 0:
                out.append(char)
                return "".join(out), i + 1
        elif char.isalpha() or char == "_":
            word = _WORD.match(text, i)
            assert word is not None
            out.append(_KEYWORDS.get(word.group(), word.group()))
            i = word.end()
            continue
        out.append(char)
        i += 1
    return None, i
