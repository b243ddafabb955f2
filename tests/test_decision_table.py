"""The judge's decision table as data (`auditor.compare.DECISION_TABLE`): every rule id has its row, the
README shows exactly these rows, and each row is true: the judge, given that image and that draft under
that policy, raises that flag (or none, with that note)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import auditor.compare as judge
from auditor.compare import DECISION_TABLE, Decision, compare
from auditor.draft_rules import read_draft
from auditor.labels import Label
from auditor.schema import Box, Grounding, ImageFinding, ModelInfo, ParseOutcome, Policy, StudyContext

README = Path(__file__).resolve().parents[1] / "README.md"
PATIENT_RIGHT = Box(x0=0.1, y0=0.5, x1=0.4, y1=0.9)  # the image's left half on a frontal film
PATIENT_LEFT = Box(x0=0.6, y0=0.5, x1=0.9, y1=0.9)
EFFUSION, PTX = Label.PLEURAL_EFFUSION, Label.PNEUMOTHORAX


def readme_cell(row: Decision) -> str:
    """The flag column as the README writes it."""
    flag = "none" if row.flag == "none" else f"{row.flag} (`{row.rule_id}`)"
    flag += f" (note `{row.note}`)" if row.note else ""
    return flag + (", as well" if row.besides else "")


def readme_rows() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    head = "| image | draft | policy | flag (rule id) |\n|---|---|---|---|\n"
    assert head in text, "the README's decision table lost its header"
    block = text.split(head, 1)[1].split("\n\n", 1)[0]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block.splitlines()]


def test_every_rule_id_has_its_row_and_every_row_names_a_rule() -> None:
    rules = {value for name, value in vars(judge).items() if name.startswith("RULE_")}
    in_table = {row.rule_id for row in DECISION_TABLE if row.rule_id is not None}
    assert in_table == rules
    assert {"MISSING.hedged", "UNSUPPORTED.hedged"} <= in_table
    assert all((row.flag == "none") == (row.rule_id is None) for row in DECISION_TABLE)


def test_the_readme_table_is_the_data() -> None:
    expected = [[row.image, row.draft, row.policy, readme_cell(row)] for row in DECISION_TABLE]
    assert readme_rows() == expected


# ---- each row is true ------------------------------------------------------------------------------------


def policy_of(text: str) -> Policy:
    """ "any" is the default policy; "name=true (default)" and "name=false" set that switch."""
    if text == "any":
        return Policy()
    match = re.fullmatch(r"(\w+)=(true|false)( \(default\))?", text)
    assert match, f"unreadable policy cell {text!r}"
    policy = Policy(**{match[1]: match[2] == "true"})
    assert (policy == Policy()) == bool(match[3]), f"{text!r}: '(default)' must mark the default"
    return policy


def grounding(*findings: tuple[Label, Box]) -> Grounding:
    return Grounding(
        findings=[ImageFinding(label=label, box=box) for label, box in findings],
        outcome=ParseOutcome.CLEAN,
        model=ModelInfo(backend="test", model_id="test"),
    )


ON_IMAGE = grounding((EFFUSION, PATIENT_LEFT))
NOT_ON_IMAGE = grounding()
CASES: dict[tuple[str, str], list[tuple[Grounding, str, Label]]] = {
    ("present", "present"): [(ON_IMAGE, "Small pleural effusion.", EFFUSION)],
    ("present", "uncertain"): [(ON_IMAGE, "Possible pleural effusion.", EFFUSION)],
    ("present", "absent (denied)"): [(ON_IMAGE, "No pleural effusion.", EFFUSION)],
    ("present", "not mentioned, draft describes a normal study"): [
        (ON_IMAGE, "No acute cardiopulmonary abnormality.", EFFUSION)
    ],
    ("present", "not mentioned"): [(ON_IMAGE, "Mild cardiomegaly.", EFFUSION)],
    ("absent", "present"): [(NOT_ON_IMAGE, "Small pleural effusion.", EFFUSION)],
    ("absent", "uncertain"): [(NOT_ON_IMAGE, "Possible pleural effusion.", EFFUSION)],
    ("absent", "absent or not mentioned"): [
        (NOT_ON_IMAGE, "No pleural effusion.", EFFUSION),
        (NOT_ON_IMAGE, "Mild cardiomegaly.", EFFUSION),
    ],
    ("present, label in URGENT", "anything"): [
        (grounding((PTX, PATIENT_LEFT)), draft, PTX)
        for draft in (
            "Left pneumothorax.",
            "No pneumothorax.",
            "Possible pneumothorax.",
            "Mild cardiomegaly.",
        )
    ],
    ("present, every box clearly on the other side", "asserted (present or uncertain) on one side"): [
        (grounding((EFFUSION, PATIENT_LEFT)), "Right pleural effusion.", EFFUSION),
        (grounding((EFFUSION, PATIENT_LEFT)), "Possible right pleural effusion.", EFFUSION),
    ],
    ("present, boxes clearly on both sides", "asserted on one side"): [
        (grounding((EFFUSION, PATIENT_LEFT), (EFFUSION, PATIENT_RIGHT)), "Right pleural effusion.", EFFUSION)
    ],
    ("present, boxes on one side", "asserted bilateral"): [
        (grounding((EFFUSION, PATIENT_LEFT)), "Bilateral pleural effusions.", EFFUSION)
    ],
    ("present, lateral view", "a side"): [
        (grounding((EFFUSION, PATIENT_LEFT)), "Right pleural effusion.", EFFUSION)
    ],
}


@pytest.mark.parametrize("row", DECISION_TABLE, ids=lambda row: f"{row.image}|{row.draft}|{row.policy}")
def test_each_row_is_what_the_judge_does(row: Decision) -> None:
    cases = CASES[(row.image, row.draft)]
    context = StudyContext(view="lateral") if "lateral view" in row.image else None
    for image, draft, label in cases:
        c = compare(image, read_draft(draft), policy=policy_of(row.policy), context=context)
        kinds = {"MISSING", "UNSUPPORTED", "LATERALITY"} if row.flag == "none" else {row.flag}
        rules = [f.rule_id for f in c.flags if f.label == label and f.kind in kinds]
        assert rules == ([] if row.rule_id is None else [row.rule_id]), (draft, [f.rule_id for f in c.flags])
        if row.note:
            assert row.note in {n.code for n in c.notes}, draft
