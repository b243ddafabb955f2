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


# ---- general classes of radiology language (issue 12): none is a phrase from one dev report --------
GENERAL_CASES: list[tuple[str, str, dict[Label, str]]] = [
    # pneumothorax in other words (Fleischner glossary: air in the pleural space; its signs)
    ("ptx-pleural-air", "Small left apical pleural air collection.", {P: "present"}),
    ("ptx-air-in-space", "There is air in the right pleural space.", {P: "present"}),
    ("ptx-air-collection", "An air collection in the pleural space at the left apex.", {P: "present"}),
    ("ptx-lucency", "Right apical lucency without lung markings.", {P: "present"}),
    ("ptx-pleural-line", "A visceral pleural line is seen at the left apex.", {P: "present"}),
    (
        "prior-with-resolution",
        "Stable chest with resolution of the small apical pneumothorax.",
        {P: "absent"},
    ),
    ("ptx-no-air", "No pleural air.", {P: "absent", NF: "present"}),
    # purpose, indication, limitation, recommendation, history: nothing asserted about this image
    ("hyp-identify", "Further imaging to identify a nodule is recommended.", {}),
    ("hyp-exclude", "CT is recommended to exclude an underlying mass.", {}),
    ("hyp-limited", "Evaluation for pneumothorax is limited by positioning.", {}),
    ("hyp-limits", "Patient rotation limits evaluation for a small effusion.", {}),
    ("hyp-if", "If clinically indicated, decubitus views could assess for effusion.", {}),
    ("hyp-assess-for", "Decubitus views may be obtained to assess for pleural effusion.", {}),
    ("hyp-rule-out", "Follow-up radiograph to rule out pneumonia.", {}),
    ("hyp-sensitive", "CT is more sensitive for detecting small nodules.", {}),
    ("hyp-obscure", "Overlying soft tissue could obscure a small nodule.", {}),
    ("hyp-history", "History of lung mass.", {}),
    (
        "hyp-asserted-elsewhere",
        "Right upper lobe nodule. CT is recommended to exclude a mass.",
        {N: "present"},
    ),
    # prior-study context: attributed to an earlier study and not seen now
    ("prior-not-seen", "The previously noted nodule is not seen on today's study.", {N: "absent"}),
    ("prior-not-well-seen", "The previously described opacity is not well seen.", {OP: "absent"}),
    ("prior-no-longer", "The pneumothorax seen on the prior study is no longer visible.", {P: "absent"}),
    ("prior-no-longer-present", "Previously seen left basilar opacity is no longer present.", {OP: "absent"}),
    ("prior-resolved", "The right pleural effusion has resolved.", {E: "absent"}),
    ("prior-have-resolved", "Bilateral pleural effusions have resolved.", {E: "absent"}),
    ("prior-resolution", "Interval resolution of the left lower lobe consolidation.", {OP: "absent"}),
    ("prior-resolved-pre", "Resolved right pneumothorax.", {P: "absent"}),
    ("prior-stable", "The previously noted nodule is unchanged.", {N: "present"}),
    # hedges read as uncertain wherever they stand
    ("hedge-suspicion", "Suspicion for early pneumonia.", {OP: "uncertain"}),
    ("hedge-concern", "Concern for right lower lobe pneumonia.", {OP: "uncertain"}),
    ("hedge-is-concern", "Right lower lobe pneumonia is a concern.", {OP: "uncertain"}),
    ("hedge-questionable-pre", "Questionable left apical pneumothorax.", {P: "uncertain"}),
    ("hedge-questionable-post", "Left apical pneumothorax, questionable.", {P: "uncertain"}),
    ("hedge-is-questionable", "A left apical pneumothorax is questionable.", {P: "uncertain"}),
    ("hedge-versus-after", "Atelectasis versus pneumonia at the left base.", {OP: "uncertain"}),
    ("hedge-versus-before", "Pneumonia versus atelectasis at the left base.", {OP: "uncertain"}),
    ("hedge-vs", "Small effusion vs pleural thickening.", {E: "uncertain"}),
    ("hedge-vs-dot", "Atelectasis vs. pneumonia at the left base.", {OP: "uncertain"}),
    ("hedge-not-been-excluded", "Pneumonia has not been excluded.", {OP: "uncertain"}),
    ("hedge-if-any", "Small left pleural effusion, if any.", {E: "uncertain"}),
    (
        "scope-other-than",
        "The lungs are clear other than a 6 mm nodule in the right upper lobe.",
        {N: "present"},
    ),
    ("hedge-cannot-exclude", "Cannot exclude a small right pleural effusion.", {E: "uncertain"}),
    ("hedge-cannot-be-excluded", "A small right pleural effusion cannot be excluded.", {E: "uncertain"}),
    ("hedge-not-excluded", "Small right pleural effusion not excluded.", {E: "uncertain"}),
    ("hedge-suspected", "Right lower lobe pneumonia is suspected.", {OP: "uncertain"}),
    ("hedge-suspicious", "Findings are suspicious for a right hilar mass.", {N: "uncertain"}),
    ("hedge-suggestion", "There is suggestion of a small left pneumothorax.", {P: "uncertain"}),
    ("hedge-no-suggestion", "No suggestion of pneumothorax.", {P: "absent", NF: "present"}),
    # "nodular" as a descriptor; "nodule" and "mass" as the head noun
    ("nodular-opacity", "Nodular opacity in the right upper lobe.", {OP: "present"}),
    ("nodular-infiltrate", "Nodular infiltrate at the left base.", {OP: "present"}),
    ("reticulonodular-opacities", "Reticulonodular opacities in both lungs.", {OP: "present"}),
    ("nodular-density", "Nodular density projecting over the left base.", {OP: "present"}),
    ("nodule-head", "A 5 mm nodule in the right upper lobe.", {N: "present"}),
    ("calcified-nodule", "Calcified nodule in the left upper lobe.", {N: "present"}),
    ("mass-head", "Right hilar mass.", {N: "present"}),
    ("nodular-mass", "Nodular mass in the left upper lobe.", {N: "present"}),
    ("mass-outside-lung", "Known thyroid mass displacing the trachea.", {}),
    # lists and scope: a denial reaches a list, not an unrelated phrase
    (
        "list-unknown-items",
        "No pneumonia, effusions, edema, adenopathy, nodules or masses.",
        {OP: "absent", E: "absent", N: "absent", NF: "present"},
    ),
    ("post-list", "Effusion or pneumothorax is not seen.", {E: "absent", P: "absent", NF: "present"}),
    (
        "post-not-across",
        "Small right effusion with adjacent opacity, pneumothorax is not seen.",
        {E: "present", OP: "present", P: "absent"},
    ),
    ("pre-not-across", "No effusion is seen, small nodule in the left base.", {E: "absent", N: "present"}),
    ("pseudo", "No significant change in the right upper lobe mass.", {N: "present"}),
    # normal-study statements: words of the draft, beside findings outside the six
    ("normal-injury", "No visible cardiopulmonary injury.", {NF: "present"}),
    (
        "normal-beside-other",
        "No acute cardiopulmonary process. Old healed left rib fracture.",
        {NF: "present"},
    ),
    ("normal-active", "No active cardiopulmonary disease.", {NF: "present"}),
    (
        "normal-inferred",
        "Heart size is normal. No effusion or pneumothorax.",
        {C: "absent", E: "absent", P: "absent", NF: "present"},
    ),
    # negatives about change or devices are not a normal study
    ("change-resolved", "Pleural effusions have resolved.", {E: "absent"}),
    ("device-tube", "Chest tube in place, no residual pneumothorax.", {P: "absent"}),
    ("device-ett", "Endotracheal tube 5 cm above the carina. No pneumothorax.", {P: "absent"}),
    (
        "device-line",
        "Right internal jugular catheter tip in the SVC. No pneumothorax or effusion.",
        {P: "absent", E: "absent"},
    ),
    ("prior-no-normal", "The previously noted nodule is not seen. No effusion.", {N: "absent", E: "absent"}),
]


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in GENERAL_CASES], ids=[c[0] for c in GENERAL_CASES]
)
def test_general_phrasing(text: str, expected: dict[Label, str]) -> None:
    """The no_finding mention is compared too: its absence is part of what a case asserts."""
    assert statuses(text) == expected


@pytest.mark.parametrize("text", [t for _, t, _ in CASES + GENERAL_CASES])
def test_every_cue_is_words_of_the_draft(text: str) -> None:
    for m in read_draft(text).mentions:
        assert m.cue is None or (m.cue.strip() == m.cue and m.cue in text), (m.label, m.cue)


def test_inferred_normal_rests_on_the_drafts_words() -> None:
    draft = "Heart size is normal. No effusion or pneumothorax."
    (normal,) = [m for m in read_draft(draft).mentions if m.label is NF]
    assert normal.cue == "Heart size is normal"
    assert draft[normal.start : normal.end] == normal.span


def test_not_asserted_phrases_are_noted() -> None:
    reading = read_draft("CT is recommended to exclude an underlying mass.")
    assert reading.mentions == []
    (note,) = [n for n in reading.notes if n.code == "not_asserted"]
    assert "'mass'" in note.message and "to exclude" in note.message


@pytest.mark.parametrize(
    "draft",
    [
        "Chest tube in place, no residual pneumothorax.",
        "Endotracheal tube 5 cm above the carina. No pneumothorax.",
        "Pleural effusions have resolved.",
    ],
)
def test_negatives_about_change_or_devices_are_not_denied_by_normal(draft: str) -> None:
    """The judge never says "the draft describes a normal study" for words the radiologist never wrote."""
    from auditor.compare import compare
    from auditor.schema import Box, Grounding, ImageFinding, ModelInfo

    finding = ImageFinding(label=OP, box=Box(x0=0.1, y0=0.2, x1=0.4, y1=0.6))
    grounding = Grounding(
        findings=[finding], outcome=ParseOutcome.CLEAN, model=ModelInfo(backend="t", model_id="t")
    )
    flags = [f for f in compare(grounding, read_draft(draft)).flags if f.label is OP]
    assert [(f.kind, f.draft_status) for f in flags] == [("MISSING", "not_mentioned")]
