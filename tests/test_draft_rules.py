"""Table tests of real report phrasing for the rule reader: negation, lists, hedges, normal studies,
exclusions, de-identification tokens and laterality. Each case names the label statuses it expects."""

from __future__ import annotations

import pytest

from auditor.draft_rules import read_draft
from auditor.labels import Label
from auditor.schema import DraftReading, ParseOutcome

E, P, OP, N, C, NF = (
    Label.PLEURAL_EFFUSION,
    Label.PNEUMOTHORAX,
    Label.LUNG_OPACITY_CONSOLIDATION,
    Label.NODULE_MASS,
    Label.CARDIOMEGALY,
    Label.NO_FINDING,
)


def statuses(text: str) -> dict[Label, str]:
    """Label -> the most assertive status the reader gave it (present > uncertain > absent)."""
    rank = {"present": 2, "uncertain": 1, "absent": 0}
    out: dict[Label, str] = {}
    for m in read_draft(text).mentions:
        if m.label not in out or rank[m.status] > rank[out[m.label]]:
            out[m.label] = m.status
    return out


CASES: list[tuple[str, str, dict[Label, str]]] = [
    # plain assertions and pre-negation
    ("assert-neg", "Cardiomegaly is present. No pneumothorax.", {C: "present", P: "absent"}),
    ("without", "Low lung volumes without focal consolidation.", {OP: "absent"}),
    ("negative-for", "Negative for pneumothorax or pleural effusion.", {P: "absent", E: "absent"}),
    ("free-of", "The lungs are free of infiltrate.", {OP: "absent"}),
    ("no-evidence", "There is no evidence of pneumothorax.", {P: "absent"}),
    # post-negation
    ("not-seen", "A pneumothorax is not seen.", {P: "absent"}),
    ("resolved", "The left pleural effusion has resolved.", {E: "absent"}),
    ("not-identified", "Pleural effusion is not identified.", {E: "absent"}),
    ("structured-none", "Pneumothorax: none. Effusion: small.", {P: "absent", E: "present"}),
    # one negation over a list
    (
        "list",
        "No pneumothorax, effusion or focal consolidation.",
        {P: "absent", E: "absent", OP: "absent"},
    ),
    (
        "list-oxford",
        "There is no focal consolidation, pleural effusion, or pneumothorax.",
        {OP: "absent", E: "absent", P: "absent"},
    ),
    # scope ends at the clause
    ("but", "No pneumothorax, but there is a small right effusion.", {P: "absent", E: "present"}),
    ("sentence", "No pneumothorax. Small right pleural effusion.", {P: "absent", E: "present"}),
    ("semicolon", "No effusion; right lower lobe consolidation.", {E: "absent", OP: "present"}),
    # pseudo-negation
    ("no-change", "No change in the small left pleural effusion.", {E: "present"}),
    ("no-interval", "No interval increase in the right upper lobe nodule.", {N: "present"}),
    # hedges
    ("possible", "Possible small left pleural effusion.", {E: "uncertain"}),
    ("cannot-excl", "Early pneumonia cannot be excluded.", {OP: "uncertain"}),
    ("may-represent", "Right basilar opacity may represent pneumonia.", {OP: "present"}),
    ("versus", "Left basilar atelectasis versus consolidation.", {OP: "uncertain"}),
    ("questionable", "Questionable small right midlung nodule.", {N: "uncertain"}),
    ("suspicious", "Findings suspicious for a right hilar mass.", {N: "uncertain"}),
    # cardiomegaly constructions
    ("heart-enlarged", "The heart is mildly enlarged.", {C: "present"}),
    ("heart-not-enlarged", "The heart is not enlarged.", {C: "absent"}),
    ("heart-normal", "Heart size is normal.", {C: "absent"}),
    ("normal-heart", "Normal heart size and mediastinal contours.", {C: "absent"}),
    ("cardiac-silhouette", "The cardiac silhouette is enlarged.", {C: "present"}),
    ("enlarged-silhouette", "Enlarged cardiac silhouette.", {C: "present"}),
    ("borderline", "Borderline cardiomegaly.", {C: "present"}),
    ("wnl", "The cardiomediastinal silhouette is within normal limits.", {C: "absent"}),
    # normal studies
    ("normal-acute", "No acute cardiopulmonary abnormality.", {NF: "present"}),
    ("normal-chest", "Normal chest x-XXXX.", {NF: "present"}),
    ("lungs-clear", "Heart size normal. Lungs clear.", {C: "absent", NF: "present"}),
    ("only-negatives", "No pneumothorax or pleural effusion.", {P: "absent", E: "absent", NF: "present"}),
    ("normal-overridden", "No acute disease. Mild cardiomegaly.", {C: "present"}),
    ("bony-not-normal", "No acute bony abnormality. Right pleural effusion.", {E: "present"}),
    # exclusions: dropped on purpose, never leaking into a label
    ("granuloma", "Calcified granuloma in the right upper lobe.", {}),
    ("pericardial", "Small pericardial effusion.", {}),
    ("massive", "Massive hiatal hernia.", {}),
    ("atelectasis", "Bibasilar atelectasis.", {}),
    ("edema", "Mild pulmonary edema.", {}),
    # de-identification tokens
    ("xxxx", "There are no XXXX of a pleural effusion.", {E: "absent", NF: "present"}),
    ("xxxx-2", "The heart XXXX is slightly large.", {C: "present"}),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES])
def test_phrasing(text: str, expected: dict[Label, str]) -> None:
    got = statuses(text)
    if NF not in expected:
        got.pop(NF, None)
    assert got == expected


@pytest.mark.parametrize(
    ("text", "label", "side"),
    [
        ("Small right pleural effusion.", E, "right"),
        ("Left apical pneumothorax.", P, "left"),
        ("Bilateral pleural effusions.", E, "bilateral"),
        ("Bibasilar consolidation.", OP, "bilateral"),
        ("Effusions on the left and right.", E, "bilateral"),
        ("Right lower lobe consolidation and small left effusion.", OP, "right"),
        ("Right lower lobe consolidation and small left effusion.", E, "left"),
        ("Pleural effusion.", E, None),
    ],
)
def test_laterality(text: str, label: Label, side: str | None) -> None:
    (m,) = [m for m in read_draft(text).mentions if m.label is label]
    assert m.laterality == side


def test_spans_are_verbatim_with_offsets() -> None:
    draft = "Cardiomegaly is present.  No   Pneumothorax.\nPossible LEFT effusion."
    reading = read_draft(draft)
    DraftReading.model_validate(reading.model_dump())  # the contract's verbatim check
    assert [(m.label, m.span) for m in reading.mentions] == [
        (C, "Cardiomegaly"),
        (P, "Pneumothorax"),
        (E, "effusion"),
    ]
    for m in reading.mentions:
        assert draft[m.start : m.end] == m.span
    assert reading.mentions[1].cue == "No"
    assert reading.mentions[2].laterality == "left"


def test_dropped_terms_are_noted() -> None:
    reading = read_draft("Bibasilar atelectasis. No pneumothorax.")
    codes = [n.code for n in reading.notes]
    assert "label_dropped" in codes
    assert any("atelectasis" in n.message for n in reading.notes)


def test_normal_override_is_noted() -> None:
    reading = read_draft("No acute cardiopulmonary process. Small left pleural effusion.")
    assert Label.NO_FINDING not in {m.label for m in reading.mentions}
    assert "no_finding_overridden" in [n.code for n in reading.notes]


def test_empty_draft_fails_visibly() -> None:
    reading = read_draft("   \n ")
    assert reading.outcome is ParseOutcome.FAILED
    assert reading.mentions == []
    assert [n.code for n in reading.notes] == ["draft_empty"]


def test_unicode_and_case_keep_offsets() -> None:
    draft = "İİ Ünlü hasta. NO PNEUMOTHORAX. Küçük sağ effusion."
    reading = read_draft(draft)
    for m in reading.mentions:
        assert draft[m.start : m.end] == m.span
    assert statuses(draft)[P] == "absent"


def test_model_info_names_the_rules() -> None:
    reading = read_draft("No effusion.")
    assert reading.model.backend == "rules"
    assert reading.model.model_id.startswith("cxr-rules")
