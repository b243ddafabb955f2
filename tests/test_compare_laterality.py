"""LATERALITY: the side the draft states against the side of the image's boxes, row by row, with the
view rules (unknown = frontal with a note, lateral = no side) and the box-side convention itself."""

from __future__ import annotations

import pytest

from auditor.compare import DECISION_TABLE, compare
from auditor.draft_rules import read_draft
from auditor.labels import FINDING_LABELS, Label
from auditor.laterality import patient_side
from auditor.schema import (
    Box,
    Comparison,
    DraftMention,
    DraftReading,
    Grounding,
    ImageFinding,
    ImageInfo,
    MentionStatus,
    ModelInfo,
    ParseOutcome,
    Policy,
    StudyContext,
    View,
)
from tests.test_compare_properties import Sided, make_sided_reading

L = Label
MODEL = ModelInfo(backend="test", model_id="test-model")
IMAGE_LEFT = Box(x0=0.1, y0=0.5, x1=0.4, y1=0.9)  # the patient's right on a frontal film
IMAGE_RIGHT = Box(x0=0.6, y0=0.5, x1=0.9, y1=0.9)  # the patient's left
ACROSS = Box(x0=0.3, y0=0.3, x1=0.7, y1=0.7)
LATERAL_LABELS = [lb for lb in FINDING_LABELS if lb is not L.CARDIOMEGALY]


def grounding(*findings: tuple[Label, Box | None], view: View | None = None) -> Grounding:
    image = None
    if view is not None:
        image = ImageInfo(sha256="0" * 64, width=10, height=10, source_format="DICOM", view=view)
    return Grounding(
        findings=[ImageFinding(label=lb, box=b) for lb, b in findings],
        outcome=ParseOutcome.CLEAN,
        model=MODEL,
        image=image,
    )


def reading(*parts: Sided) -> DraftReading:
    """One sentence per part: "[Possible|No] [side] term." with the side on the mention."""
    return make_sided_reading(list(parts))


def lateral_flags(c: Comparison) -> list[tuple[Label, str]]:
    return [(f.label, f.rule_id) for f in c.flags if f.kind == "LATERALITY"]


def codes(c: Comparison) -> list[str]:
    return [n.code for n in c.notes]


# --- the convention -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "side"),
    [
        (IMAGE_LEFT, "right"),  # the image's left half is the patient's right
        (IMAGE_RIGHT, "left"),
        (ACROSS, None),  # across the midline: no side
        (Box(x0=0.2, y0=0.1, x1=0.55, y1=0.3), None),  # centre on the left, but it crosses the midline
        (Box(x0=0.44, y0=0.1, x1=0.5, y1=0.3), None),  # centre inside the margin band
        (Box(x0=0.38, y0=0.1, x1=0.5, y1=0.3), None),  # centre beyond, but most of it inside the band
        (Box(x0=0.3, y0=0.1, x1=0.5, y1=0.3), "right"),  # three quarters beyond the band
        (Box(x0=0.0, y0=0.0, x1=0.05, y1=0.05), "right"),
        (Box(x0=0.95, y0=0.0, x1=1.0, y1=0.05), "left"),
    ],
)
def test_the_side_of_a_box(box: Box, side: str | None) -> None:
    assert patient_side(box) == side


# --- the rows -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", LATERAL_LABELS)
@pytest.mark.parametrize("status", ["present", "uncertain"])
def test_one_side_in_the_draft_every_box_on_the_other_is_opposite_side(
    label: Label, status: MentionStatus
) -> None:
    r = reading((label, status, "right"))
    c = compare(grounding((label, IMAGE_RIGHT)), r)
    assert lateral_flags(c) == [(label, "LATERALITY.opposite_side")]
    flag = next(f for f in c.flags if f.kind == "LATERALITY")
    assert flag.draft_status == status
    assert [f.box for f in flag.image_evidence] == [IMAGE_RIGHT]  # the box ...
    assert flag.draft_evidence == r.mentions  # ... and the span
    assert "second look at the side" in flag.message and "on the right" in flag.message
    assert "is on the left" not in flag.message  # never says which side is right
    assert {f.kind for f in c.flags} <= {"LATERALITY", "URGENT"}


@pytest.mark.parametrize("label", LATERAL_LABELS)
def test_the_side_on_the_image_is_no_flag(label: Label) -> None:
    c = compare(grounding((label, IMAGE_LEFT), (label, IMAGE_LEFT)), reading((label, "present", "right")))
    assert lateral_flags(c) == []
    assert codes(c) == ["laterality_view_assumed_frontal"]


def test_one_side_in_the_draft_boxes_on_both_sides_is_its_own_rule() -> None:
    g = grounding(
        (L.PLEURAL_EFFUSION, IMAGE_LEFT), (L.PLEURAL_EFFUSION, IMAGE_RIGHT), (L.PLEURAL_EFFUSION, ACROSS)
    )
    c = compare(g, reading((L.PLEURAL_EFFUSION, "present", "left")))
    assert lateral_flags(c) == [(L.PLEURAL_EFFUSION, "LATERALITY.both_sides_on_image")]
    assert "left only" in c.flags[0].message


def test_bilateral_in_the_draft_against_one_side_is_no_flag() -> None:
    """A box on one side does not show the other side clear: the image model often boxes one side."""
    c = compare(
        grounding((L.PLEURAL_EFFUSION, IMAGE_LEFT)), reading((L.PLEURAL_EFFUSION, "present", "bilateral"))
    )
    assert lateral_flags(c) == []
    # nor "right" and "left" said in two mentions
    two = reading((L.PLEURAL_EFFUSION, "present", "right"), (L.PLEURAL_EFFUSION, "uncertain", "left"))
    assert lateral_flags(compare(grounding((L.PLEURAL_EFFUSION, IMAGE_LEFT)), two)) == []


@pytest.mark.parametrize("other", [ACROSS, None])
def test_a_box_without_a_side_or_a_finding_without_a_box_blocks_opposite_side(other: Box | None) -> None:
    g = grounding((L.NODULE_MASS, IMAGE_RIGHT), (L.NODULE_MASS, other))
    assert lateral_flags(compare(g, reading((L.NODULE_MASS, "present", "right")))) == []


def test_a_denied_side_is_not_an_assertion() -> None:
    """ "No left effusion; small right effusion": only the asserted side is checked."""
    r = reading((L.PLEURAL_EFFUSION, "absent", "left"), (L.PLEURAL_EFFUSION, "present", "right"))
    c = compare(grounding((L.PLEURAL_EFFUSION, IMAGE_RIGHT)), r)
    assert lateral_flags(c) == [(L.PLEURAL_EFFUSION, "LATERALITY.opposite_side")]
    assert [m.laterality for m in c.flags[0].draft_evidence] == ["right"]
    denied_only = reading((L.PLEURAL_EFFUSION, "absent", "right"))
    assert lateral_flags(compare(grounding((L.PLEURAL_EFFUSION, IMAGE_RIGHT)), denied_only)) == []


def test_labels_without_a_side_never_get_it() -> None:
    mention = DraftMention(
        label=L.CARDIOMEGALY, status="present", span="cardiomegaly", start=0, end=12, laterality="right"
    )
    r = DraftReading(draft="cardiomegaly", mentions=[mention], outcome=ParseOutcome.CLEAN, model=MODEL)
    c = compare(grounding((L.CARDIOMEGALY, IMAGE_RIGHT)), r)
    assert c.flags == [] and c.notes == []


# --- view, policy, order ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "dicom_view"),
    [(StudyContext(view="lateral"), None), (None, "lateral"), (StudyContext(view="lateral"), "PA")],
)
def test_a_lateral_view_gives_no_side_and_a_note(
    context: StudyContext | None, dicom_view: View | None
) -> None:
    g = grounding((L.PLEURAL_EFFUSION, IMAGE_RIGHT), view=dicom_view)
    c = compare(g, reading((L.PLEURAL_EFFUSION, "present", "right")), context=context)
    assert lateral_flags(c) == []
    assert "laterality_not_checked_lateral_view" in codes(c)


@pytest.mark.parametrize(("context", "dicom_view"), [(StudyContext(view="PA"), None), (None, "AP")])
def test_a_known_frontal_view_needs_no_assumption(
    context: StudyContext | None, dicom_view: View | None
) -> None:
    g = grounding((L.PLEURAL_EFFUSION, IMAGE_RIGHT), view=dicom_view)
    c = compare(g, reading((L.PLEURAL_EFFUSION, "present", "right")), context=context)
    assert lateral_flags(c) == [(L.PLEURAL_EFFUSION, "LATERALITY.opposite_side")]
    assert not [code for code in codes(c) if code.startswith("laterality_")]


def test_unknown_view_is_read_as_frontal_and_says_so_only_when_a_side_was_compared() -> None:
    c = compare(
        grounding((L.PLEURAL_EFFUSION, IMAGE_RIGHT)), reading((L.PLEURAL_EFFUSION, "present", "right"))
    )
    assert codes(c) == ["laterality_view_assumed_frontal"]
    unsided = compare(
        grounding((L.PLEURAL_EFFUSION, IMAGE_RIGHT)), reading((L.PLEURAL_EFFUSION, "present", None))
    )
    assert unsided.notes == [] and unsided.flags == []


def test_the_policy_switch_is_on_by_default_and_echoed() -> None:
    g = grounding((L.PLEURAL_EFFUSION, IMAGE_RIGHT))
    r = reading((L.PLEURAL_EFFUSION, "present", "right"))
    assert compare(g, r).policy.check_laterality is True
    off = compare(g, r, Policy(check_laterality=False))
    assert off.flags == [] and off.notes == [] and off.policy.check_laterality is False


def test_order_is_urgent_laterality_missing_unsupported() -> None:
    g = grounding((L.PNEUMOTHORAX, IMAGE_RIGHT), (L.PLEURAL_EFFUSION, IMAGE_RIGHT))
    r = reading((L.PNEUMOTHORAX, "uncertain", "right"), (L.NODULE_MASS, "present", None))
    c = compare(g, r, Policy(uncertain_satisfies_image=False))
    assert [(f.kind, f.label) for f in c.flags] == [
        ("URGENT", L.PNEUMOTHORAX),
        ("LATERALITY", L.PNEUMOTHORAX),
        ("MISSING", L.PLEURAL_EFFUSION),
        ("MISSING", L.PNEUMOTHORAX),
        ("UNSUPPORTED", L.NODULE_MASS),
    ]


def test_image_only_pass_checks_no_side() -> None:
    c = compare(grounding((L.PNEUMOTHORAX, IMAGE_RIGHT)), None)
    assert [f.kind for f in c.flags] == ["URGENT"]


def test_decision_table_has_the_laterality_rows() -> None:
    rules = [row.rule_id for row in DECISION_TABLE if row.flag == "LATERALITY"]
    assert rules == ["LATERALITY.opposite_side", "LATERALITY.both_sides_on_image"]


# --- the cases, with the rule reader ----------------------------------------------------------------


def test_right_effusion_in_the_draft_left_on_the_image() -> None:
    g = grounding((L.PLEURAL_EFFUSION, IMAGE_RIGHT), (L.CARDIOMEGALY, ACROSS))
    c = compare(g, read_draft("Small right pleural effusion. Cardiomegaly."))
    assert [(f.kind, f.label, f.rule_id) for f in c.flags] == [
        ("LATERALITY", L.PLEURAL_EFFUSION, "LATERALITY.opposite_side")
    ]
    assert [m.span for m in c.flags[0].draft_evidence] == ["pleural effusion"]


def test_possible_right_apical_pneumothorax_boxed_on_the_left() -> None:
    g = grounding((L.PNEUMOTHORAX, Box(x0=0.6, y0=0.05, x1=0.85, y1=0.3)))
    c = compare(g, read_draft("Possible small right apical pneumothorax."))
    assert [(f.kind, f.draft_status) for f in c.flags] == [
        ("URGENT", "uncertain"),
        ("LATERALITY", "uncertain"),
    ]


def test_tool_descriptions_teach_the_side_convention() -> None:
    """An assistant must never turn raw box x into a patient's side by itself."""
    from mcp_server import descriptions as text

    for described in (text.INSTRUCTIONS, text.GROUND_IMAGE, text.COMPARE, text.AUDIT):
        assert "the image's left half (small x) is the patient's RIGHT" in described
        assert "Never state a patient's side from raw box coordinates" in described
    assert "LATERALITY" in text.COMPARE and "LATERALITY yellow" in text.RENDER_FINDINGS
