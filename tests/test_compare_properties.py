"""Properties of the judge over random groundings and readings (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.compare import compare
from auditor.labels import FINDING_LABELS, LABEL_ORDER, LABEL_RANK, URGENT_LABELS, Label
from auditor.schema import (
    Box,
    Comparison,
    DraftMention,
    DraftReading,
    Grounding,
    ImageFinding,
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
    assert by_kind(c, "URGENT") == expected
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
    rank = {"URGENT": 0, "MISSING": 1, "UNSUPPORTED": 2}
    keys = [(rank[f.kind], LABEL_RANK[f.label]) for f in first.flags]
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
