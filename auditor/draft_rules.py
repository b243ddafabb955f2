"""The rule reader: a deterministic, negation- and hedge-aware reader of radiology drafts.

It is the CPU default and the fallback for the Nemotron reader. The design is ConText's, with its cue
words as data in `auditor.draft_cues` (one line a cue, labelled by role):
1. one pass finds every cue and every clause boundary (sentence ends, semicolons, colons and the
   TERMINATE cues such as "but" or "however"), which bound every cue's scope;
2. finding phrases come from the shared vocabulary (`auditor.labels.FREE_TEXT_TERMS`) and the reader's
   own phrases (`draft_cues.TARGETS`: pneumothorax in other words, "nodular" as a descriptor), longest
   first, plus constructions a table cannot hold ("the heart is enlarged", "heart size is normal",
   "no acute cardiopulmonary abnormality");
3. each phrase takes the meaning of the nearest FORWARD cue before it in its clause, else of a BACKWARD
   cue after it ("... is not seen", "... cannot be excluded"; across a coordinated list, "X and Y are
   not seen", but not across an unrelated phrase), else it is present. A purpose, indication or
   history cue ("to exclude", "evaluation for", "history of") asserts nothing about the image: the
   phrase is then no mention at all, and a note says so.
Phrases the vocabulary drops on purpose (atelectasis, edema, pericardial effusion...) are consumed
so that they never leak into a label, and reported in a note.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from auditor.draft_cues import (
    BACKWARD,
    BIDIRECTIONAL,
    CUES,
    DEVICE_WORDS,
    FORWARD,
    POSSIBLE,
    PRIOR_STUDY_WORDS,
    RESOLVED,
    TARGETS,
    TERMINATE,
    Meaning,
    Role,
)
from auditor.labels import FREE_TEXT_TERMS, LABEL_RANK, Label
from auditor.phrase_regex import PhraseRegex, literal
from auditor.schema import (
    DraftMention,
    DraftReading,
    Laterality,
    MentionStatus,
    ModelInfo,
    Note,
    ParseOutcome,
    construct_trusted,
)

RULESET_VERSION: Final = "cxr-rules-2"
MODEL_INFO: Final = ModelInfo(backend="rules", model_id=RULESET_VERSION)

# Every pattern is lower-case and case-sensitive, run over an ASCII-lowered copy of the draft: the
# copy has the same length (offsets stay valid) and case-sensitive alternations are ~4x faster.
_F = re.NOFLAG
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _alternation(phrases: list[str]) -> str:
    """Longest first, so "pericardial effusion" beats "effusion"; spaces match any whitespace."""
    ordered = sorted(phrases, key=len, reverse=True)
    return "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in ordered)


# ---- cues and clause boundaries: one pass ------------------------------------------------------
# A sentence end (a period ends a sentence unless a digit follows, "1.5 cm", or it ends "vs.") or a
# TERMINATE cue ends a clause (payload None); every other cue is its meaning and role.
_CUE_RX: Final = PhraseRegex(
    [(c.phrase, None if c.role == TERMINATE else (c.meaning, c.role)) for c in CUES],
    raw=[(r"(?<!\bvs)\.(?!\d)|[!?;:\n]", None)],
)

# ---- finding phrases -----------------------------------------------------------------------------
_TERMS: Final = PhraseRegex(
    [(t.phrase, t.label) for t in TARGETS]
    + [(literal(" ".join(k.split())), v) for k, v in FREE_TEXT_TERMS.items() if v is not Label.NO_FINDING]
)

_HEART: Final = (
    r"(?:heart(?:\s+size|\s+silhouette|\s+shadow)?|cardiac\s+(?:silhouette|size|shadow|contours?|diameter)"
    r"|cardio(?:mediastinal|pericardial)\s+(?:silhouette|contours?|shadow)|cardiothoracic\s+ratio)"
)
_BIG: Final = r"(?:enlarged|enlargement|large|larger|increased|borderline|prominent)"
_GAP: Final = r"(?:[^.;:,\n]{0,40}?\s)??"
# "the heart is (mildly|not) enlarged", "heart size is borderline"
_HEART_BIG: Final = re.compile(r"\b" + _HEART + r"\s" + _GAP + r"(?:" + _BIG + r")\b", _F)
# "enlarged heart", "borderline heart size", "increase in heart size", "mildly enlarged cardiac silhouette"
_BIG_HEART: Final = re.compile(
    r"\b(?:" + _BIG + r"|increase\s+in)\s+(?:(?:in\s+)?(?:the\s+)?(?:size\s+of\s+the\s+)?)?" + _HEART + r"\b",
    _F,
)
# "heart size is normal", "normal heart size", "heart is normal in size", "within normal limits"
_HEART_NORMAL: Final = re.compile(
    r"\b(?:normal(?:-|\s+)(?:sized?\s+)?" + _HEART + r"|" + _HEART + r"(?:\s+and\s+(?:mediastinal\s+)?"
    r"(?:contours?|mediastinum|silhouettes?))?\s+(?:(?:is|are|appears?|remains?|was)\s+)?(?:(?:of|at|the|near)\s+)*"
    r"(?:normal|within\s+normal\s+limits|unremarkable|upper\s+limits?\s+(?:of\s+)?normal|(?:top|upper|high)(?:-|\s+)normal))",
    _F,
)
_GAP_VETO: Final = re.compile(r"\b(?:normal|aort\w*|mediastin\w*|pulmonary|hil\w+|vessels?|arter\w+)\b", _F)

# ---- normal-study statements -------------------------------------------------------------------
_QUALIFIER: Final = (
    "((radiographic|xxxx|definite|definitive|significant|visible|visualized|evident|gross|grossly|obvious"
    "|new|apparent|convincing|other|focal) )*"
)
_REGION: Final = (
    "(radiographic|cardiopulmonary|cardiothoracic|cardiovascular|pulmonary|cardiac|chest|thoracic"
    "|intrathoracic|lung|pleural|pleuropulmonary|xxxx)"
)
_REGIONS: Final = _REGION + r"([\s,/]+(or |and )?" + _REGION + ")*"
_NORMAL_STUDY: Final = PhraseRegex(
    [
        # "no acute cardiopulmonary abnormality", "no radiographic evidence of acute disease", "no visible
        # cardiopulmonary injury", "no acute or active cardiac, pulmonary or pleural disease" (but not
        # "no acute bony abnormality", nor "no pleural effusion")
        (
            f"(no|negative for|without) {_QUALIFIER}(evidence (of|for) )?{_QUALIFIER}((acute|active)"
            rf"(\s*(/|or|and)\s*(acute|active|chronic))?([\s,/]+(or )?{_REGIONS})?|{_REGIONS}) "
            "(abnormalit(y|ies)|disease|process(es)?|findings?|pathology|illness|injury|injuries|changes?"
            "|conditions?|xxxx)",
            None,
        ),
        # "normal chest", "unremarkable 2 views of the chest", "negative chest x-XXXX"
        (
            "(normal|negative|unremarkable) ((pa|ap|frontal|two|2|views?|view|and|lateral|portable|of|the"
            "|x-xxxx|xxxx) )*(chest|study|exam(ination)?|radiographs?)",
            None,
        ),
        # "lungs are clear", "lung parenchyma is clear", "clear lungs", "no significant abnormality"
        (
            "(lungs?|lung parenchyma) ((is|are|appears?|remain|to|be|grossly|now|normally inflated and"
            "|expanded and|well expanded and) )*(normal|clear)",
            None,
        ),
        ("clear lungs", None),
        (f"no {_QUALIFIER}abnormalit(y|ies)", None),
    ]
)
# a sentence that is just "Negative."
_NEGATIVE_ALONE: Final = re.compile(r"(?:^|(?<=[.:\n]))[^\S\n]*negative(?=[^\S\n]*(?:\.|$))", _F)
_DEVICES: Final = re.compile(r"\b(?:" + _alternation(list(DEVICE_WORDS)) + r")\b", _F)
_PRIOR_STUDY: Final = re.compile(r"\b(?:" + _alternation(list(PRIOR_STUDY_WORDS)) + r")\b", _F)

# A structured line: "Pneumothorax: none." The colon ends the clause, so this is checked on its own.
_STRUCTURED_NEG: Final = re.compile(
    r"[ \t]*:[ \t]*(?P<cue>none|negative|absent|no|not\s+(?:seen|present|identified))\b"
)
_SIDE: Final = re.compile(
    r"\b(left|right|bilateral(?:ly)?|both|bibasilar|bibasal|bilat|lingula|lingular|rul|rml|rll|lul|lll)\b", _F
)
_IMPLIED_SIDE: Final = {
    "lingula": "left",  # the lingula is part of the left upper lobe only
    "lingular": "left",
    "rul": "right",  # lobe abbreviations: right upper / middle / lower, left upper / lower
    "rml": "right",
    "rll": "right",
    "lul": "left",
    "lll": "left",
}
# Between two phrases of one list: commas or coordinators, each followed by at most three words
# ("effusion, adenopathy, or large pneumothorax"); a coordinator makes it a list a BACKWARD cue reaches.
_LIST_GAP: Final = re.compile(r"(?:\s*(?:,|/|\b(?:and/or|and|or|nor)\b)\s*(?:[a-z-]+\s*){0,3})+", _F)
_COORDINATOR: Final = re.compile(r"\b(?:and|or|nor)\b|/", _F)
# A verb that closes a denial before a comma: "no effusion is seen, ..."
_CLOSING: Final = re.compile(
    r"\b(?:is|are|was|were|seen|identified|noted|present|demonstrated|visualized|evident|appreciated"
    r"|detected|suggest|suggests|shows?|represents?)\b",
    _F,
)
# Between a phrase and a bidirectional cue after it: punctuation or a copula only ("X versus Y").
_ADJACENT: Final = re.compile(r"[\s,(]*(?:(?:is|are|was|were|has\s+been|have\s+been|remains?)\s+)?", _F)

_CUE_WINDOW: Final = 300  # a FORWARD cue governs phrases up to this far after it, within its clause
_BACK_REACH: Final = 60  # a BACKWARD cue governs a phrase that ends at most this far before it
_LIST_MAX: Final = 12  # ... or a list of at most this many phrases ending there
_STATUS: Final[dict[str, MentionStatus | None]] = {
    "negated": "absent",
    "resolved": "absent",
    "possible": "uncertain",
    "hypothetical": None,
    "historical": None,
}


@dataclass(frozen=True, slots=True)
class _Hit:
    label: Label | None
    start: int
    end: int
    kind: str  # "term" | "heart" | "heart_normal" | "normal"


@dataclass(frozen=True, slots=True)
class _Cues:
    """Every cue of one draft, in text order, and the clause starts."""

    starts: list[int]
    ends: list[int]
    meanings: list[Meaning]
    roles: list[Role]
    clauses: list[int]


# A reading of one phrase: its meaning ("negated", ..., or "present") and the offsets of the cue words.
_Reading = tuple[str, int, int]
_PRESENT: Final = "present"


def _scan_cues(low: str) -> _Cues:
    starts: list[int] = []
    ends: list[int] = []
    meanings: list[Meaning] = []
    roles: list[Role] = []
    clauses = [0]
    for start, end, cue in _CUE_RX.finditer(low):
        if cue is None:
            clauses.append(end)
            continue
        starts.append(start)
        ends.append(end)
        meanings.append(cue[0])
        roles.append(cue[1])
    return _Cues(starts, ends, meanings, roles, clauses)


def _term_hits(low: str) -> list[_Hit]:
    return [_Hit(label, start, end, "term") for start, end, label in _TERMS.finditer(low)]


def _heart_hits(low: str) -> list[_Hit]:
    hits = [_Hit(Label.CARDIOMEGALY, m.start(), m.end(), "heart_normal") for m in _HEART_NORMAL.finditer(low)]
    for m in _HEART_BIG.finditer(low):
        if not _GAP_VETO.search(low, m.start() + 1, m.end() - 1):
            hits.append(_Hit(Label.CARDIOMEGALY, m.start(), m.end(), "heart"))
    hits.extend(_Hit(Label.CARDIOMEGALY, m.start(), m.end(), "heart") for m in _BIG_HEART.finditer(low))
    return hits


def _drop_overlaps(hits: list[_Hit]) -> list[_Hit]:
    """Keep the earliest, then longest, hit where hits overlap."""
    hits.sort(key=lambda h: (h.start, -(h.end - h.start)))
    kept: list[_Hit] = []
    last_end = -1
    for h in hits:
        if h.start >= last_end:
            kept.append(h)
            last_end = h.end
    return kept


def _before(cues: _Cues, lo: int, pos: int) -> _Reading | None:
    """The FORWARD (or bidirectional) cue nearest before ``pos`` in low[lo:pos], if any. A pseudo-cue
    or a BACKWARD cue nearer to the phrase shields it from cues further back."""
    i = bisect_right(cues.starts, pos) - 1
    while i >= 0 and cues.ends[i] > pos:
        i -= 1
    if i < 0 or cues.starts[i] < lo:
        return None
    role = cues.roles[i]
    if role in (FORWARD, BIDIRECTIONAL):
        return cues.meanings[i], cues.starts[i], cues.ends[i]
    return None


def _in_forward_scope(low: str, hits: list[_Hit], i: int, cue_end: int) -> bool:
    """A FORWARD cue reaches across the phrases before this one unless a verb and a comma close its
    statement: "no effusion in the left base, consolidation or pneumothorax" is one list; in "no
    effusion is seen, small nodule" the comma after "seen" ends the denial."""
    k = i
    while k > 0 and hits[k - 1].start >= cue_end:
        gap_lo, gap_hi = hits[k - 1].end, hits[k].start
        comma = low.find(",", gap_lo, gap_hi)
        if comma >= 0 and _CLOSING.search(low, gap_lo, comma) is not None:
            return False
        k -= 1
    return True


def _inside(cues: _Cues, start: int, end: int) -> _Reading | None:
    """The last forward-reading cue wholly inside [start, end) ("the heart is not enlarged")."""
    i = bisect_left(cues.starts, start)
    found = None
    while i < len(cues.starts) and cues.ends[i] <= end:
        if cues.roles[i] in (FORWARD, BIDIRECTIONAL):
            found = cues.meanings[i], cues.starts[i], cues.ends[i]
        i += 1
    return found


def _after(low: str, cues: _Cues, hits: list[_Hit], i: int, hi: int) -> _Reading | None:
    """A BACKWARD cue after hit ``i`` in its clause, reaching it directly or across a coordinated list
    of phrases ("effusion or pneumothorax is not seen"); a bidirectional cue only right after it."""
    hit = hits[i]
    j = bisect_left(cues.starts, hit.end)
    if j >= len(cues.starts) or cues.starts[j] >= hi:
        return None
    role = cues.roles[j]
    if role not in (BACKWARD, BIDIRECTIONAL):
        return None
    cue_start = cues.starts[j]
    k = i + 1  # the phrases between this one and the cue must form a list ending at the cue
    while k < len(hits) and hits[k].start < cue_start:
        k += 1
        if k - i > _LIST_MAX:  # no list is this long: and the bound keeps run-on drafts linear
            return None
    last = hits[k - 1]
    if role == BIDIRECTIONAL:
        if k - 1 != i or _ADJACENT.fullmatch(low, hit.end, cue_start) is None:
            return None
    elif cue_start - last.end > _BACK_REACH:
        return None
    coordinated = False
    for n in range(k - 1, i, -1):
        gap_lo, gap_hi = hits[n - 1].end, hits[n].start
        if _LIST_GAP.fullmatch(low, gap_lo, gap_hi) is None:
            return None
        coordinated = coordinated or _COORDINATOR.search(low, gap_lo, gap_hi) is not None
        if not coordinated:
            return None
    return cues.meanings[j], cue_start, cues.ends[j]


def _reading(low: str, cues: _Cues, hits: list[_Hit], i: int, lo: int, hi: int) -> _Reading:
    hit = hits[i]
    if hit.kind == "heart_normal":
        inner = _inside(cues, hit.start, hit.end)
        return inner if inner is not None and inner[0] == POSSIBLE else ("negated", hit.start, hit.end)
    if hit.kind == "heart":
        inner = _inside(cues, hit.start, hit.end)
        if inner is not None:
            return inner
        # only a cue right before the construction governs it ("no enlarged heart", "possibly enlarged")
        before = _before(cues, max(lo, hit.start - 12), hit.start)
        return before if before is not None else (_PRESENT, hit.start, hit.start)
    if (m := _STRUCTURED_NEG.match(low, hit.end)) is not None:
        return "negated", m.start("cue"), m.end("cue")
    # Cues further back than a long list are not this phrase's (and the bound keeps a 20,000-character
    # run-on draft linear rather than quadratic in its phrases).
    pre = _before(cues, max(lo, hit.start - _CUE_WINDOW), hit.start)
    if pre is not None and _in_forward_scope(low, hits, i, pre[2]):
        return pre
    post = _after(low, cues, hits, i, hi)
    if post is not None:
        return post
    return _PRESENT, hit.start, hit.start


def _sides(low: str, lo: int, hi: int) -> Laterality | None:
    sides = {_IMPLIED_SIDE.get(word, word) for word in (m.group(1) for m in _SIDE.finditer(low, lo, hi))}
    if not sides:
        return None
    if (
        sides & {"bilateral", "bilaterally", "both", "bibasilar", "bibasal", "bilat"}
        or {"left", "right"} <= sides
    ):
        return "bilateral"
    return "left" if "left" in sides else "right"


def _laterality(low: str, prev_end: int, start: int, end: int, next_start: int) -> Laterality | None:
    """Side words before the phrase (back to the previous phrase) win; else those after it."""
    return _sides(low, prev_end, start) or _sides(low, end, next_start)


def read_draft(draft: str) -> DraftReading:
    """Read a draft into DraftMentions over the six labels, each with its verbatim span and offsets."""
    t0 = time.perf_counter()
    if not draft.strip():
        return DraftReading(
            draft=draft,
            mentions=[],
            outcome=ParseOutcome.FAILED,
            model=MODEL_INFO,
            notes=[Note(stage="draft", code="draft_empty", message="The draft is empty; nothing to read.")],
        )
    low = draft.translate(_ASCII_LOWER)
    hits = _term_hits(low)
    hits.extend(_heart_hits(low))
    hits.extend(_Hit(Label.NO_FINDING, start, end, "normal") for start, end, _ in _NORMAL_STUDY.finditer(low))
    if "negative" in low:
        hits.extend(
            _Hit(Label.NO_FINDING, m.start(), m.end(), "normal") for m in _NEGATIVE_ALONE.finditer(low)
        )
    hits = _drop_overlaps(hits)

    cues = _scan_cues(low)
    clause_starts = cues.clauses
    mentions: list[DraftMention] = []
    dropped: dict[str, MentionStatus] = {}
    unasserted: dict[str, str] = {}
    about_change = False
    denial_clauses: list[tuple[int, int]] = []
    for i, hit in enumerate(hits):
        if hit.label is Label.NO_FINDING:
            mentions.append(_mention(draft, hit, "present", None, None))
            continue
        ci = bisect_right(clause_starts, hit.start) - 1
        lo = clause_starts[ci]
        hi = clause_starts[ci + 1] if ci + 1 < len(clause_starts) else len(draft)
        meaning, cue_start, cue_end = _reading(low, cues, hits, i, lo, hi)
        if meaning == _PRESENT:
            status: MentionStatus = "present"
        elif (mapped := _STATUS.get(meaning)) is None:
            unasserted.setdefault(low[hit.start : hit.end], draft[cue_start:cue_end])
            continue
        else:
            status = mapped
            about_change = about_change or meaning == RESOLVED
            denial_clauses.append((lo, hi))
        if hit.label is None:
            dropped[low[hit.start : hit.end]] = status
            continue
        prev_end = hits[i - 1].end if i > 0 and hits[i - 1].end > lo else lo
        next_start = hits[i + 1].start if i + 1 < len(hits) and hits[i + 1].start < hi else hi
        side = (
            None
            if hit.label is Label.CARDIOMEGALY
            else _laterality(low, prev_end, hit.start, hit.end, next_start)
        )
        cue = draft[cue_start:cue_end] or None
        mentions.append(_mention(draft, hit, status, cue, side))
    notes = [
        Note(
            stage="draft",
            code="label_dropped",
            message=f"{term!r} is outside the six audit labels; not compared.",
        )
        for term in dropped
    ]
    notes.extend(
        Note(
            stage="draft",
            code="not_asserted",
            message=f"{term!r} is named as the object of a test, a recommendation, a limitation or the "
            f"history ({cue!r}), not as a finding on this image; not read as a mention.",
        )
        for term, cue in unasserted.items()
    )
    reports_other = any(st != "absent" for st in dropped.values())

    def only_denials() -> bool:
        return not (
            reports_other
            or about_change
            or _DEVICES.search(low)
            or any(_PRIOR_STUDY.search(low, lo, hi) for lo, hi in denial_clauses)
        )

    mentions, override = _resolve_normal(draft, mentions, clause_starts, only_denials)
    notes.extend(override)
    return construct_trusted(
        DraftReading,
        draft=draft,
        mentions=mentions,
        outcome=ParseOutcome.CLEAN,
        model=MODEL_INFO,
        raw_output=None,
        notes=notes,
        timings_ms={"read": (time.perf_counter() - t0) * 1000},
        tokens={},
        fallback_from=None,
    )


def _mention(
    draft: str, hit: _Hit, status: MentionStatus, cue: str | None, side: Laterality | None
) -> DraftMention:
    """Spans are cut from the draft itself, so the verbatim invariant holds by construction."""
    return construct_trusted(
        DraftMention,
        label=hit.label,
        status=status,
        span=draft[hit.start : hit.end],
        start=hit.start,
        end=hit.end,
        laterality=side,
        cue=cue,
    )


def _clause_span(draft: str, clause_starts: list[int], pos: int) -> tuple[int, int]:
    """The clause around ``pos``, trimmed of whitespace and the boundary mark that closed it."""
    ci = bisect_right(clause_starts, pos) - 1
    lo = clause_starts[ci]
    hi = clause_starts[ci + 1] if ci + 1 < len(clause_starts) else len(draft)
    while hi > lo and (draft[hi - 1].isspace() or draft[hi - 1] in ".;:!?,"):
        hi -= 1
    while lo < hi and draft[lo].isspace():
        lo += 1
    return lo, hi


def _resolve_normal(
    draft: str, mentions: list[DraftMention], clause_starts: list[int], only_denials: Callable[[], bool]
) -> tuple[list[DraftMention], list[Note]]:
    """Decide whether the draft reads as a normal study (the ``no_finding`` mention).

    A normal-study statement beside a present or hedged finding is not a normal study: it is removed
    with a note. A draft that states no normal-study sentence but denies findings ("Heart size normal.
    No effusion or pneumothorax.") reads as normal too, when denials are all it says: not when it
    reports something outside the six labels, speaks of change ("the effusion has resolved"), or of
    tubes, lines and devices ("chest tube in place, no pneumothorax"). Span and cue are then the first
    denial's clause and words, so the reading always rests on words of the draft.
    """
    findings = [m for m in mentions if m.label is not Label.NO_FINDING and m.status != "absent"]
    normal = [m for m in mentions if m.label is Label.NO_FINDING]
    if findings and normal:
        names = ", ".join(sorted({m.label.value for m in findings}, key=lambda v: LABEL_RANK[Label(v)]))
        note = Note(
            stage="draft",
            code="no_finding_overridden",
            message=f"{normal[0].span!r} was not read as a normal study: the draft also reports {names}.",
        )
        return [m for m in mentions if m.label is not Label.NO_FINDING], [note]
    if findings or normal or not mentions or not only_denials():
        return mentions, []
    first = mentions[0]
    lo, hi = _clause_span(draft, clause_starts, first.start)
    inferred = construct_trusted(
        DraftMention,
        label=Label.NO_FINDING,
        status="present",
        span=draft[lo:hi],
        start=lo,
        end=hi,
        laterality=None,
        cue=first.cue,
    )
    note = Note(
        stage="draft",
        code="normal_inferred",
        message="The draft only denies findings, so it is read as describing a normal study.",
    )
    return sorted([*mentions, inferred], key=lambda m: (m.start, LABEL_RANK[m.label])), [note]
