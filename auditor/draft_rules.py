"""The rule reader: a deterministic, negation- and hedge-aware reader of radiology drafts.

It is the CPU default and the fallback for the Nemotron reader. The design is ConText-like:
1. the draft is cut into clauses (sentence ends, semicolons, colons, and contrast words such as
   "but" or "however"), which bound every cue's scope;
2. finding phrases come from the shared vocabulary (`auditor.labels.FREE_TEXT_TERMS`), longest
   phrase first, plus a few constructions the vocabulary cannot hold ("the heart is enlarged",
   "heart size is normal", "no acute cardiopulmonary abnormality");
3. each phrase takes the status of the nearest cue before it in its clause (negation or hedge),
   else of a cue after it ("... is not seen", "... cannot be excluded"), else present.
Phrases the vocabulary drops on purpose (atelectasis, edema, pericardial effusion...) are consumed
so that they never leak into a label, and reported in a note.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_right
from dataclasses import dataclass
from typing import Final

from auditor.labels import FREE_TEXT_TERMS, LABEL_RANK, Label
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

RULESET_VERSION: Final = "cxr-rules-1"
MODEL_INFO: Final = ModelInfo(backend="rules", model_id=RULESET_VERSION)

# Every pattern is lower-case and case-sensitive, run over an ASCII-lowered copy of the draft: the
# copy has the same length (offsets stay valid) and case-sensitive alternations are ~4x faster.
_F = re.NOFLAG
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _alternation(phrases: list[str]) -> str:
    """Longest first, so "pericardial effusion" beats "effusion"; spaces match any whitespace."""
    ordered = sorted(phrases, key=len, reverse=True)
    return "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in ordered)


# ---- clause boundaries -------------------------------------------------------------------------
# A period ends a sentence unless a digit follows ("1.5 cm"); numbered lists ("1. No ...") split.
_BOUNDARY: Final = re.compile(
    r"\.(?!\d)|[!?;:\n]|\b(?:but|however|although|though|except|aside\s+from|apart\s+from|whereas"
    r"|otherwise|which|while)\b|,\s+and\b|\band\s+(?=there\b|the\s+(?:heart|cardiac|lungs?)\b)",
    _F,
)

# ---- finding phrases -----------------------------------------------------------------------------
_TERM_LABELS: Final[dict[str, Label | None]] = {
    " ".join(k.split()): v for k, v in FREE_TEXT_TERMS.items() if v is not Label.NO_FINDING
}
_TERMS: Final = re.compile(r"\b(?:" + _alternation(list(_TERM_LABELS)) + r")\b", _F)

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
_NORMAL_STUDY: Final = re.compile(
    # "no acute cardiopulmonary abnormality", "no radiographic evidence of acute disease",
    # "no acute or active cardiac, pulmonary or pleural disease" (but not "no acute bony abnormality")
    r"\b(?:no|negative\s+for|without)\s+(?:(?:radiographic|xxxx|definite|significant)\s+)*"
    r"(?:evidence\s+(?:of|for)\s+)?(?:acute|active)(?:\s*(?:/|or)\s*(?:acute|active))?"
    r"(?:[\s,/]+(?:or\s+)?(?:radiographic|cardiopulmonary|cardiothoracic|pulmonary|cardiac|chest|thoracic"
    r"|intrathoracic|lung|pleural|xxxx))*\s+(?:abnormalit(?:y|ies)|disease|process(?:es)?|findings?"
    r"|pathology|illness|injury)\b"
    # "normal chest", "unremarkable 2 views of the chest", "negative chest x-XXXX"
    r"|\b(?:normal|negative|unremarkable)\s+(?:(?:pa|ap|frontal|two|2|views?|view|and|lateral|portable|of|the"
    r"|x-xxxx|xxxx)\s+)*(?:chest|study|exam(?:ination)?|radiographs?)\b"
    # "lungs are clear", "lung parenchyma is clear", "clear lungs"
    r"|\b(?:lungs?|lung\s+parenchyma)\s+(?:(?:is|are|appears?|remain|to|be|grossly|now|normally\s+inflated\s+and"
    r"|expanded\s+and|well\s+expanded\s+and)\s+)*(?:normal|clear)\b|\bclear\s+lungs\b"
    r"|\bno\s+(?:significant\s+)?(?:radiographic\s+)?abnormalit(?:y|ies)\b"
    # a sentence that is just "Negative."
    r"|(?:^|(?<=[.:\n]))[^\S\n]*negative(?=[^\S\n]*(?:\.|$))",
    _F,
)

# ---- status cues ---------------------------------------------------------------------------------
_PSEUDO: Final = re.compile(
    r"\b(?:no|without)\s+(?:(?:significant|interval|appreciable|definite|apparent|substantial)\s+)*"
    r"(?:change|increase|decrease|progression|growth)\b|\bnot\s+(?:significantly\s+)?(?:changed|increased)\b",
    _F,
)
_PRE_NEG: Final = re.compile(
    r"\b(?:no|not|without|negative\s+for|free\s+of|absence\s+of|absent|neither|nor|resolution\s+of|resolved"
    r"|clear(?:\s+of)?|clearing\s+of|rather\s+than|removal\s+of|no\s+longer)\b",
    _F,
)
_PRE_HEDGE: Final = re.compile(
    r"\b(?:possible|possibly|questionable|question(?:\s+of)?|(?:to\s+)?exclude|suspicious\s+(?:for|of)|suspected|suspect|may|might"
    r"|could|(?:cannot|can\s*not|can't)\s+(?:be\s+)?(?:excluded?|ruled?\s+out)|differential|equivocal"
    r"|indeterminate|concerning\s+for|worrisome\s+for|versus|vs|rule\s+out|presumed|not\s+excluded"
    r"|possibility\s+of|history\s+of|suggestive\s+of)\b",
    _F,
)
# Matched at the phrase's end (re.match anchors there); the cue words are the group "cue".
_POST_NEG: Final = re.compile(
    r"[^.;:\n]{0,40}?\b(?P<cue>(?:(?:is|are|was|were|has\s+been|have\s+been)\s+)?(?:not\s+(?:\w+\s+)?"
    r"(?:seen|identified|present|evident|visualized|visible|demonstrated|appreciated|noted|detected|apparent"
    r"|shown)|no\s+longer\s+\w+|(?:has|have)\s+(?:resolved|cleared)|resolved|cleared|(?:is|are)\s+absent))\b",
    _F,
)
_POST_HEDGE: Final = re.compile(
    r"[^.;:\n]{0,40}?\b(?P<cue>(?:cannot|can\s*not|could\s+not|can't)\s+be\s+(?:entirely\s+|completely\s+)?"
    r"(?:excluded|ruled\s+out)|not\s+(?:be\s+)?(?:excluded|ruled\s+out)|(?:is|are)\s+(?:possible|suspected"
    r"|questioned|questionable|a\s+possibility)|suspected)\b|\s*(?:,\s*)?(?P<vs>versus|vs)\b",
    _F,
)
# A structured line: "Pneumothorax: none." The colon ends the clause, so this is checked on its own.
_STRUCTURED_NEG: Final = re.compile(
    r"[ \t]*:[ \t]*(?P<cue>none|negative|absent|no|not\s+(?:seen|present|identified))\b"
)
_SIDE: Final = re.compile(r"\b(left|right|bilateral(?:ly)?|both|bibasilar|bibasal|bilat)\b", _F)


@dataclass(frozen=True, slots=True)
class _Hit:
    label: Label | None
    start: int
    end: int
    kind: str  # "term" | "heart" | "heart_normal" | "normal"


# A status and the offsets of the cue words that set it (start == end when no words did).
_Status = tuple[MentionStatus, int, int]


_CUE_WINDOW: Final = 300


def _clauses(low: str) -> list[int]:
    """Start offsets of every clause; the clause of position p is found with bisect."""
    return [0, *(m.end() for m in _BOUNDARY.finditer(low))]


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


def _nearest(rx: re.Pattern[str], low: str, start: int, end: int) -> re.Match[str] | None:
    last = None
    for m in rx.finditer(low, start, end):
        last = m
    return last


def _pre_cue(low: str, lo: int, hi: int) -> _Status | None:
    """The status set by the nearest negation or hedge cue in low[lo:hi], if any."""
    neg = _nearest(_PRE_NEG, low, lo, hi)
    if neg is not None and any(p.start() <= neg.start() < p.end() for p in _PSEUDO.finditer(low, lo, hi)):
        neg = None
    hedge = _nearest(_PRE_HEDGE, low, lo, hi)
    if hedge is not None and (neg is None or hedge.end() >= neg.end()):
        return "uncertain", hedge.start(), hedge.end()
    if neg is not None:
        return "absent", neg.start(), neg.end()
    return None


def _post_cue(low: str, lo: int, hi: int) -> _Status | None:
    """A cue after the phrase, in its clause: "... is not seen", "... cannot be excluded"."""
    if (m := _POST_HEDGE.match(low, lo, hi)) is not None:
        group = "cue" if m.group("cue") is not None else "vs"
        return "uncertain", m.start(group), m.end(group)
    if (m := _POST_NEG.match(low, lo, hi)) is not None:
        return "absent", m.start("cue"), m.end("cue")
    return None


def _sides(low: str, lo: int, hi: int) -> Laterality | None:
    sides = {m.group(1) for m in _SIDE.finditer(low, lo, hi)}
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


def _status(low: str, hit: _Hit, clause_lo: int, clause_hi: int) -> _Status:
    if hit.kind == "heart_normal":
        inner = _pre_cue(low, hit.start, hit.end)
        return inner if inner is not None and inner[0] == "uncertain" else ("absent", hit.start, hit.end)
    if hit.kind == "heart":
        inner = _pre_cue(low, hit.start, hit.end)
        if inner is not None:
            return inner
        # only a cue right before the construction governs it ("no enlarged heart", "possibly enlarged")
        before = _pre_cue(low, max(clause_lo, hit.start - 12), hit.start)
        return before if before is not None else ("present", hit.start, hit.start)
    if (m := _STRUCTURED_NEG.match(low, hit.end)) is not None:
        return "absent", m.start("cue"), m.end("cue")
    # Cues further back than a long list are not this phrase's (and the bound keeps a 20,000-character
    # run-on draft linear rather than quadratic in its phrases).
    pre = _pre_cue(low, max(clause_lo, hit.start - _CUE_WINDOW), hit.start)
    if pre is not None:
        return pre
    post = _post_cue(low, hit.end, clause_hi)
    if post is not None:
        return post
    return "present", hit.start, hit.start


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
    hits = [
        _Hit(_TERM_LABELS[" ".join(m.group(0).split())], m.start(), m.end(), "term")
        for m in _TERMS.finditer(low)
    ]
    hits.extend(_heart_hits(low))
    hits.extend(_Hit(Label.NO_FINDING, m.start(), m.end(), "normal") for m in _NORMAL_STUDY.finditer(low))
    hits = _drop_overlaps(hits)

    clause_starts = _clauses(low)
    mentions: list[DraftMention] = []
    dropped: dict[str, MentionStatus] = {}
    for i, hit in enumerate(hits):
        if hit.label is Label.NO_FINDING:
            mentions.append(_mention(draft, hit, "present", None, None))
            continue
        ci = bisect_right(clause_starts, hit.start) - 1
        lo = clause_starts[ci]
        hi = clause_starts[ci + 1] if ci + 1 < len(clause_starts) else len(draft)
        status, cue_start, cue_end = _status(low, hit, lo, hi)
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
    reports_other = any(st != "absent" for st in dropped.values())
    mentions, override = _resolve_normal(draft, mentions, clause_starts, reports_other)
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
    draft: str, mentions: list[DraftMention], clause_starts: list[int], reports_other: bool
) -> tuple[list[DraftMention], list[Note]]:
    """Decide whether the draft reads as a normal study (the ``no_finding`` mention).

    A normal-study statement beside a present or hedged finding is not a normal study: it is removed
    with a note. A draft that states no normal-study sentence but only denies findings ("Heart size
    normal. No effusion or pneumothorax.") reads as normal too, unless it reports something outside
    the six labels; the span is then the first denial's clause.
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
    if findings or normal or reports_other or not mentions:
        return mentions, []
    lo, hi = _clause_span(draft, clause_starts, mentions[0].start)
    inferred = construct_trusted(
        DraftMention,
        label=Label.NO_FINDING,
        status="present",
        span=draft[lo:hi],
        start=lo,
        end=hi,
        laterality=None,
        cue="only negative statements",
    )
    note = Note(
        stage="draft",
        code="normal_inferred",
        message="The draft only denies findings, so it is read as describing a normal study.",
    )
    return sorted([*mentions, inferred], key=lambda m: (m.start, LABEL_RANK[m.label])), [note]
