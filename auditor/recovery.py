"""Model text -> typed findings or mentions, plus a note for every repair and every drop.

Models answer in bare JSON most of the time, and otherwise in fences, prose, reasoning traces,
truncated arrays, wrapper objects and off-vocabulary names. This module is the one place that turns
any of that into `auditor.schema` contracts. It never raises, never drops anything silently, and is
the only place where model-native box formats (MedGemma's ``[y0, x0, y1, x1]`` at scale 1 or 1000)
become normalised `Box` values. Pure logic: no I/O, no models, no randomness.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from pydantic import ValidationError

from auditor.labels import LABEL_RANK, Label, map_label
from auditor.pyliteral import literal_values, read_literal
from auditor.schema import (
    Box,
    DraftMention,
    ImageFinding,
    Integrity,
    Laterality,
    MentionStatus,
    Note,
    ParseOutcome,
)

Side = Literal["image", "draft"]

MAX_INPUT_CHARS: Final = 200_000
"""Longer generations are cut here (with a note): no sane answer is this long, and work stays bounded."""

MAX_JSON_STARTS: Final = 400
"""How many ``[``/``{`` positions the prose scan tries; a real answer is found long before this."""

_DEEP_FAILURE_COST: Final = 20_000
"""Work charged for a decode that fails without saying where (nesting too deep, huge integer)."""

DROP_CODES: Final[frozenset[str]] = frozenset(
    {
        "label_dropped",
        "label_unknown",
        "item_malformed",
        "no_finding_conflict",
        "duplicate_dropped",
        "status_unknown",
        "span_dropped",
    }
)
"""Codes that each account for exactly one input item that did not make it into the output."""

_LABEL_KEYS: Final = ("label", "finding", "name", "class")
_BOX_KEYS: Final = ("box_2d", "box", "bbox", "bounding_box")
_NAMED_BOX_KEYS: Final = (("x0", "y0", "x1", "y1"), ("xmin", "ymin", "xmax", "ymax"))
_WRAPPER_KEYS: Final = (
    "findings",
    "mentions",
    "labels",
    "results",
    "items",
    "predictions",
    "detections",
    "output",
    "answer",
)
_STATUS_KEYS: Final = ("status", "assertion", "polarity")
_SPAN_KEYS: Final = ("span", "text", "evidence")
_SIDE_KEYS: Final = ("laterality", "side")

_STATUS_EXACT: Final[dict[str, MentionStatus]] = {s: s for s in ("present", "absent", "uncertain")}
_STATUS_SYNONYMS: Final[dict[str, MentionStatus]] = {
    **{w: "present" for w in ("present", "positive", "pos", "yes", "true", "affirmed", "confirmed")},
    **{
        w: "absent"
        for w in ("absent", "negative", "neg", "no", "false", "denied", "negated", "not present", "ruled out")
    },
    **{
        w: "uncertain"
        for w in (
            "uncertain",
            "possible",
            "possibly",
            "probable",
            "probably",
            "likely",
            "hedged",
            "equivocal",
            "indeterminate",
            "questionable",
            "suspected",
            "maybe",
        )
    },
}
_LATERALITY: Final[dict[str, Laterality]] = {
    "left": "left",
    "right": "right",
    "bilateral": "bilateral",
    "both": "bilateral",
}

_DECODER: Final = json.JSONDecoder(strict=False)  # tolerate raw control characters inside strings
_THINK_TAG: Final = re.compile(r"<(/?)think\s*>", re.IGNORECASE)
_FINAL_ANSWER: Final = re.compile(r"final[ \t]+answer[\s*_]*:[ \t*_]*", re.IGNORECASE)
_WHOLE_FENCE: Final = re.compile(r"\s*```[\w-]*[^\S\n]*\n?(.*?)```\s*", re.DOTALL)
_FENCE: Final = re.compile(r"```[\w-]*[^\S\n]*\n?(.*?)```", re.DOTALL)
_OPENER: Final = re.compile(r"[\[{]")
_JSON_WS: Final = re.compile(r"[ \t\n\r]*")

_REPR: Final = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = 6
_REPR.maxdict = 6
_REPR.maxlevel = 3


@dataclass(frozen=True)
class BoxFormat:
    """How a model writes boxes: coordinate order and the value that means "the far edge".

    MedGemma is native ``[y0, x0, y1, x1]``; the fine-tune uses scale 1, base MedGemma 1.5 uses 1000.
    """

    order: Literal["yxyx", "xyxy"] = "yxyx"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.order not in ("yxyx", "xyxy"):
            raise ValueError(f"box order must be 'yxyx' or 'xyxy', got {self.order!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"box scale must be a positive number, got {self.scale!r}")


DEFAULT_BOX_FORMAT: Final = BoxFormat()


@dataclass(frozen=True)
class RecoveredFindings:
    """The image stage's parse: findings in canonical order, every repair and drop noted."""

    findings: list[ImageFinding]
    notes: list[Note]
    outcome: ParseOutcome


@dataclass(frozen=True)
class RecoveredMentions:
    """The draft stage's parse: verbatim-span mentions in draft order, every repair and drop noted."""

    mentions: list[DraftMention]
    notes: list[Note]
    outcome: ParseOutcome


# --- Public API -------------------------------------------------------------------------------------


def strip_reasoning(raw: str, *, stage: Side = "draft") -> tuple[str, list[Note]]:
    """Remove reasoning traces so only the answer is parsed.

    A closed ``<think>`` block at the start, or a lone ``</think>`` (the chat template opened the
    block in the prompt), is expected behaviour and gets no note; anything else that changes the text
    is noted, because it means the model did not answer in the expected form.
    """
    log = _Log(stage)
    text = _strip_final_answer(_strip_think(raw, log), log)
    return text, log.notes


def recover_findings(raw: object, box_format: BoxFormat = DEFAULT_BOX_FORMAT) -> RecoveredFindings:
    """Turn a grounding model's raw output into findings; never raises, whatever ``raw`` is."""
    log = _Log("image")
    try:
        return _recover_findings(raw, box_format, log)
    except Exception as exc:  # a parser must degrade to FAILED, never take the pipeline down
        log.add("output_unparseable", f"recovery stopped on {type(exc).__name__}; output not used")
        return RecoveredFindings([], log.notes, ParseOutcome.FAILED)


def recover_mentions(raw: object, draft: str) -> RecoveredMentions:
    """Turn a draft reader's raw output into mentions whose spans are verbatim slices of ``draft``."""
    log = _Log("draft")
    try:
        return _recover_mentions(raw, draft, log)
    except Exception as exc:  # a parser must degrade to FAILED, never take the pipeline down
        log.add("output_unparseable", f"recovery stopped on {type(exc).__name__}; output not used")
        return RecoveredMentions([], log.notes, ParseOutcome.FAILED)


def tally(outcomes: Iterable[ParseOutcome]) -> Integrity:
    """Count outcomes so clean + recovered + failed = total, by construction."""
    counts = dict.fromkeys(ParseOutcome, 0)
    for outcome in outcomes:
        counts[ParseOutcome(outcome)] += 1
    return Integrity(
        total=sum(counts.values()),
        clean=counts[ParseOutcome.CLEAN],
        recovered=counts[ParseOutcome.RECOVERED],
        failed=counts[ParseOutcome.FAILED],
    )


# --- Notes ------------------------------------------------------------------------------------------


@dataclass
class _Log:
    """Collects the notes of one recovery so no helper can forget its stage."""

    stage: Side
    notes: list[Note] = field(default_factory=list)

    def add(self, code: str, message: str) -> None:
        self.notes.append(Note(stage=self.stage, code=code, message=message))


def _brief(value: object) -> str:
    """A bounded repr for messages: model output can be huge or deeply nested."""
    return _REPR.repr(value)


# --- Reasoning traces -------------------------------------------------------------------------------


def _strip_think(text: str, log: _Log) -> str:
    """Drop closed think blocks; a lone close discards what precedes it; an open block is unusable."""
    tags = list(_THINK_TAG.finditer(text))
    if not tags:
        return text
    kept: list[str] = []
    pos = 0
    open_at: int | None = None
    for tag in tags:
        if tag.group(1) != "/":
            if open_at is None:
                kept.append(text[pos : tag.start()])
                open_at = tag.start()
        elif open_at is not None:
            open_at, pos = None, tag.end()
        else:
            kept, pos = [], tag.end()
    if open_at is not None:
        log.add("reasoning_unterminated", "a <think> block never closed; nothing after it was used")
        return "".join(kept)
    kept.append(text[pos:])
    if not _standard_think(text, tags):
        log.add("reasoning_stripped", f"removed {len(tags)} stray or repeated think tag(s) and their text")
    return "".join(kept)


def _standard_think(text: str, tags: list[re.Match[str]]) -> bool:
    """True for the two expected shapes: ``<think>..</think>answer`` and ``..</think>answer``."""
    kinds = [t.group(1) for t in tags]
    if kinds == ["/"]:
        return True
    return kinds == ["", "/"] and not text[: tags[0].start()].strip()


def _strip_final_answer(text: str, log: _Log) -> str:
    """Keep only what follows the last "Final Answer:" marker: the prose before it is reasoning."""
    markers = list(_FINAL_ANSWER.finditer(text))
    if not markers:
        return text
    log.add("reasoning_stripped", "kept only the text after the last 'Final Answer:'")
    return text[markers[-1].end() :]


# --- Finding the JSON -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Json:
    """One decoded JSON value (``None`` is a legal value, so absence is signalled by no _Json)."""

    value: object
    end: int = 0
    salvaged: bool = False


@dataclass(frozen=True)
class _Found:
    """The item list recovery will read, and whether it came from a bare document."""

    items: list[object]
    clean: bool


def _locate(raw: object, key: str, log: _Log) -> _Found | None:
    """Find the answer's item list in anything a backend might hand over; None means FAILED."""
    if isinstance(raw, list | dict):
        return _found_in(_Json(raw), key, True, log)
    text = _as_text(raw, log)
    if text is None:
        return None
    body = _strip_think(_cap(text, log), log)
    direct = _direct(body)
    if direct is not None:
        return _found_in(direct, key, True, log)
    answer = _strip_final_answer(body, log)
    if answer != body and (direct := _direct(answer)) is not None:
        return _found_in(direct, key, True, log)
    literal = _whole_literal(answer)
    searched = _search(answer, key) if literal is None else None
    if literal is None and searched is None:
        literal = _best(_literal_values(answer), key)
    if literal is not None:
        log.add("output_python_literal", _LITERAL_NOTE)
        return _found_in(literal, key, False, log)
    if searched is None:
        log.add("output_unparseable", "no JSON list of items could be found in the output")
        return None
    if searched.salvaged:
        log.add("output_truncated_salvaged", "the array was cut off; kept only its complete items")
    else:
        log.add("output_recovered", "the JSON was extracted from surrounding text or code fences")
    return _found_in(searched, key, False, log)


def _as_text(raw: object, log: _Log) -> str | None:
    """Accept text or bytes; anything else is not a generation."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw).decode("utf-8", errors="replace")
    log.add("output_unparseable", f"expected model text, got {type(raw).__name__}")
    return None


def _cap(text: str, log: _Log) -> str:
    """Bound the work any single generation can cause."""
    if len(text) <= MAX_INPUT_CHARS:
        return text
    log.add("input_truncated", f"output of {len(text)} characters cut to {MAX_INPUT_CHARS}")
    return text[:MAX_INPUT_CHARS]


def _direct(text: str) -> _Json | None:
    """The expected forms: a bare JSON document, or one code fence around the whole output."""
    return _parse_document(text) or _whole_fence(text)


def _parse_document(text: str) -> _Json | None:
    """The whole text as exactly one JSON value, or None."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        value, end = _DECODER.raw_decode(stripped)
    except (ValueError, RecursionError):
        return None
    return _Json(value, end) if end == len(stripped) else None


def _fence_body(text: str) -> str | None:
    """The inside of a single fenced block that is the entire output, else None."""
    if text.count("```") != 2:
        return None
    match = _WHOLE_FENCE.fullmatch(text)
    return match.group(1) if match else None


def _whole_fence(text: str) -> _Json | None:
    """A single fenced block that is the entire output counts as a bare document."""
    body = _fence_body(text)
    return _parse_document(body) if body is not None else None


_LITERAL_NOTE: Final = (
    "the answer was written as a Python literal (quotes, None/True/False, trailing commas), not JSON"
)


def _whole_literal(text: str) -> _Json | None:
    """The whole answer, or its one code fence, as a Python list or dict literal."""
    body = _fence_body(text)
    value = read_literal(text if body is None else body)
    return None if value is None else _Json(value)


def _literal_values(text: str) -> Iterator[_Json]:
    """Python literals embedded in prose; tried only when no JSON answer was found."""
    for value, end in literal_values(text, MAX_JSON_STARTS):
        yield _Json(value, end)


def _search(text: str, key: str) -> _Json | None:
    """Fenced blocks first (the model marked them as the answer), then JSON embedded in prose."""
    return _best(_fenced_values(text), key) or _best(_prose_values(text), key)


def _best(candidates: Iterable[_Json], key: str) -> _Json | None:
    """The most answer-like value; the last one wins a tie, since answers follow their narration."""
    best: _Json | None = None
    best_score = 0
    for candidate in candidates:
        score = _score(candidate.value, key)
        if score and score >= best_score:
            best, best_score = candidate, score
    return best


def _score(value: object, key: str) -> int:
    """3: items with a label key; 2: a list of objects; 1: an empty list; 0: not an answer."""
    items = _items_of(value, key)
    if items is None:
        return 0
    if not items:
        return 1
    if not all(isinstance(item, dict) for item in items):
        return 0
    return 3 if any(_has_label(item) for item in items if isinstance(item, dict)) else 2


def _fenced_values(text: str) -> Iterator[_Json]:
    for match in _FENCE.finditer(text):
        parsed = _parse_document(match.group(1))
        if parsed is not None:
            yield parsed


def _prose_values(text: str) -> Iterator[_Json]:
    """Every JSON value that starts at a bracket, skipping the insides of values already decoded.

    Work is bounded twice: by the number of start positions and by the characters the decoder may
    examine, so nested or repeated cut-off arrays cannot make the scan quadratic.
    """
    budget = 4 * len(text) + _DEEP_FAILURE_COST
    pos = 0
    for _ in range(MAX_JSON_STARTS):
        opener = _OPENER.search(text, pos)
        if opener is None or budget <= 0:
            return
        parsed, cost = _decode_at(text, opener.start())
        budget -= cost
        if parsed is None:
            pos = opener.start() + 1
        else:
            yield parsed
            pos = max(parsed.end, opener.start() + 1)


def _decode_at(text: str, start: int) -> tuple[_Json | None, int]:
    """A complete value at ``start``, else the complete objects of a cut-off array; and the work done."""
    try:
        value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        if text[start] != "[":
            return None, exc.pos - start
        salvaged = _salvage_array(text, start)
        return salvaged, exc.pos - start + (salvaged.end - start if salvaged else 0)
    except (ValueError, RecursionError):
        return None, _DEEP_FAILURE_COST
    return _Json(value, end), end - start


def _salvage_array(text: str, start: int) -> _Json | None:
    """Read ``[{..}, {..}, {..`` object by object and keep the complete ones."""
    items: list[object] = []
    pos = start + 1
    while True:
        pos = _skip_ws(text, pos)
        try:
            item, pos = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            break
        if not isinstance(item, dict):
            return None
        items.append(item)
        pos = _skip_ws(text, pos)
        if not text.startswith(",", pos):
            break
        pos += 1
    return _Json(items, pos, salvaged=True) if items else None


def _skip_ws(text: str, pos: int) -> int:
    match = _JSON_WS.match(text, pos)
    return match.end() if match else pos


def _found_in(parsed: _Json, key: str, clean: bool, log: _Log) -> _Found | None:
    """The item list inside a decoded value; a JSON string that itself holds JSON is unwrapped once."""
    items = _items_of(parsed.value, key)
    if items is None and isinstance(parsed.value, str):
        inner = _parse_document(parsed.value)
        items = None if inner is None else _items_of(inner.value, key)
        if items is not None:
            log.add("output_recovered", "the answer was JSON encoded inside a JSON string")
            clean = False
    if items is None:
        log.add("output_unparseable", f"the JSON found holds no list of items: {_brief(parsed.value)}")
        return None
    return _Found(items, clean)


def _items_of(value: object, key: str, depth: int = 0) -> list[object] | None:
    """A list as-is; a wrapper object's list; a single labelled object as a one-item list."""
    if isinstance(value, list):
        return value
    if not isinstance(value, dict) or depth > 2:
        return None
    fields = _lower_keys(value)
    for name in (key, *_WRAPPER_KEYS):
        inner = fields.get(name)
        if isinstance(inner, list):
            return inner
        if isinstance(inner, dict) and (nested := _items_of(inner, key, depth + 1)) is not None:
            return nested
    if _has_label(fields):
        return [value]
    lists = [v for v in fields.values() if isinstance(v, list) and all(isinstance(x, dict) for x in v)]
    return lists[0] if len(lists) == 1 else None


def _lower_keys(item: dict[object, object]) -> dict[str, object]:
    return {str(k).lower(): v for k, v in item.items()}


def _has_label(item: dict[object, object] | dict[str, object]) -> bool:
    return any(str(k).lower() in _LABEL_KEYS for k in item)


def _first(fields: dict[str, object], keys: Iterable[str]) -> object:
    """The value of the first alias present (``None`` when none is)."""
    return next((fields[k] for k in keys if k in fields), None)


def _outcome(found: _Found, kept: int, log: _Log) -> ParseOutcome:
    """FAILED if every item was dropped as unusable; CLEAN only for a bare document that needed nothing.

    Items dropped on purpose (a known label outside the six, such as atelectasis) are an answer,
    "nothing among the six", so an output made only of them is RECOVERED with no items, not FAILED.
    """
    if found.items and not kept:
        drops = [n.code for n in log.notes if n.code in DROP_CODES]
        if drops and all(code == "label_dropped" for code in drops):
            return ParseOutcome.RECOVERED
        log.add("output_unparseable", f"all {len(found.items)} item(s) were dropped; nothing usable")
        return ParseOutcome.FAILED
    if found.clean and not log.notes:
        return ParseOutcome.CLEAN
    return ParseOutcome.RECOVERED


def _label(fields: dict[str, object], index: int, log: _Log) -> Label | None:
    """Map the item's name onto the vocabulary; a drop is always noted, a mapping too."""
    name = _first(fields, _LABEL_KEYS)
    if not isinstance(name, str):
        log.add("item_malformed", f"item {index} has no label: {_brief(fields)}")
        return None
    mapping = map_label(name)
    if mapping.label is not None and mapping.kind == "exact":
        return mapping.label
    if mapping.label is not None:
        log.add("label_mapped", f"item {index}: {_brief(name)} read as {mapping.label.value}")
        return mapping.label
    if mapping.kind == "dropped":
        log.add("label_dropped", f"item {index}: {_brief(name)} is outside the six labels; dropped")
    else:
        log.add("label_unknown", f"item {index}: {_brief(name)} is not a known label; dropped")
    return None


# --- Findings ---------------------------------------------------------------------------------------


def _recover_findings(raw: object, fmt: BoxFormat, log: _Log) -> RecoveredFindings:
    found = _locate(raw, "findings", log)
    if found is None:
        return RecoveredFindings([], log.notes, ParseOutcome.FAILED)
    findings = [f for i, item in enumerate(found.items) if (f := _finding(item, i, fmt, log)) is not None]
    findings = _resolve_findings(findings, log)
    outcome = _outcome(found, len(findings), log)
    return RecoveredFindings(findings, log.notes, outcome)


def _finding(item: object, index: int, fmt: BoxFormat, log: _Log) -> ImageFinding | None:
    """One item -> one finding (label kept even when its box is unusable), or a noted drop."""
    if isinstance(item, str):
        item = {"label": item}
    if not isinstance(item, dict):
        log.add("item_malformed", f"item {index} is not an object: {_brief(item)}")
        return None
    fields = _lower_keys(item)
    label = _label(fields, index, log)
    if label is None:
        return None
    return ImageFinding(label=label, box=_finding_box(label, fields, index, fmt, log))


def _finding_box(
    label: Label, fields: dict[str, object], index: int, fmt: BoxFormat, log: _Log
) -> Box | None:
    raw_box = _first(fields, _BOX_KEYS)
    empty = raw_box is None or raw_box in ([], {}, "")
    if label is Label.NO_FINDING:
        if not empty:
            log.add("box_dropped", f"item {index}: no_finding carries no box; ignored {_brief(raw_box)}")
        return None
    if empty:
        log.add("box_missing", f"item {index}: {label.value} has no box")
        return None
    return _convert_box(raw_box, index, fmt, log)


def _convert_box(raw_box: object, index: int, fmt: BoxFormat, log: _Log) -> Box | None:
    """Model-native coordinates -> a normalised Box: rescale, clip, reorder, or drop with a note."""
    coords = _box_numbers(raw_box, fmt)
    if coords is None:
        log.add("box_dropped", f"item {index}: box {_brief(raw_box)} is not four finite numbers")
        return None
    scale = _scale_for(coords, fmt, index, log)
    clipped = [min(max(v, 0.0), scale) for v in coords]
    if clipped != coords:
        log.add("box_clipped", f"item {index}: box {_brief(coords)} clipped to [0, {scale:g}]")
    x0, y0, x1, y1 = (v / scale for v in clipped)
    if x0 > x1 or y0 > y1:
        log.add("box_reordered", f"item {index}: box corners were reversed; swapped")
        x0, x1 = min(x0, x1), max(x0, x1)
        y0, y1 = min(y0, y1), max(y0, y1)
    try:
        return Box(x0=x0, y0=y0, x1=x1, y1=y1)
    except ValidationError:
        log.add("box_dropped", f"item {index}: box {_brief(coords)} has no area; label kept without it")
        return None


def _box_values(raw_box: object, fmt: BoxFormat) -> tuple[list[object], str] | None:
    """The four raw values and their order: a 4-list in the model's order, or named corners."""
    if isinstance(raw_box, list) and len(raw_box) == 4:
        return raw_box, fmt.order
    if isinstance(raw_box, dict):
        fields = _lower_keys(raw_box)
        for names in _NAMED_BOX_KEYS:
            if all(k in fields for k in names):
                return [fields[k] for k in names], "xyxy"
    return None


def _box_numbers(raw_box: object, fmt: BoxFormat) -> list[float] | None:
    """Four finite numbers as [x0, y0, x1, y1] in the model's scale, or None."""
    shaped = _box_values(raw_box, fmt)
    if shaped is None:
        return None
    values, order = shaped
    numbers = [n for v in values if (n := _number(v)) is not None]
    if len(numbers) != 4:
        return None
    a, b, c, d = numbers
    return [b, a, d, c] if order == "yxyx" else numbers


def _number(value: object) -> float | None:
    """A finite float from a JSON number or a numeric string; booleans are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _scale_for(coords: list[float], fmt: BoxFormat, index: int, log: _Log) -> float:
    """A scale-1 model that writes 0..1000 values is read at 1000 (base MedGemma habits), noted."""
    if fmt.scale == 1.0 and _looks_per_mille(coords):
        log.add("box_rescaled", f"item {index}: box {_brief(coords)} read on a 0-1000 scale")
        return 1000.0
    return fmt.scale


def _looks_per_mille(coords: list[float]) -> bool:
    """Every value in (1, 1000], allowing exact zeros for boxes that touch the image edge."""
    return any(v > 1 for v in coords) and all(v == 0 or 1 < v <= 1000 for v in coords)


def _resolve_findings(findings: list[ImageFinding], log: _Log) -> list[ImageFinding]:
    """Drop exact duplicates; real findings beat a contradictory no_finding; canonical order."""
    unique: list[ImageFinding] = []
    seen: set[tuple[Label, tuple[float, ...] | None]] = set()
    for finding in findings:
        key = (finding.label, tuple(finding.box.as_list()) if finding.box else None)
        if key in seen:
            log.add("duplicate_dropped", f"{finding.label.value} listed twice with the same box")
            continue
        seen.add(key)
        unique.append(finding)
    real = [f for f in unique if f.label is not Label.NO_FINDING]
    if real and len(real) < len(unique):
        for _ in range(len(unique) - len(real)):
            log.add("no_finding_conflict", "no_finding listed beside real findings; the findings were kept")
        unique = real
    return sorted(unique, key=_finding_order)


def _finding_order(finding: ImageFinding) -> tuple[int, bool, list[float]]:
    return LABEL_RANK[finding.label], finding.box is not None, finding.box.as_list() if finding.box else []


# --- Mentions ---------------------------------------------------------------------------------------


def _recover_mentions(raw: object, draft: str, log: _Log) -> RecoveredMentions:
    text = draft if isinstance(draft, str) else (_as_text(draft, _Log("draft")) or "")
    found = _locate(raw, "mentions", log)
    if found is None:
        return RecoveredMentions([], log.notes, ParseOutcome.FAILED)
    mentions = [m for i, item in enumerate(found.items) if (m := _mention(item, i, text, log)) is not None]
    mentions = _resolve_mentions(mentions, log)
    outcome = _outcome(found, len(mentions), log)
    return RecoveredMentions(mentions, log.notes, outcome)


def _mention(item: object, index: int, draft: str, log: _Log) -> DraftMention | None:
    """One item -> one mention with a verbatim span, or exactly one drop note."""
    if not isinstance(item, dict):
        log.add("item_malformed", f"item {index} is not an object: {_brief(item)}")
        return None
    fields = _lower_keys(item)
    label = _label(fields, index, log)
    if label is None:
        return None
    status = _status(fields, index, log)
    if status is None:
        return None
    span = _first(fields, _SPAN_KEYS)
    if not isinstance(span, str) or not span.strip():
        log.add("item_malformed", f"item {index} ({label.value}) has no span text")
        return None
    located = _locate_span(span, fields, draft, index, log)
    if located is None:
        return None
    start, end = located
    return DraftMention(
        label=label,
        status=status,
        span=draft[start:end],
        start=start,
        end=end,
        laterality=_laterality(fields),
    )


def _status(fields: dict[str, object], index: int, log: _Log) -> MentionStatus | None:
    value = _first(fields, _STATUS_KEYS)
    if isinstance(value, bool):
        value = "true" if value else "false"
    if isinstance(value, str) and value in _STATUS_EXACT:
        return _STATUS_EXACT[value]
    key = " ".join(re.split(r"[\s_-]+", value.strip().lower())) if isinstance(value, str) else ""
    status = _STATUS_SYNONYMS.get(key)
    if status is None:
        log.add("status_unknown", f"item {index}: status {_brief(value)} is not present/absent/uncertain")
        return None
    log.add("status_mapped", f"item {index}: status {_brief(value)} read as {status}")
    return status


def _laterality(fields: dict[str, object]) -> Laterality | None:
    value = _first(fields, _SIDE_KEYS)
    return _LATERALITY.get(value.strip().lower()) if isinstance(value, str) else None


def _locate_span(
    span: str, fields: dict[str, object], draft: str, index: int, log: _Log
) -> tuple[int, int] | None:
    """Offsets where ``draft[start:end]`` is the span: as given, re-found verbatim, or tolerantly."""
    start, end = _offset(fields.get("start")), _offset(fields.get("end"))
    hint = start if start is not None else (end - len(span) if end is not None else None)
    exact = _nearest_exact(draft, span, hint)
    if exact is not None:
        if start not in (None, exact[0]) or end not in (None, exact[1]):
            log.add("span_relocated", f"item {index}: offsets did not match the span; found it at {exact[0]}")
        return exact
    loose = _nearest_loose(draft, span, hint)
    if loose is not None:
        log.add("span_relocated", f"item {index}: span {_brief(span)} matched ignoring case and spacing")
        return loose
    log.add("span_dropped", f"item {index}: span {_brief(span)} is not in the draft; dropped")
    return None


def _offset(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdecimal() and len(value) < 10:
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def _nearest_exact(draft: str, span: str, hint: int | None) -> tuple[int, int] | None:
    """The verbatim occurrence closest to ``hint`` (the first one when there is no hint)."""
    after = draft.find(span, max(hint or 0, 0))
    before = draft.rfind(span, 0, hint + len(span) - 1) if hint and hint > 0 else -1
    hits = [p for p in (before, after) if p >= 0]
    if not hits:
        return None
    best = min(hits, key=lambda p: (abs(p - (hint or 0)), p))
    return best, best + len(span)


def _nearest_loose(draft: str, span: str, hint: int | None) -> tuple[int, int] | None:
    """Case- and whitespace-tolerant match closest to ``hint``; the draft's own text is the span."""
    tokens = span.split()
    if not tokens or sum(map(len, tokens)) > len(draft):
        return None
    pattern = re.compile(r"\s+".join(map(re.escape, tokens)), re.IGNORECASE)
    best: tuple[int, int] | None = None
    for match in pattern.finditer(draft):
        hit = (match.start(), match.end())
        if best is None or abs(hit[0] - (hint or 0)) < abs(best[0] - (hint or 0)):
            best = hit
        if hint is None or match.start() >= hint:
            break
    return best


def _resolve_mentions(mentions: list[DraftMention], log: _Log) -> list[DraftMention]:
    """Drop exact repeats; order by position in the draft, then label."""
    unique: dict[tuple[object, ...], DraftMention] = {}
    for m in mentions:
        key = (m.label, m.status, m.start, m.end, m.laterality)
        if key in unique:
            log.add("duplicate_dropped", f"{m.label.value} {m.status} at {m.start} listed twice")
            continue
        unique[key] = m
    return sorted(unique.values(), key=_mention_order)


def _mention_order(m: DraftMention) -> tuple[int, int, int, str, str]:
    return m.start, LABEL_RANK[m.label], m.end, m.status, m.laterality or ""
