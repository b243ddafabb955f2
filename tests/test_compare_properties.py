"""Properties of the judge over random groundings and readings (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.compare import compare
from auditor.labels import FINDING_LABELS, LABEL_ORDER, LABEL_RANK, URGENT_LABELS, Label
from auditor.laterality import OPPOSITE, SIDELESS_LABELS, PatientSide, mirrored, patient_side
from auditor.schema import (
    Box,
    Comparison,
    DraftMention,
    DraftReading,
    Grounding,
    ImageFinding,
    Laterality,
    MentionStatus,
    ModelInfo,
    ParseOutcome,
    Policy,
    StudyContext,
)

MODEL = ModelInfo(backend="test", model_id="test-model")
SETTINGS = settings(max_examples=300, deadline=None)
STATUSES: tuple[MentionStatus, ...] = ("present", "absent", "uncertain")
TERMS: dict[Label, str] = {
    Label.PLEURAL_EFFUSION: "pleural effusion",
    Label.PNEUMOTHORAX: "pneumothorax",
    Label.LUNG_OPACITY_CONSOLIDATION: "consolidation",
    Label.NODULE_MASS: "mass",
    Label.CARDIOMEGALY: "cardiomegaly",
    Label.NO_FINDING: "normal study",
}
PREFIX: dict[str, str] = {"present": "There is ", "absent": "No ", "uncertain": "Possible "}

Part = tuple[Label, MentionStatus]


def make_reading(parts: list[Part], outcome: ParseOutcome = ParseOutcome.CLEAN) -> DraftReading:
    """One sentence per part, each mention's span a real substring of the draft."""
    draft = ""
    mentions = []
    for label, status in parts:
        prefix = "This is a " if label is Label.NO_FINDING else PREFIX[status]
        start = len(draft) + len(prefix)
        term = TERMS[label]
        draft += f"{prefix}{term}. "
        mentions.append(
            DraftMention(label=label, status=status, span=term, start=start, end=start + len(term))
        )
    return DraftReading(draft=draft, mentions=mentions, outcome=outcome, model=MODEL)


# --- strategies ---------------------------------------------------------------------------------------

unit_pair = st.lists(
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False),
    min_size=2,
    max_size=2,
    unique=True,
).map(sorted)


@st.composite
def boxes(draw: st.DrawFn) -> Box:
    x0, x1 = draw(unit_pair)
    y0, y1 = draw(unit_pair)
    return Box(x0=x0, y0=y0, x1=x1, y1=y1)


@st.composite
def groundings(draw: st.DrawFn, outcomes: tuple[ParseOutcome, ...] = (ParseOutcome.CLEAN,)) -> Grounding:
    labels = sorted(draw(st.sets(st.sampled_from(FINDING_LABELS))), key=LABEL_RANK.__getitem__)
    findings = [
        ImageFinding(label=lb, box=draw(boxes())) for lb in labels for _ in range(draw(st.integers(1, 3)))
    ]
    if draw(st.booleans()):
        findings.append(ImageFinding(label=Label.NO_FINDING))
    findings = draw(st.permutations(findings))
    outcome = draw(st.sampled_from(outcomes))
    return Grounding(findings=findings, outcome=outcome, model=MODEL)


def any_parts(labels: tuple[Label, ...] = LABEL_ORDER, statuses: tuple[MentionStatus, ...] = STATUSES):
    return st.lists(st.tuples(st.sampled_from(labels), st.sampled_from(statuses)), max_size=8)


@st.composite
def faithful_parts(draw: st.DrawFn, g: Grounding) -> list[Part]:
    """Every image label said present (or hedged); some other labels denied; normal only if nothing."""
    on_image = g.present_labels()
    parts: list[Part] = []
    for lb in FINDING_LABELS:
        if lb in on_image:
            parts.append((lb, draw(st.sampled_from(("present", "uncertain")))))
            if draw(st.booleans()):  # "no left effusion; small right effusion"
                parts.append((lb, "absent"))
        elif draw(st.booleans()):
            parts.append((lb, "absent"))
    if not on_image and draw(st.booleans()):
        parts.append((Label.NO_FINDING, "present"))
    return draw(st.permutations(parts))


policies = st.builds(
    Policy,
    urgent_labels=st.lists(st.sampled_from(FINDING_LABELS), unique=True),
    uncertain_satisfies_image=st.booleans(),
    uncertain_is_assertion=st.booleans(),
)
contexts = st.none() | st.builds(
    StudyContext,
    age_years=st.none() | st.floats(min_value=0, max_value=130, allow_nan=False),
    view=st.none() | st.sampled_from(["PA", "AP", "lateral"]),
)
readings = st.none() | st.builds(make_reading, any_parts(), st.sampled_from(list(ParseOutcome)))


def judge(
    g: Grounding | None, r: DraftReading | None, policy: Policy | None, context: StudyContext | None
) -> Comparison:
    """compare(), with a crash on valid inputs turned into a clear test failure."""
    try:
        return compare(g, r, policy, context)
    except Exception as exc:
        pytest.fail(
            f"BUG: compare raised {type(exc).__name__}: {exc!r} on valid inputs (policy={policy!r}); "
            "see test_compare.py::test_policy_uncertain_does_not_satisfy_image_gives_missing"
        )


def by_kind(c: Comparison, kind: str) -> list[Label]:
    return [f.label for f in c.flags if f.kind == kind]


# --- properties -------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data())
def test_faithful_reading_has_no_missing_and_no_unsupported(data: st.DataObject) -> None:
    g = data.draw(groundings(outcomes=(ParseOutcome.CLEAN, ParseOutcome.RECOVERED)))
    r = make_reading(data.draw(faithful_parts(g)))
    c = compare(g, r)
    assert c.mode == "full"
    assert by_kind(c, "MISSING") == []
    assert by_kind(c, "UNSUPPORTED") == []


@SETTINGS
@given(g=groundings(), parts=any_parts(), outcome=st.sampled_from(list(ParseOutcome)), no_draft=st.booleans())
def test_urgent_exactly_for_urgent_image_labels(
    g: Grounding, parts: list[Part], outcome: ParseOutcome, no_draft: bool
) -> None:
    c = compare(g, None if no_draft else make_reading(parts, outcome))
    expected = sorted(g.present_labels() & URGENT_LABELS, key=LABEL_RANK.__getitem__)
    assert sorted(by_kind(c, "URGENT"), key=LABEL_RANK.__getitem__) == expected
    reported = [f.draft_status == "present" for f in c.flags if f.kind == "URGENT"]
    assert reported == sorted(reported), "an URGENT finding the draft already reports comes after the others"
    if no_draft or outcome is ParseOutcome.FAILED:
        assert {f.kind for f in c.flags} <= {"URGENT"}
        assert c.mode == "image_only"


@SETTINGS
@given(g=groundings(), parts=any_parts(), policy=policies, context=contexts, data=st.data())
def test_output_independent_of_input_order(
    g: Grounding, parts: list[Part], policy: Policy, context: StudyContext | None, data: st.DataObject
) -> None:
    r = make_reading(parts)
    g2 = g.model_copy(update={"findings": data.draw(st.permutations(g.findings))})
    r2 = r.model_copy(update={"mentions": data.draw(st.permutations(r.mentions))})
    assert judge(g, r, policy, context).model_dump() == judge(g2, r2, policy, context).model_dump()


@SETTINGS
@given(data=st.data(), context=contexts)
def test_compare_never_raises_and_is_deterministic(data: st.DataObject, context: StudyContext | None) -> None:
    # None and failed inputs are drawn now and then; mostly the judge sees real, overlapping labels
    often = st.sampled_from([True, True, True, False])
    g = data.draw(groundings(outcomes=tuple(ParseOutcome))) if data.draw(often) else None
    on_image = sorted(g.present_labels(), key=LABEL_RANK.__getitem__) if g else []
    label_pool = tuple(on_image * 3) + LABEL_ORDER  # biased towards labels the image has
    r = None
    if data.draw(often):
        r = make_reading(
            data.draw(any_parts(labels=label_pool)), data.draw(st.sampled_from(list(ParseOutcome)))
        )
    policy = data.draw(policies) if data.draw(often) else None
    first = judge(g, r, policy, context)
    second = compare(g, r, policy, context)
    assert first.model_dump() == second.model_dump()
    assert first.policy == (policy or Policy())
    rank = {"URGENT": 0, "LATERALITY": 1, "MISSING": 2, "UNSUPPORTED": 3}
    # URGENT findings the draft already reports come after the URGENT ones it does not
    keys = [
        (rank[f.kind], f.kind == "URGENT" and f.draft_status == "present", LABEL_RANK[f.label])
        for f in first.flags
    ]
    assert keys == sorted(keys)
    assert len(keys) == len(set(keys)), "at most one flag per (kind, label)"


@SETTINGS
@given(g=groundings(), parts=any_parts(labels=FINDING_LABELS, statuses=("present", "absent")))
def test_missing_plus_unsupported_is_the_symmetric_difference(g: Grounding, parts: list[Part]) -> None:
    c = compare(g, make_reading(parts))
    on_image = g.present_labels()
    in_draft = {lb for lb, status in parts if status == "present"}
    assert set(by_kind(c, "MISSING")) == on_image - in_draft
    assert set(by_kind(c, "UNSUPPORTED")) == in_draft - on_image
    assert len(by_kind(c, "MISSING")) + len(by_kind(c, "UNSUPPORTED")) == len(on_image ^ in_draft)


# --- laterality ------------------------------------------------------------------------------------------
# Boxes on a 1/32 grid, so that mirroring (x -> 1 - x) is exact and no box sits on a threshold.

SIDED_LABELS = tuple(lb for lb in FINDING_LABELS if lb not in SIDELESS_LABELS)
grid = st.integers(min_value=0, max_value=32).map(lambda k: k / 32)
Sided = tuple[Label, MentionStatus, Laterality | None]


def make_sided_reading(parts: list[Sided]) -> DraftReading:
    """ "[Possible|No] [side] term." per part, the side on the mention as the reader would put it."""
    draft = ""
    mentions = []
    for label, status, side in parts:
        head = PREFIX[status] + (f"{side} " if side else "")
        start = len(draft) + len(head)
        term = TERMS[label]
        draft += f"{head}{term}. "
        mentions.append(
            DraftMention(
                label=label, status=status, span=term, start=start, end=start + len(term), laterality=side
            )
        )
    return DraftReading(draft=draft, mentions=mentions, outcome=ParseOutcome.CLEAN, model=MODEL)


@st.composite
def grid_boxes(draw: st.DrawFn, side: PatientSide | None = None) -> Box:
    """Anywhere; or, for a side, wholly inside that half's outer 0.4 of the width (clearly on it)."""
    xs = sorted(draw(st.lists(grid, min_size=2, max_size=2, unique=True)))
    ys = sorted(draw(st.lists(grid, min_size=2, max_size=2, unique=True)))
    if side is not None:
        xs = [x * 0.4 * 32 // 1 / 32 for x in xs]  # onto [0, 0.4], still on the grid
        if xs[0] == xs[1]:
            xs[1] += 1 / 32
    box = Box(x0=xs[0], y0=ys[0], x1=xs[1], y1=ys[1])
    return mirrored(box) if side == "left" else box  # built on the image's left = the patient's right


@st.composite
def sided_groundings(draw: st.DrawFn) -> Grounding:
    labels = draw(st.sets(st.sampled_from(FINDING_LABELS), min_size=1))
    findings = [
        ImageFinding(label=lb, box=draw(grid_boxes()))
        for lb in labels
        for _ in range(draw(st.integers(1, 3)))
    ]
    return Grounding(findings=draw(st.permutations(findings)), outcome=ParseOutcome.CLEAN, model=MODEL)


def faithful_side(g: Grounding, label: Label, draw: st.DrawFn) -> Laterality | None:
    """The side as on the image: the clear sides of its boxes; any side at all where none is clear."""
    clear = {patient_side(f.box) for f in g.findings if f.label is label and f.box is not None} - {None}
    if clear == {"left", "right"}:
        return "bilateral"
    if clear:
        return draw(st.sampled_from([*clear, None]))
    return draw(st.sampled_from(["left", "right", "bilateral", None]))


@st.composite
def faithful_sided_parts(draw: st.DrawFn, g: Grounding) -> list[Sided]:
    """Every image label asserted on its own side (or no side); now and then the other side denied."""
    parts: list[Sided] = []
    for lb in sorted(g.present_labels(), key=LABEL_RANK.__getitem__):
        side = None if lb in SIDELESS_LABELS else faithful_side(g, lb, draw)
        parts.append((lb, draw(st.sampled_from(("present", "uncertain"))), side))
        if side in ("left", "right") and draw(st.booleans()):  # "no left effusion; small right effusion"
            parts.append((lb, "absent", OPPOSITE[side]))
    return draw(st.permutations(parts))


frontal = st.none() | st.builds(StudyContext, view=st.sampled_from(["PA", "AP"]))


@SETTINGS
@given(data=st.data(), policy=policies, context=contexts)
def test_a_faithful_draft_never_gets_laterality(
    data: st.DataObject, policy: Policy, context: StudyContext | None
) -> None:
    g = data.draw(sided_groundings())
    c = judge(g, make_sided_reading(data.draw(faithful_sided_parts(g))), policy, context)
    assert by_kind(c, "LATERALITY") == []


@SETTINGS
@given(
    data=st.data(),
    context=frontal,
    label=st.sampled_from(SIDED_LABELS),
    side=st.sampled_from(["left", "right"]),
)
def test_swapping_the_side_of_a_one_sided_finding_always_flags(
    data: st.DataObject, context: StudyContext | None, label: Label, side: PatientSide
) -> None:
    g = data.draw(sided_groundings())
    one_sided = [
        ImageFinding(label=label, box=data.draw(grid_boxes(side)))
        for _ in range(data.draw(st.integers(1, 3)))
    ]
    g = g.model_copy(update={"findings": [f for f in g.findings if f.label is not label] + one_sided})
    parts = [p for p in data.draw(faithful_sided_parts(g)) if p[0] is not label]
    status: MentionStatus = data.draw(st.sampled_from(("present", "uncertain")))
    parts.insert(data.draw(st.integers(0, len(parts))), (label, status, OPPOSITE[side]))
    c = judge(g, make_sided_reading(parts), None, context)
    assert [(f.label, f.rule_id) for f in c.flags if f.kind == "LATERALITY"] == [
        (label, "LATERALITY.opposite_side")
    ]


def _swap(side: Laterality | None) -> Laterality | None:
    return OPPOSITE[side] if side == "left" or side == "right" else side


@SETTINGS
@given(data=st.data(), policy=policies, context=contexts)
def test_mirroring_the_image_and_swapping_every_side_gives_the_same_flags(
    data: st.DataObject, policy: Policy, context: StudyContext | None
) -> None:
    g = data.draw(sided_groundings())
    labels = tuple(FINDING_LABELS)
    sides: list[Laterality | None] = ["left", "right", "bilateral", None]
    parts: list[Sided] = data.draw(
        st.lists(
            st.tuples(st.sampled_from(labels), st.sampled_from(STATUSES), st.sampled_from(sides)), max_size=8
        )
    )
    parts = [(lb, s, None if lb in SIDELESS_LABELS else side) for lb, s, side in parts]
    mirror = g.model_copy(
        update={"findings": [f.model_copy(update={"box": f.box and mirrored(f.box)}) for f in g.findings]}
    )
    swapped = [(lb, s, _swap(side)) for lb, s, side in parts]
    a = judge(g, make_sided_reading(parts), policy, context)
    b = judge(mirror, make_sided_reading(swapped), policy, context)
    key = [(f.kind, f.label, f.rule_id, f.draft_status) for f in a.flags]
    assert key == [(f.kind, f.label, f.rule_id, f.draft_status) for f in b.flags]
    assert [n.code for n in a.notes] == [n.code for n in b.notes]
