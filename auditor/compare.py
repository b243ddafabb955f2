"""The judge: model-free, deterministic, no I/O. The only place a flag is decided.

It applies exactly `DECISION_TABLE` (below; ARCHITECTURE.md explains it) to the five finding
labels. For each label the draft's mentions collapse to one status, the most assertive one (present >
uncertain > absent), so a draft that says "no left effusion; small right effusion" is not read as a
denial. Where the draft states a side, it is checked against the side of the image's boxes
(`auditor.laterality`): LATERALITY. Flags come out ordered URGENT, LATERALITY, MISSING, UNSUPPORTED,
each in the canonical label order, and carry the evidence that made them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Final

from auditor.labels import FINDING_LABELS, HUMAN_NAMES, LABEL_RANK, Label
from auditor.laterality import OPPOSITE, SIDELESS_LABELS, PatientSide, sides_of
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
    View,
    construct_trusted,
)

RULE_MISSING_DENIED = "MISSING.denied"
RULE_MISSING_DENIED_BY_NORMAL = "MISSING.denied_by_normal"
RULE_MISSING_NOT_MENTIONED = "MISSING.not_mentioned"
RULE_MISSING_HEDGED = "MISSING.hedged"
RULE_UNSUPPORTED = "UNSUPPORTED.asserted"
RULE_UNSUPPORTED_HEDGED = "UNSUPPORTED.hedged"
RULE_URGENT = "URGENT.on_image"
RULE_LATERALITY_OPPOSITE = "LATERALITY.opposite_side"
RULE_LATERALITY_BOTH_ON_IMAGE = "LATERALITY.both_sides_on_image"


@dataclass(frozen=True)
class Decision:
    """One row of the judge's table: what the image model found, what the draft says, the policy under
    which the row holds, and the flag kind raised ("none" for none) with its rule id, or the note."""

    image: str
    draft: str
    policy: str
    flag: str
    rule_id: str | None = None
    note: str | None = None
    besides: bool = False
    """Raised as well as any other flag of the label (URGENT, LATERALITY), not instead of one."""


DECISION_TABLE: Final[tuple[Decision, ...]] = (
    Decision("present", "present", "any", "none"),
    Decision("present", "uncertain", "uncertain_satisfies_image=true (default)", "none"),
    Decision("present", "uncertain", "uncertain_satisfies_image=false", "MISSING", RULE_MISSING_HEDGED),
    Decision("present", "absent (denied)", "any", "MISSING", RULE_MISSING_DENIED),
    Decision(
        "present",
        "not mentioned, draft describes a normal study",
        "any",
        "MISSING",
        RULE_MISSING_DENIED_BY_NORMAL,
    ),
    Decision("present", "not mentioned", "any", "MISSING", RULE_MISSING_NOT_MENTIONED),
    Decision("absent", "present", "any", "UNSUPPORTED", RULE_UNSUPPORTED),
    Decision("absent", "uncertain", "uncertain_is_assertion=false (default)", "none"),
    Decision("absent", "uncertain", "uncertain_is_assertion=true", "UNSUPPORTED", RULE_UNSUPPORTED_HEDGED),
    Decision("absent", "absent or not mentioned", "any", "none"),
    Decision("present, label in URGENT", "anything", "any", "URGENT", RULE_URGENT, besides=True),
    Decision(
        "present, every box clearly on the other side",
        "asserted (present or uncertain) on one side",
        "check_laterality=true (default)",
        "LATERALITY",
        RULE_LATERALITY_OPPOSITE,
        besides=True,
    ),
    Decision(
        "present, boxes clearly on both sides",
        "asserted on one side",
        "check_laterality=true (default)",
        "LATERALITY",
        RULE_LATERALITY_BOTH_ON_IMAGE,
        besides=True,
    ),
    Decision("present, boxes on one side", "asserted bilateral", "any", "none"),
    Decision("present, lateral view", "a side", "any", "none", note="laterality_not_checked_lateral_view"),
)
"""The judge's table as data, beside the rule ids it names: the policy resource serves it, a test checks
the README's table against it and that every rule id above has its row. "Asserted" is present or
uncertain; a box is "clearly" on a side as `auditor.laterality` defines it. LATERALITY never applies
to cardiomegaly or no_finding."""
DECISION_COLUMNS: Final = ("image", "draft", "policy", "flag", "rule_id", "note", "besides")


def decision_table() -> list[dict[str, object]]:
    """The table as JSON-ready rows, one key per column of DECISION_COLUMNS."""
    return [asdict(row) for row in DECISION_TABLE]


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
def _message(kind: FlagKind, label: Label, status: DraftStatus, boxes: int, variant: str = "") -> str:
    """The second-look request; pure in its arguments, so cached (it is most of a flag's cost).

    ``variant``: ``no_draft`` for an URGENT flag with no draft read; ``beside_urgent`` for a MISSING
    flag whose label is also URGENT, which then points at that flag instead of repeating it (the
    URGENT message already says what the draft said)."""
    name = HUMAN_NAMES[label]
    if kind == "URGENT":
        head = f"The image model marked a possible {name}, a can't-miss category"
        if variant == "no_draft":
            return f"{head}. Please take one more look ({_where(boxes)})."
        if status == "present":
            return (
                f"{head}, and the draft reports it: flagged as urgent, not as a disagreement. Please "
                f"take one more look and make sure it is acted on ({_where(boxes)})."
            )
        said = (
            "the draft only hedges on it" if status == "uncertain" else _DRAFT_SAYS[status].format(name=name)
        )
        joint = "and" if status == "uncertain" else "but"
        return f"{head}, {joint} {said}. Please take one more look ({_where(boxes)})."
    if kind == "MISSING":
        said = _DRAFT_SAYS[status].format(name=name)
        if variant == "beside_urgent":
            where = _where(boxes)
            return (
                f"The same possible {name} as the URGENT flag: {said}. One second look covers both ({where})."
            )
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
    variant: str = "",
) -> Flag:
    # inputs are validated contracts and every field here is built from them: skip re-validation
    return construct_trusted(
        Flag,
        kind=kind,
        label=label,
        rule_id=rule_id,
        draft_status=status,
        message=_message(kind, label, status, sum(1 for f in findings if f.box is not None), variant),
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
    """Apply the decision table to one label: at most one MISSING or UNSUPPORTED flag."""
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


# ---- laterality --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _side_message(rule_id: str, label: Label, said: PatientSide) -> str:
    """Names the draft's side and asks for a look; never says which side is right."""
    name = HUMAN_NAMES[label]
    side: str
    if rule_id == RULE_LATERALITY_OPPOSITE:
        side, where = said, "but every box the image model marked for it lies on the other side of the image"
    else:
        side, where = f"{said} only", "but the image model marked it on both sides of the image"
    return (
        f"The draft places the {name} on the {side}, {where} (read as a frontal film: the image's left "
        "half is the patient's right). Please take a second look at the side."
    )


def side_words(flag: Flag) -> str:
    """A LATERALITY flag in a few words for the picture and the worklist: what the draft said about
    the side and where the boxes lie, never which one is right."""
    said = " and ".join(sorted({m.laterality for m in flag.draft_evidence if m.laterality is not None}))
    if flag.rule_id == RULE_LATERALITY_BOTH_ON_IMAGE:
        return f"draft says {said} only, boxes on both sides"
    return f"draft says {said}, boxes on the other side"


def _stated_sides(mentions: list[DraftMention]) -> tuple[set[PatientSide], list[DraftMention]]:
    """The sides the draft asserts the finding on (present or hedged mentions that name a side)."""
    sides: set[PatientSide] = set()
    stating = []
    for m in mentions:
        if m.status != "absent" and m.laterality is not None:
            stating.append(m)
            sides.update(("left", "right") if m.laterality == "bilateral" else (m.laterality,))
    return sides, stating


def _judge_side(
    label: Label, findings: list[ImageFinding], mentions: list[DraftMention], view: View | None
) -> tuple[Flag | None, bool]:
    """LATERALITY for one label, and whether a stated side met a box (so the view mattered).

    One side stated, every box clearly on the other: ``opposite_side``. One side stated, boxes
    clearly on both: ``both_sides_on_image``. "Bilateral" against boxes on one side is no flag: a
    missing box on the other side is not evidence that side is clear. A box without a side (across
    or near the midline) or a finding without a box is never read as on a side, and it blocks
    ``opposite_side``, which needs every box.
    """
    sides, stating = _stated_sides(mentions)
    compared = bool(stating) and any(f.box is not None for f in findings) and label not in SIDELESS_LABELS
    if not compared or view == "lateral" or len(sides) != 1:
        return None, compared
    (said,) = sides
    on_image = sides_of(f.box for f in findings)
    if on_image == {OPPOSITE[said]}:
        rule_id = RULE_LATERALITY_OPPOSITE
    elif {"left", "right"} <= on_image:
        rule_id = RULE_LATERALITY_BOTH_ON_IMAGE
    else:
        return None, compared
    status = draft_status(stating) or "present"
    flag = construct_trusted(
        Flag,
        kind="LATERALITY",
        label=label,
        rule_id=rule_id,
        draft_status=status,
        message=_side_message(rule_id, label, said),
        image_evidence=findings,
        draft_evidence=stating,
    )
    return flag, compared


def _view_of(context: StudyContext | None, grounding: Grounding) -> View | None:
    """The caller's view wins; else the one the DICOM header stated; else unknown."""
    if context is not None and context.view is not None:
        return context.view
    return grounding.image.view if grounding.image is not None else None


def _side_note(view: View | None) -> Note | None:
    """Said whenever a stated side met a box: how the image's x was read, or that it was not."""
    if view == "lateral":
        return Note(
            stage="compare",
            code="laterality_not_checked_lateral_view",
            message="Lateral view: the image gives no left or right side, so the sides the draft "
            "states were not checked.",
        )
    if view is None:
        return Note(
            stage="compare",
            code="laterality_view_assumed_frontal",
            message="The view is not known, so sides were read as on a PA/AP frontal film in the "
            "standard display (the image's left half is the patient's right). If this is a lateral or "
            "a mirrored image, disregard any LATERALITY flag.",
        )
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
    lateral: list[Flag] = []
    missing: list[Flag] = []
    unsupported: list[Flag] = []
    image_only = reading is None or reading.failed
    mentions = {} if image_only or reading is None else _group_mentions(reading.mentions)
    normal = _normal_statements(mentions)
    view = _view_of(context, grounding)
    side_compared = False

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
            variant = "no_draft" if reading is None or not reading.draft.strip() else ""
            urgent.append(_flag("URGENT", label, RULE_URGENT, said_as, found, said, variant))
        if said and found and policy.check_laterality:
            side_flag, compared = _judge_side(label, found, said, view)
            side_compared |= compared
            if side_flag is not None:
                lateral.append(side_flag)
        if not image_only and (flag := _judge_label(label, status, found, said, normal, policy)) is not None:
            if flag.kind == "MISSING" and label in policy.urgent_labels:  # one message, not two alike
                flag = _flag(
                    "MISSING",
                    label,
                    flag.rule_id,
                    flag.draft_status,
                    found,
                    flag.draft_evidence,
                    "beside_urgent",
                )
            (missing if flag.kind == "MISSING" else unsupported).append(flag)

    urgent.sort(key=lambda f: f.draft_status == "present")  # what the draft already reports comes last
    flags = urgent + lateral + missing + unsupported
    if image_only:
        notes.insert(0, _image_only_note(reading))
    if side_compared and (side_note := _side_note(view)) is not None:
        notes.append(side_note)
    mode = "image_only" if image_only else "full"
    return construct_trusted(Comparison, flags=flags, mode=mode, policy=policy, notes=notes)
