"""The judge, row by row against its decision table (ARCHITECTURE.md), plus degradation, policy,
context and order."""

from __future__ import annotations

import pytest

from auditor.compare import compare
from auditor.draft_rules import read_draft
from auditor.labels import FINDING_LABELS, LABEL_RANK, URGENT_LABELS, Label
from auditor.schema import (
    Box,
    Comparison,
    DraftMention,
    DraftReading,
    Flag,
    Grounding,
    ImageFinding,
    MentionStatus,
    ModelInfo,
    ParseOutcome,
    Policy,
    StudyContext,
)

L = Label
MODEL = ModelInfo(backend="test", model_id="test-model")
BOX_A = Box(x0=0.1, y0=0.2, x1=0.4, y1=0.6)
BOX_B = Box(x0=0.55, y0=0.1, x1=0.9, y1=0.45)

# --- builders ---------------------------------------------------------------------------------------

TERMS: dict[Label, str] = {
    L.PLEURAL_EFFUSION: "pleural effusion",
    L.PNEUMOTHORAX: "pneumothorax",
    L.LUNG_OPACITY_CONSOLIDATION: "consolidation",
    L.NODULE_MASS: "nodule",
    L.CARDIOMEGALY: "cardiomegaly",
    L.NO_FINDING: "normal study",
}
PREFIX: dict[str, str] = {"present": "There is ", "absent": "No ", "uncertain": "Possible "}


def finding(label: Label, box: Box | None = BOX_A) -> ImageFinding:
    return ImageFinding(label=label, box=None if label is L.NO_FINDING else box)


def grounding(*items: Label | ImageFinding, outcome: ParseOutcome = ParseOutcome.CLEAN) -> Grounding:
    """Labels get one default box each; pass ImageFindings for anything more specific."""
    findings = [i if isinstance(i, ImageFinding) else finding(i) for i in items]
    return Grounding(findings=findings, outcome=outcome, model=MODEL)


def reading(*parts: tuple[Label, MentionStatus], outcome: ParseOutcome = ParseOutcome.CLEAN) -> DraftReading:
    """One sentence per (label, status); every span is the real substring draft[start:end]."""
    draft = ""
    mentions = []
    for label, status in parts:
        prefix = "This is a " if label is L.NO_FINDING else PREFIX[status]
        start = len(draft) + len(prefix)
        term = TERMS[label]
        draft += f"{prefix}{term}. "
        mentions.append(
            DraftMention(label=label, status=status, span=term, start=start, end=start + len(term))
        )
    return DraftReading(draft=draft.strip(), mentions=mentions, outcome=outcome, model=MODEL)


def kinds(c: Comparison) -> list[tuple[str, str]]:
    return [(f.kind, f.label.value) for f in c.flags]


def only(c: Comparison, kind: str, label: Label) -> Flag:
    matches = [f for f in c.flags if f.kind == kind and f.label is label]
    assert len(matches) == 1, f"expected exactly one {kind} {label}, got {kinds(c)}"
    return matches[0]


def codes(c: Comparison) -> list[str]:
    return [n.code for n in c.notes]


NON_URGENT = [lb for lb in FINDING_LABELS if lb not in URGENT_LABELS]

# --- the judge table, one test per row ---------------------------------------------------------------


@pytest.mark.parametrize("label", NON_URGENT)
@pytest.mark.parametrize("status", ["present", "uncertain"])
def test_row_image_present_draft_present_or_uncertain_no_flag(label: Label, status: MentionStatus) -> None:
    c = compare(grounding(label), reading((label, status)))
    assert c.flags == []
    assert c.mode == "full"


@pytest.mark.parametrize("label", FINDING_LABELS)
def test_row_image_present_draft_denied_is_missing_denied(label: Label) -> None:
    r = reading((label, "absent"))
    c = compare(grounding(label), r)
    flag = only(c, "MISSING", label)
    assert flag.draft_status == "denied"
    assert flag.rule_id == "MISSING.denied"
    assert flag.draft_evidence == r.mentions
    assert [f.box for f in flag.image_evidence] == [BOX_A]
    assert {f.kind for f in c.flags} <= {"MISSING", "URGENT"}


@pytest.mark.parametrize("label", FINDING_LABELS)
def test_row_image_present_not_mentioned_draft_normal_is_missing_denied_by_normal(label: Label) -> None:
    r = reading((L.NO_FINDING, "present"))
    c = compare(grounding(label), r)
    flag = only(c, "MISSING", label)
    assert flag.draft_status == "denied_by_normal"
    assert flag.rule_id == "MISSING.denied_by_normal"
    assert flag.draft_evidence == r.mentions, "the no_finding mention is the draft evidence"
    assert flag.draft_evidence[0].span == "normal study"
    assert [f.box for f in flag.image_evidence] == [BOX_A]


@pytest.mark.parametrize("label", FINDING_LABELS)
def test_row_image_present_not_mentioned_is_missing_not_mentioned(label: Label) -> None:
    other = next(lb for lb in FINDING_LABELS if lb is not label)
    c = compare(grounding(label), reading((other, "absent")))
    flag = only(c, "MISSING", label)
    assert flag.draft_status == "not_mentioned"
    assert flag.rule_id == "MISSING.not_mentioned"
    assert flag.draft_evidence == []
    assert [f.box for f in flag.image_evidence] == [BOX_A]


@pytest.mark.parametrize("label", FINDING_LABELS)
def test_row_image_absent_draft_present_is_unsupported(label: Label) -> None:
    r = reading((label, "present"))
    c = compare(grounding(), r)
    assert kinds(c) == [("UNSUPPORTED", label.value)]
    flag = c.flags[0]
    assert flag.draft_status == "present"
    assert flag.rule_id == "UNSUPPORTED.asserted"
    assert flag.draft_evidence == r.mentions
    assert flag.image_evidence == []


@pytest.mark.parametrize("label", FINDING_LABELS)
@pytest.mark.parametrize("status", ["uncertain", "absent"])
def test_row_image_absent_draft_uncertain_or_absent_no_flag(label: Label, status: MentionStatus) -> None:
    c = compare(grounding(), reading((label, status)))
    assert c.flags == []


@pytest.mark.parametrize("label", sorted(URGENT_LABELS))
@pytest.mark.parametrize("status", ["present", "uncertain", "absent", None])
def test_row_image_urgent_always_urgent_as_well(label: Label, status: MentionStatus | None) -> None:
    r = reading((label, status)) if status else reading((L.CARDIOMEGALY, "absent"))
    c = compare(grounding(label), r)
    urgent = only(c, "URGENT", label)
    assert urgent.rule_id == "URGENT.on_image"
    # URGENT words the draft's treatment as MISSING does: a denial is "denied", on both flags
    assert urgent.draft_status == {"absent": "denied", None: "not_mentioned"}.get(status, status)
    missing = [f for f in c.flags if f.kind == "MISSING"]
    assert all(f.draft_status == urgent.draft_status for f in missing)
    assert [f.box for f in urgent.image_evidence] == [BOX_A]
    expect_missing = status in {"absent", None}
    assert any(f.kind == "MISSING" for f in c.flags) == expect_missing
    assert c.flags[0].kind == "URGENT"


@pytest.mark.parametrize("label", NON_URGENT)
def test_non_urgent_label_never_urgent(label: Label) -> None:
    c = compare(grounding(label), reading((label, "absent")))
    assert [f.kind for f in c.flags] == ["MISSING"]


# --- no_finding on either side --------------------------------------------------------------------------


def test_image_no_finding_and_draft_normal_no_flags() -> None:
    c = compare(grounding(L.NO_FINDING), reading((L.NO_FINDING, "present")))
    assert c.flags == []


def test_image_no_finding_draft_asserts_finding_is_unsupported() -> None:
    c = compare(grounding(L.NO_FINDING), reading((L.CARDIOMEGALY, "present")))
    assert kinds(c) == [("UNSUPPORTED", "cardiomegaly")]


def test_image_no_finding_beside_a_finding_the_finding_wins() -> None:
    c = compare(grounding(L.NO_FINDING, L.PNEUMOTHORAX), reading((L.NO_FINDING, "present")))
    assert kinds(c) == [("URGENT", "pneumothorax"), ("MISSING", "pneumothorax")]
    assert c.flags[1].draft_status == "denied_by_normal"
    assert all(f.label is not L.NO_FINDING for f in c.flags[0].image_evidence)


def test_draft_normal_and_mentioned_finding_uses_the_mention() -> None:
    r = reading((L.NO_FINDING, "present"), (L.PLEURAL_EFFUSION, "absent"))
    c = compare(grounding(L.PLEURAL_EFFUSION), r)
    assert only(c, "MISSING", L.PLEURAL_EFFUSION).draft_status == "denied"


# --- degraded inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "g",
    [None, grounding(L.PNEUMOTHORAX, L.CARDIOMEGALY, outcome=ParseOutcome.FAILED)],
    ids=["grounding-none", "grounding-failed"],
)
def test_image_stage_failed_no_flags(g: Grounding | None) -> None:
    c = compare(g, reading((L.CARDIOMEGALY, "present"), (L.PNEUMOTHORAX, "absent")))
    assert c.flags == []
    assert c.mode == "no_image"
    assert codes(c) == ["image_stage_failed"]
    assert c.notes[0].stage == "compare"


def test_image_stage_failed_keeps_context_notes_after_the_failure_note() -> None:
    c = compare(None, None, context=StudyContext(age_years=7, view="AP"))
    assert codes(c) == ["image_stage_failed", "pediatric_caution", "ap_view_heart_size"]


def test_no_reading_is_image_only_urgent_only() -> None:
    c = compare(grounding(L.PNEUMOTHORAX, L.PLEURAL_EFFUSION, L.NODULE_MASS), None)
    assert c.mode == "image_only"
    assert codes(c) == ["no_draft_image_only"]
    assert kinds(c) == [("URGENT", "pneumothorax"), ("URGENT", "nodule_mass")]
    assert all(f.draft_status == "not_mentioned" for f in c.flags)


def test_failed_reading_is_image_only_urgent_only() -> None:
    failed = reading((L.CARDIOMEGALY, "present"), outcome=ParseOutcome.FAILED)
    c = compare(grounding(L.PNEUMOTHORAX, L.PLEURAL_EFFUSION), failed)
    assert c.mode == "image_only"
    assert codes(c) == ["draft_unparsed_image_only"]
    assert kinds(c) == [("URGENT", "pneumothorax")]


def test_empty_draft_from_rule_reader_is_image_only() -> None:
    """An empty draft is no draft, not an unreadable one."""
    c = compare(grounding(L.NODULE_MASS, L.CARDIOMEGALY), read_draft("   "))
    assert c.mode == "image_only"
    assert "no_draft_image_only" in codes(c)
    assert kinds(c) == [("URGENT", "nodule_mass")]


def test_no_reading_no_urgent_finding_has_no_flags_but_says_so() -> None:
    c = compare(grounding(L.CARDIOMEGALY), None)
    assert c.flags == []
    assert codes(c) == ["no_draft_image_only"]


# --- collapsing several mentions of one label -----------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["absent", "present"], "present"),
        (["present", "absent"], "present"),
        (["absent", "uncertain"], "uncertain"),
        (["uncertain", "absent"], "uncertain"),
        (["uncertain", "present", "absent"], "present"),
        (["absent", "absent"], "denied"),
    ],
)
def test_mentions_collapse_to_most_assertive(statuses: list[MentionStatus], expected: str) -> None:
    r = reading(*[(L.PNEUMOTHORAX, s) for s in statuses])
    c = compare(grounding(L.PNEUMOTHORAX), r)
    urgent = only(c, "URGENT", L.PNEUMOTHORAX)
    assert urgent.draft_status == expected
    assert sorted(m.start for m in urgent.draft_evidence) == [m.start for m in r.mentions]
    assert any(f.kind == "MISSING" for f in c.flags) == (expected == "denied")


def test_a_model_readers_normal_statement_beside_a_finding_is_not_a_normal_study() -> None:
    """Nemotron may say no_finding next to an effusion ("Small effusion. Otherwise normal."): the
    judge must not then call an unmentioned cardiomegaly 'denied by a normal study'."""
    r = reading((L.PLEURAL_EFFUSION, "present"), (L.NO_FINDING, "present"))
    c = compare(grounding(L.PLEURAL_EFFUSION, L.CARDIOMEGALY), r)
    (flag,) = c.flags
    assert (flag.kind, flag.label, flag.draft_status) == ("MISSING", L.CARDIOMEGALY, "not_mentioned")


def test_left_denied_right_present_is_not_a_denial() -> None:
    r = reading((L.PLEURAL_EFFUSION, "absent"), (L.PLEURAL_EFFUSION, "present"))
    assert compare(grounding(L.PLEURAL_EFFUSION), r).flags == []
    c = compare(grounding(), r)
    assert kinds(c) == [("UNSUPPORTED", "pleural_effusion")]
    assert len(c.flags[0].draft_evidence) == 2


# --- policy -----------------------------------------------------------------------------------------------


def test_default_policy_is_echoed() -> None:
    c = compare(grounding(), reading((L.CARDIOMEGALY, "absent")))
    assert c.policy == Policy()
    assert set(c.policy.urgent_labels) == URGENT_LABELS
    assert c.policy.uncertain_satisfies_image is True
    assert c.policy.uncertain_is_assertion is False


def test_policy_uncertain_does_not_satisfy_image_gives_missing() -> None:
    policy = Policy(uncertain_satisfies_image=False)
    r = reading((L.PLEURAL_EFFUSION, "uncertain"))
    try:
        c = compare(grounding(L.PLEURAL_EFFUSION), r, policy)
    except KeyError as exc:
        pytest.fail(
            "BUG in auditor/compare.py: with Policy(uncertain_satisfies_image=False) a hedged image finding "
            f"crashes the judge (KeyError {exc}): _message() has no MISSING text for draft_status 'uncertain'"
        )
    flag = only(c, "MISSING", L.PLEURAL_EFFUSION)
    assert flag.draft_status == "uncertain"
    assert flag.rule_id.startswith("MISSING.")
    assert flag.draft_evidence == r.mentions
    assert "look" in flag.message.lower()
    assert c.policy == policy


def test_policy_uncertain_is_assertion_gives_unsupported_for_hedge() -> None:
    policy = Policy(uncertain_is_assertion=True)
    r = reading((L.NODULE_MASS, "uncertain"))
    c = compare(grounding(), r, policy)
    assert kinds(c) == [("UNSUPPORTED", "nodule_mass")]
    flag = c.flags[0]
    assert flag.draft_status == "uncertain"
    assert flag.rule_id == "UNSUPPORTED.hedged"
    assert flag.draft_evidence == r.mentions
    assert c.policy.uncertain_is_assertion is True
    # with the default policy the same hedge is not flagged
    assert compare(grounding(), r).flags == []


def test_policy_urgent_set_is_honoured() -> None:
    policy = Policy(urgent_labels=[L.CARDIOMEGALY])
    r = reading((L.PNEUMOTHORAX, "present"), (L.CARDIOMEGALY, "present"))
    c = compare(grounding(L.PNEUMOTHORAX, L.CARDIOMEGALY), r, policy)
    assert kinds(c) == [("URGENT", "cardiomegaly")]


# --- context notes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (StudyContext(age_years=7), ["pediatric_caution"]),
        (StudyContext(age_years=17.5), ["pediatric_caution"]),
        (StudyContext(age_years=30), []),
        (StudyContext(age_years=80, view="PA"), []),
        (StudyContext(view="AP"), ["ap_view_heart_size"]),
        (StudyContext(age_years=7, view="AP"), ["pediatric_caution", "ap_view_heart_size"]),
        (StudyContext(view="lateral"), []),
        (None, []),
    ],
)
def test_context_notes(context: StudyContext | None, expected: list[str]) -> None:
    c = compare(grounding(L.CARDIOMEGALY), reading((L.CARDIOMEGALY, "present")), context=context)
    assert codes(c) == expected
    assert all(n.stage == "context" for n in c.notes)
    assert c.flags == [], "context changes notes, never flags"


def test_pediatric_note_names_the_age() -> None:
    c = compare(grounding(), None, context=StudyContext(age_years=7))
    note = next(n for n in c.notes if n.code == "pediatric_caution")
    assert "7" in note.message


# --- order, messages, evidence ---------------------------------------------------------------------------

# image: everything but opacity (two boxes on pneumothorax, no box on the effusion)
BUSY_GROUNDING = grounding(
    finding(L.CARDIOMEGALY, BOX_B),
    finding(L.PNEUMOTHORAX, BOX_B),
    finding(L.NODULE_MASS),
    finding(L.PNEUMOTHORAX, BOX_A),
    finding(L.PLEURAL_EFFUSION, None),
)
# draft: denies cardiomegaly and nodule, asserts opacity, ignores effusion and pneumothorax
BUSY_READING = reading(
    (L.LUNG_OPACITY_CONSOLIDATION, "present"),
    (L.CARDIOMEGALY, "absent"),
    (L.NODULE_MASS, "absent"),
)


def test_flags_ordered_urgent_missing_unsupported_then_label_order() -> None:
    c = compare(BUSY_GROUNDING, BUSY_READING)
    assert kinds(c) == [
        ("URGENT", "pneumothorax"),
        ("URGENT", "nodule_mass"),
        ("MISSING", "pleural_effusion"),
        ("MISSING", "pneumothorax"),
        ("MISSING", "nodule_mass"),
        ("MISSING", "cardiomegaly"),
        ("UNSUPPORTED", "lung_opacity_consolidation"),
    ]
    rank = {"URGENT": 0, "MISSING": 1, "UNSUPPORTED": 2}
    keys = [(rank[f.kind], LABEL_RANK[f.label]) for f in c.flags]
    assert keys == sorted(keys)


FORBIDDEN = ("diagnos", "the patient has", "patient has", "confirmed", "definitely")


@pytest.mark.parametrize(
    "policy",
    [Policy(), Policy(uncertain_is_assertion=True)],
    ids=["default", "uncertain-is-assertion"],
)
def test_messages_ask_for_a_look_and_never_diagnose(policy: Policy) -> None:
    r = reading(
        (L.LUNG_OPACITY_CONSOLIDATION, "present"),
        (L.CARDIOMEGALY, "absent"),
        (L.NODULE_MASS, "uncertain"),
    )
    g = grounding(finding(L.PNEUMOTHORAX, BOX_B), finding(L.PLEURAL_EFFUSION, None), L.CARDIOMEGALY)
    flags = [*compare(g, r, policy).flags, *compare(BUSY_GROUNDING, BUSY_READING, policy).flags]
    flags += compare(g, reading((L.NO_FINDING, "present")), policy).flags
    assert {f.kind for f in flags} == {"URGENT", "MISSING", "UNSUPPORTED"}
    for f in flags:
        text = f.message.lower()
        assert "look" in text, f"{f.kind} {f.label} message does not ask for a look: {f.message!r}"
        for word in FORBIDDEN:
            assert word not in text, (
                f"{f.kind} {f.label} message states a diagnosis ({word!r}): {f.message!r}"
            )


def test_boxless_finding_message_points_at_whole_image() -> None:
    c = compare(grounding(finding(L.PNEUMOTHORAX, None)), None)
    assert "whole image" in c.flags[0].message


def test_missing_and_urgent_carry_the_boxes() -> None:
    c = compare(BUSY_GROUNDING, BUSY_READING)
    for f in c.flags:
        if f.kind in {"MISSING", "URGENT"}:
            expected = [x for x in BUSY_GROUNDING.findings if x.label is f.label]
            assert sorted(f.image_evidence, key=repr) == sorted(expected, key=repr), f"{f.kind} {f.label}"
            assert all(x.label is f.label for x in f.image_evidence)
    ptx = only(c, "URGENT", L.PNEUMOTHORAX)
    assert {x.box for x in ptx.image_evidence} == {BOX_A, BOX_B}


def test_unsupported_carries_the_mention() -> None:
    c = compare(BUSY_GROUNDING, BUSY_READING)
    flag = only(c, "UNSUPPORTED", L.LUNG_OPACITY_CONSOLIDATION)
    assert flag.image_evidence == []
    assert len(flag.draft_evidence) == 1
    m = flag.draft_evidence[0]
    assert m.label is L.LUNG_OPACITY_CONSOLIDATION
    assert BUSY_READING.draft[m.start : m.end] == m.span == "consolidation"


def test_denied_missing_carries_the_denial() -> None:
    c = compare(BUSY_GROUNDING, BUSY_READING)
    flag = only(c, "MISSING", L.CARDIOMEGALY)
    assert [m.span for m in flag.draft_evidence] == ["cardiomegaly"]
    assert flag.draft_evidence[0].status == "absent"


def test_compare_is_deterministic() -> None:
    a = compare(BUSY_GROUNDING, BUSY_READING, context=StudyContext(age_years=7, view="AP"))
    b = compare(BUSY_GROUNDING, BUSY_READING, context=StudyContext(age_years=7, view="AP"))
    assert a.model_dump_json() == b.model_dump_json()


# --- end to end with the real rule reader ---------------------------------------------------------------


def test_end_to_end_rule_reader_denied_pneumothorax() -> None:
    r = read_draft("Cardiomegaly is present. No pneumothorax.")
    g = grounding(finding(L.PNEUMOTHORAX, BOX_A), finding(L.CARDIOMEGALY, BOX_B))
    c = compare(g, r)
    assert c.mode == "full"
    assert kinds(c) == [("URGENT", "pneumothorax"), ("MISSING", "pneumothorax")]
    missing = c.flags[1]
    assert missing.draft_status == "denied"
    assert [(m.span, m.status) for m in missing.draft_evidence] == [("pneumothorax", "absent")]
    assert [f.box for f in missing.image_evidence] == [BOX_A]
    assert all(f.label is not L.CARDIOMEGALY for f in c.flags)


# --- URGENT findings the draft already reports --------------------------------------------------------


def test_an_urgent_finding_the_draft_reports_says_so_and_comes_last() -> None:
    c = compare(grounding(L.PNEUMOTHORAX, L.NODULE_MASS), reading((L.PNEUMOTHORAX, "present")))
    assert kinds(c)[:2] == [("URGENT", "nodule_mass"), ("URGENT", "pneumothorax")]
    reported = only(c, "URGENT", L.PNEUMOTHORAX)
    assert "the draft reports it" in reported.message and "not as a disagreement" in reported.message
    assert "does not mention nodule" in only(c, "URGENT", L.NODULE_MASS).message


def test_a_denied_urgent_finding_gets_one_message_not_two_alike() -> None:
    c = compare(grounding(L.PNEUMOTHORAX), reading((L.PNEUMOTHORAX, "absent")))
    urgent, missing = only(c, "URGENT", L.PNEUMOTHORAX), only(c, "MISSING", L.PNEUMOTHORAX)
    assert "can't-miss" in urgent.message and "the draft states there is no pneumothorax" in urgent.message
    assert missing.message.startswith("The same possible pneumothorax as the URGENT flag")
    assert "can't-miss" not in missing.message and "look" in missing.message
    plain = compare(grounding(L.CARDIOMEGALY), reading((L.CARDIOMEGALY, "absent")))
    assert only(plain, "MISSING", L.CARDIOMEGALY).message.startswith("The image model marked a possible")


def test_urgent_without_a_draft_speaks_of_no_draft() -> None:
    message = only(compare(grounding(L.PNEUMOTHORAX), None), "URGENT", L.PNEUMOTHORAX).message
    assert "draft" not in message and "one more look" in message
