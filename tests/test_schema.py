"""The contracts enforce their invariants once, here: boxes, verbatim spans, counts, policy, context."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from auditor.compare import compare
from auditor.labels import URGENT_LABELS, Label
from auditor.schema import (
    AuditReport,
    Box,
    Comparison,
    DraftMention,
    DraftReading,
    Grounding,
    ImageFinding,
    Integrity,
    ModelInfo,
    Note,
    ParseOutcome,
    Policy,
    StudyContext,
)

MODEL = ModelInfo(backend="test", model_id="test-model")
DRAFT = "Small left pleural effusion. No pneumothorax."
EFFUSION = DraftMention(
    label=Label.PLEURAL_EFFUSION, status="present", span="pleural effusion", start=11, end=27
)
PTX = DraftMention(label=Label.PNEUMOTHORAX, status="absent", span="pneumothorax", start=32, end=44, cue="No")


# --- Box -----------------------------------------------------------------------------------------------


def test_box_valid_and_helpers() -> None:
    b = Box(x0=0.1, y0=0.2, x1=0.5, y1=0.6)
    assert b.as_list() == [0.1, 0.2, 0.5, 0.6]
    assert b.area == pytest.approx(0.16)
    assert Box(x0=0, y0=0, x1=1, y1=1).area == 1


@pytest.mark.parametrize(
    "coords",
    [
        (0.5, 0.1, 0.5, 0.9),  # x0 == x1
        (0.6, 0.1, 0.5, 0.9),  # x0 > x1
        (0.1, 0.5, 0.9, 0.5),  # y0 == y1
        (0.1, 0.6, 0.9, 0.5),  # y0 > y1
        (-0.1, 0.1, 0.5, 0.9),
        (0.1, -0.01, 0.5, 0.9),
        (0.1, 0.1, 1.1, 0.9),
        (0.1, 0.1, 0.5, 1.5),
        (0.1, 0.1, 500.0, 900.0),  # pixel or 0-1000 coordinates never pass as normalised
        (float("nan"), 0.1, 0.5, 0.9),
        (0.1, 0.1, float("inf"), 0.9),
    ],
)
def test_box_rejects_bad_coordinates(coords: tuple[float, float, float, float]) -> None:
    x0, y0, x1, y1 = coords
    with pytest.raises(ValidationError):
        Box(x0=x0, y0=y0, x1=x1, y1=y1)


def test_box_is_frozen() -> None:
    b = Box(x0=0.1, y0=0.2, x1=0.5, y1=0.6)
    with pytest.raises(ValidationError):
        b.x0 = 0.0  # type: ignore[misc]


# --- ImageFinding, DraftMention, DraftReading ------------------------------------------------------------


def test_no_finding_with_a_box_rejected() -> None:
    with pytest.raises(ValidationError, match="no_finding"):
        ImageFinding(label=Label.NO_FINDING, box=Box(x0=0.1, y0=0.1, x1=0.2, y1=0.2))
    assert ImageFinding(label=Label.NO_FINDING).box is None
    assert ImageFinding(label=Label.NODULE_MASS).box is None  # a finding without a usable box is allowed


def test_unknown_label_rejected() -> None:
    with pytest.raises(ValidationError):
        ImageFinding(label="atelectasis")  # type: ignore[arg-type]


def test_mention_offsets_must_match_span_length() -> None:
    with pytest.raises(ValidationError, match="span length"):
        DraftMention(label=Label.PNEUMOTHORAX, status="absent", span="pneumothorax", start=32, end=40)
    with pytest.raises(ValidationError):
        DraftMention(label=Label.PNEUMOTHORAX, status="absent", span="", start=0, end=0)
    with pytest.raises(ValidationError):
        DraftMention(label=Label.PNEUMOTHORAX, status="maybe", span="x", start=0, end=1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        DraftMention(label=Label.PNEUMOTHORAX, status="absent", span="x", start=-1, end=0)


def test_reading_accepts_verbatim_spans() -> None:
    r = DraftReading(draft=DRAFT, mentions=[EFFUSION, PTX], outcome=ParseOutcome.CLEAN, model=MODEL)
    for m in r.mentions:
        assert r.draft[m.start : m.end] == m.span


@pytest.mark.parametrize(
    "mention",
    [
        DraftMention(label=Label.PNEUMOTHORAX, status="absent", span="pneumothorax", start=31, end=43),
        DraftMention(label=Label.PNEUMOTHORAX, status="absent", span="Pneumothorax", start=32, end=44),
        DraftMention(label=Label.PNEUMOTHORAX, status="absent", span="pneumothorax", start=100, end=112),
    ],
    ids=["shifted", "case-differs", "past-the-end"],
)
def test_reading_rejects_span_not_draft_slice(mention: DraftMention) -> None:
    with pytest.raises(ValidationError, match="span"):
        DraftReading(draft=DRAFT, mentions=[mention], outcome=ParseOutcome.CLEAN, model=MODEL)


# --- extra fields are errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (Box, {"x0": 0.1, "y0": 0.1, "x1": 0.2, "y1": 0.2, "confidence": 0.9}),
        (ImageFinding, {"label": "pneumothorax", "bbox": [0.1, 0.1, 0.2, 0.2]}),
        (
            DraftMention,
            {"label": "pneumothorax", "status": "absent", "span": "x", "start": 0, "end": 1, "x": 1},
        ),
        (Note, {"stage": "compare", "code": "ok", "message": "m", "severity": "high"}),
        (Policy, {"urgent_label": ["pneumothorax"]}),
        (StudyContext, {"age": 7}),
        (Integrity, {"total": 0, "clean": 0, "recovered": 0, "failed": 0, "skipped": 0}),
        (Grounding, {"findings": [], "outcome": "clean", "model": MODEL.model_dump(), "findngs": []}),
        (Comparison, {"flags": [], "mode": "full", "policy": {}, "note": []}),
    ],
)
def test_extra_fields_rejected(model: type[BaseModel], data: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match=r"[Ee]xtra"):
        model.model_validate(data)


def test_note_code_is_snake_case() -> None:
    assert Note(stage="draft", code="label_dropped", message="m").code == "label_dropped"
    with pytest.raises(ValidationError):
        Note(stage="draft", code="Label-Dropped", message="m")
    with pytest.raises(ValidationError):
        Note(stage="elsewhere", code="x", message="m")  # type: ignore[arg-type]


# --- Integrity, Policy, StudyContext ------------------------------------------------------------


def test_integrity_must_add_up() -> None:
    assert Integrity(total=5, clean=3, recovered=1, failed=1).total == 5
    assert Integrity(total=0, clean=0, recovered=0, failed=0).total == 0
    with pytest.raises(ValidationError, match="total"):
        Integrity(total=5, clean=3, recovered=1, failed=0)
    with pytest.raises(ValidationError):
        Integrity(total=4, clean=3, recovered=1, failed=1)
    with pytest.raises(ValidationError):
        Integrity(total=0, clean=1, recovered=0, failed=-1)


def test_policy_defaults_and_no_finding_not_urgent() -> None:
    p = Policy()
    assert set(p.urgent_labels) == URGENT_LABELS
    assert p.uncertain_satisfies_image is True
    assert p.uncertain_is_assertion is False
    with pytest.raises(ValidationError, match="no_finding"):
        Policy(urgent_labels=[Label.PNEUMOTHORAX, Label.NO_FINDING])
    assert Policy(urgent_labels=[]).urgent_labels == []


@pytest.mark.parametrize("age", [0, 7, 17.5, 130])
def test_context_age_in_range(age: float) -> None:
    assert StudyContext(age_years=age).age_years == age


@pytest.mark.parametrize("age", [-1, -0.01, 130.5, 200])
def test_context_age_out_of_range(age: float) -> None:
    with pytest.raises(ValidationError):
        StudyContext(age_years=age)


@pytest.mark.parametrize("view", ["PA", "AP", "lateral", None])
def test_context_view_literal(view: str | None) -> None:
    assert StudyContext(view=view).view == view  # type: ignore[arg-type]


@pytest.mark.parametrize("view", ["pa", "LL", "oblique", ""])
def test_context_view_rejects_others(view: str) -> None:
    with pytest.raises(ValidationError):
        StudyContext(view=view)  # type: ignore[arg-type]


# --- JSON round trips ----------------------------------------------------------------------


def _grounding() -> Grounding:
    return Grounding(
        findings=[
            ImageFinding(label=Label.PNEUMOTHORAX, box=Box(x0=0.1, y0=0.05, x1=0.45, y1=0.5)),
            ImageFinding(label=Label.PLEURAL_EFFUSION, box=Box(x0=0.55, y0=0.6, x1=0.95, y1=0.9)),
            ImageFinding(label=Label.NODULE_MASS),
        ],
        outcome=ParseOutcome.RECOVERED,
        model=ModelInfo(backend="replay", model_id="m", revision="abc", prompt_version="v1", device="cpu"),
        raw_output='[{"label": "pneumothorax", "box_2d": [0.05, 0.1, 0.5, 0.45]}] trailing',
        notes=[Note(stage="image", code="output_recovered", message="trailing text dropped")],
        timings_ms={"generate": 12.5},
    )


def _reading() -> DraftReading:
    return DraftReading(
        draft=DRAFT,
        mentions=[EFFUSION.model_copy(update={"laterality": "left"}), PTX],
        outcome=ParseOutcome.CLEAN,
        model=MODEL,
        notes=[Note(stage="draft", code="label_dropped", message="x")],
    )


@pytest.mark.parametrize(
    "obj",
    [
        _grounding(),
        _reading(),
        compare(_grounding(), _reading()),
        compare(None, None),
        AuditReport(grounding=_grounding(), reading=_reading(), comparison=compare(_grounding(), _reading())),
    ],
    ids=["grounding", "reading", "comparison", "comparison-no-image", "audit-report"],
)
def test_json_round_trip(obj: BaseModel) -> None:
    text = obj.model_dump_json()
    back = type(obj).model_validate_json(text)
    assert back == obj
    assert back.model_dump_json() == text


def test_comparison_round_trip_keeps_flags_and_policy() -> None:
    c = compare(_grounding(), _reading(), Policy(uncertain_is_assertion=True), StudyContext(age_years=7))
    assert c.flags, "the fixture should raise flags"
    back = Comparison.model_validate_json(c.model_dump_json())
    assert [(f.kind, f.label, f.rule_id) for f in back.flags] == [
        (f.kind, f.label, f.rule_id) for f in c.flags
    ]
    assert back.policy == c.policy
    # the draft's "left" effusion met a box, and no view was given: the frontal reading is said
    assert [n.code for n in back.notes] == ["pediatric_caution", "laterality_view_assumed_frontal"]
