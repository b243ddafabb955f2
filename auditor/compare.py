"""The judge: model-free, deterministic, no I/O. The only place a flag is decided.

It applies exactly the table in DESIGN.md to the five finding labels. For each label the draft's
mentions collapse to one status, the most assertive one (present > uncertain > absent), so a draft
that says "no left effusion; small right effusion" is not read as a denial. Flags come out ordered
URGENT, MISSING, UNSUPPORTED, each in the canonical label order, and carry the evidence that made them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from auditor.labels import FINDING_LABELS, HUMAN_NAMES, LABEL_RANK, Label
from auditor.schema import (
    Comparison,
    DraftMention,
    DraftReading,
    DraftStatus,
    Flag,
    FlagKind,
    Grounding,
    ImageFinding,
    MentionStatus,
    Note,
    Policy,
    StudyContext,
    construct_trusted,
)

RULE_MISSING_DENIED = "MISSING.denied"
RULE_MISSING_DENIED_BY_NORMAL = "MISSING.denied_by_normal"
RULE_MISSING_NOT_MENTIONED = "MISSING.not_mentioned"
RULE_MISSING_HEDGED = "MISSING.hedged"
RULE_UNSUPPORTED = "UNSUPPORTED.asserted"
RULE_UNSUPPORTED_HEDGED = "UNSUPPORTED.hedged"
RULE_URGENT = "URGENT.on_image"

PEDIATRIC_AGE_YEARS = 18
_DEFAULT_POLICY = Policy()


def _finding_key(f: ImageFinding) -> tuple[int, tuple[float, ...]]:
    b = f.box
    return LABEL_RANK[f.label], (b.x0, b.y0, b.x1, b.y1) if b is not None else ()


def _mention_key(m: DraftMention) -> tuple[int, int, int, str]:
    return m.start, m.end, LABEL_RANK[m.label], m.status


def _where(boxes: int) -> str:
    if boxes == 0:
        return "the image model marked it without a usable box; review the whole image"
    return "see the marked region" if boxes == 1 else f"see the {boxes} marked regions"


# How the draft treated a label, in words; one entry per DraftStatus, so no status can lack a message.
_DRAFT_SAYS: dict[DraftStatus, str] = {
    "denied": "the draft states there is no {name}",
    "denied_by_normal": "the draft describes a normal study",
    "not_mentioned": "the draft does not mention {name}",
    "uncertain": "the draft only hedges on {name}",
    "present": "the draft reports {name}",
    "absent": "the draft states there is no {name}",
}


@functools.lru_cache(maxsize=4096)
def _message(kind: FlagKind, label: Label, status: DraftStatus, boxes: int) -> str:
    """The second-look request; pure in its arguments, so cached (it is most of a flag's cost)."""
    name = HUMAN_NAMES[label]
    if kind == "URGENT":
        return (
            f"The image model marked a possible {name}, a can't-miss category. "
            f"Please take one more look ({_where(boxes)})."
        )
    if kind == "MISSING":
        said = _DRAFT_SAYS[status].format(name=name)
        return (
            f"The image model marked a possible {name}, but {said}. "
            f"Please take a second look ({_where(boxes)})."
        )
    return (
        f"The draft mentions {name}, but the image model did not mark it. "
        "Please take a second look at the image and the wording."
    )


def draft_status(mentions: list[DraftMention]) -> MentionStatus | None:
    """The most assertive status among a label's mentions (present > uncertain > absent)."""
    best: MentionStatus | None = None
    for m in mentions:
        if m.status == "present":
            return "present"
        if best is None or m.status == "uncertain":
            best = m.status
    return best


_draft_status = draft_status  # the old private name, kept for callers that still use it


def _context_notes(context: StudyContext | None) -> list[Note]:
    notes: list[Note] = []
    if context is None:
        return notes
    if context.age_years is not None and context.age_years < PEDIATRIC_AGE_YEARS:
        notes.append(
            Note(
                stage="context",
                code="pediatric_caution",
                message=(
                    f"Patient age {context.age_years:g} years: the models were trained on adult radiographs "
                    "and are not validated in children; cardiomegaly (and thymic shadow read as opacity) "
                    "is a known false positive. Weigh every flag accordingly."
                ),
            )
        )
    if context.view == "AP":
        notes.append(
            Note(
                stage="context",
                code="ap_view_heart_size",
                message=(
                    "AP view: the heart projects larger than on a PA film, so cardiomegaly flags "
                    "(either way) deserve extra caution."
                ),
            )
        )
    return notes


def _flag(
    kind: FlagKind,
    label: Label,
    rule_id: str,
    status: DraftStatus,
    findings: list[ImageFinding],
    mentions: list[DraftMention],
) -> Flag:
    # inputs are validated contracts and every field here is built from them: skip re-validation
    return construct_trusted(
        Flag,
        kind=kind,
        label=label,
        rule_id=rule_id,
        draft_status=status,
        message=_message(kind, label, status, sum(1 for f in findings if f.box is not None)),
        image_evidence=findings,
        draft_evidence=mentions,
    )


def _judge_label(
    label: Label,
    status: MentionStatus | None,
    findings: list[ImageFinding],
    mentions: list[DraftMention],
    draft_is_normal: list[DraftMention],
    policy: Policy,
) -> Flag | None:
    """Apply the DESIGN.md table to one label: at most one MISSING or UNSUPPORTED flag."""
    if findings:
        if status == "absent":
            return _flag("MISSING", label, RULE_MISSING_DENIED, "denied", findings, mentions)
        if status == "uncertain" and not policy.uncertain_satisfies_image:
            return _flag("MISSING", label, RULE_MISSING_HEDGED, "uncertain", findings, mentions)
        if status is None and draft_is_normal:
            return _flag(
                "MISSING", label, RULE_MISSING_DENIED_BY_NORMAL, "denied_by_normal", findings, draft_is_normal
            )
        if status is None:
            return _flag("MISSING", label, RULE_MISSING_NOT_MENTIONED, "not_mentioned", findings, [])
        return None
    if status == "present":
        return _flag("UNSUPPORTED", label, RULE_UNSUPPORTED, "present", [], mentions)
    if status == "uncertain" and policy.uncertain_is_assertion:
        return _flag("UNSUPPORTED", label, RULE_UNSUPPORTED_HEDGED, "uncertain", [], mentions)
    return None


def _group_findings(findings: Iterable[ImageFinding]) -> dict[Label, list[ImageFinding]]:
    grouped: dict[Label, list[ImageFinding]] = {}
    for f in sorted(findings, key=_finding_key):
        if f.label is not Label.NO_FINDING:
            grouped.setdefault(f.label, []).append(f)
    return grouped


def _group_mentions(mentions: Iterable[DraftMention]) -> dict[Label, list[DraftMention]]:
    grouped: dict[Label, list[DraftMention]] = {}
    for m in sorted(mentions, key=_mention_key):
        grouped.setdefault(m.label, []).append(m)
    return grouped


def _normal_statements(mentions: dict[Label, list[DraftMention]]) -> list[DraftMention]:
    """The draft's normal-study statements, unless it also reports a finding (present or hedged):
    "Small effusion. Otherwise normal." is not a normal study, whoever read it."""
    if any(m.status != "absent" for lb, ms in mentions.items() if lb is not Label.NO_FINDING for m in ms):
        return []
    return [m for m in mentions.get(Label.NO_FINDING, []) if m.status == "present"]


def _said_as(status: MentionStatus | None, normal: list[DraftMention]) -> DraftStatus:
    """How the draft treated a label, in the words MISSING uses, so URGENT and MISSING agree."""
    if status == "absent":
        return "denied"
    if status is None:
        return "denied_by_normal" if normal else "not_mentioned"
    return status


def _image_only_note(reading: DraftReading | None) -> Note:
    if reading is None or not reading.draft.strip():
        return Note(
            stage="compare",
            code="no_draft_image_only",
            message="No draft was given, so only URGENT image findings are shown; "
            "MISSING and UNSUPPORTED were not checked.",
        )
    return Note(
        stage="compare",
        code="draft_unparsed_image_only",
        message="The draft could not be read, so only URGENT image findings are shown; "
        "MISSING and UNSUPPORTED were not checked.",
    )


def compare(
    grounding: Grounding | None,
    reading: DraftReading | None,
    policy: Policy | None = None,
    context: StudyContext | None = None,
) -> Comparison:
    """Judge one study. ``grounding`` None or failed: no flags. ``reading`` None or failed: URGENT only."""
    policy = policy or _DEFAULT_POLICY
    notes = _context_notes(context)
    if grounding is None or grounding.failed:
        notes.insert(
            0,
            Note(
                stage="compare",
                code="image_stage_failed",
                message="No usable image findings, so nothing was compared and no flag was raised. "
                "This is not a clean result: review the study without the tool.",
            ),
        )
        return construct_trusted(Comparison, flags=[], mode="no_image", policy=policy, notes=notes)

    by_label = _group_findings(grounding.findings)
    urgent: list[Flag] = []  # each list is filled in label order, so their concatenation is the order
    missing: list[Flag] = []
    unsupported: list[Flag] = []
    image_only = reading is None or reading.failed
    mentions = {} if image_only or reading is None else _group_mentions(reading.mentions)
    normal = _normal_statements(mentions)

    for label in FINDING_LABELS:
        found = by_label.get(label, [])
        said = mentions.get(label, [])
        if not (found or said):
            continue
        status = draft_status(said)
        if found and label in policy.urgent_labels:
            said_as = (
                _said_as(status, normal) if not image_only else "not_mentioned" if status is None else status
            )
            urgent.append(_flag("URGENT", label, RULE_URGENT, said_as, found, said))
        if not image_only and (flag := _judge_label(label, status, found, said, normal, policy)) is not None:
            (missing if flag.kind == "MISSING" else unsupported).append(flag)

    flags = urgent + missing + unsupported
    if image_only:
        notes.insert(0, _image_only_note(reading))
    mode = "image_only" if image_only else "full"
    return construct_trusted(Comparison, flags=flags, mode=mode, policy=policy, notes=notes)
