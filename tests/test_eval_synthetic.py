"""Synthetic drafts: reproducible, varied, one controlled edit each, and read as intended by the rule
reader and the judge. Phrasings the reader gets wrong are listed as known gaps (strict xfail), not
tuned away."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest

from auditor.compare import compare
from auditor.draft_rules import read_draft
from auditor.eval.datasets import DatasetSpec, load_dataset
from auditor.eval.items import EvalItem, GoldFinding
from auditor.eval.phrases import FindingSpec
from auditor.eval.synthetic import (
    EDIT_KINDS,
    EditKind,
    SyntheticDraft,
    build_draft,
    item_rng,
    make_draft,
    side_targets,
    specs_from_gold,
)
from auditor.labels import FINDING_LABELS, Label
from auditor.laterality import OPPOSITE
from auditor.schema import Box, Grounding, ImageFinding, ModelInfo, ParseOutcome

CHESTX_TEST = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "chestx_det" / "ChestX_Det_test.json"
)
ORACLE = ModelInfo(backend="oracle", model_id="test")

LEFT_EFFUSION = GoldFinding(Label.PLEURAL_EFFUSION, Box(x0=0.6, y0=0.6, x1=0.9, y1=0.9), "Effusion")
RIGHT_PTX = GoldFinding(Label.PNEUMOTHORAX, Box(x0=0.1, y0=0.05, x1=0.4, y1=0.3), "Pneumothorax")
SICK = EvalItem(id="sick", findings=(LEFT_EFFUSION, RIGHT_PTX), normal=False, other=("Fracture",))
NORMAL = EvalItem(id="normal", findings=(), normal=True)


def grounding_of(item: EvalItem) -> Grounding:
    findings = [ImageFinding(label=f.label, box=f.box) for f in item.findings]
    if not findings and item.normal:
        findings = [ImageFinding(label=Label.NO_FINDING)]
    return Grounding(findings=findings, outcome=ParseOutcome.CLEAN, model=ORACLE)


def flags_for(item: EvalItem, text: str) -> set[tuple[str, Label, str]]:
    comparison = compare(grounding_of(item), read_draft(text))
    return {(f.kind, f.label, f.draft_status) for f in comparison.flags}


def allowed_edits(item: EvalItem) -> list[EditKind]:
    present = item.present_labels()
    swappable = side_targets(specs_from_gold(item.findings))
    return [
        e
        for e in EDIT_KINDS
        if (e not in ("drop", "deny", "hedge") or present)
        and (e != "add" or len(present) < len(FINDING_LABELS))
        and (e != "side" or swappable)
    ]


def check(item: EvalItem, seed: int, edit: EditKind) -> None:
    draft = build_draft(item.id, specs_from_gold(item.findings), item.other, item.normal, seed, edit)
    got = flags_for(item, draft.text)
    assert {(k, lb) for k, lb, _ in got} == {(e.kind, e.label) for e in draft.expected}, draft.text
    for e in draft.expected:
        if e.draft_status is not None:
            assert (e.kind, e.label, e.draft_status) in got, draft.text


def test_the_same_seed_gives_the_same_draft_whatever_else_is_in_the_run() -> None:
    assert make_draft(SICK, 7) == make_draft(SICK, 7)
    assert item_rng(7, "sick").random() == item_rng(7, "sick").random()
    texts = {make_draft(SICK, seed).text for seed in range(20)}
    assert len(texts) > 10  # and the seed matters


@pytest.mark.parametrize("edit", EDIT_KINDS)
@pytest.mark.parametrize("seed", range(12))
def test_each_edit_raises_exactly_its_flags(edit: EditKind, seed: int) -> None:
    check(SICK, seed, edit)


def test_expected_flags_by_edit() -> None:
    deny = make_draft_forced(SICK, "deny")
    assert deny.target in {Label.PLEURAL_EFFUSION, Label.PNEUMOTHORAX}
    kinds = {(e.kind, e.label, e.draft_status) for e in deny.expected}
    assert ("URGENT", Label.PNEUMOTHORAX, None) in kinds and ("MISSING", deny.target, "denied") in kinds
    assert {e.kind for e in make_draft_forced(SICK, "hedge").expected} == {"URGENT"}
    add = make_draft_forced(SICK, "add")
    assert add.target not in SICK.present_labels()
    assert ("UNSUPPORTED", add.target) in {(e.kind, e.label) for e in add.expected}


def make_draft_forced(item: EvalItem, edit: EditKind, seed: int = 0) -> SyntheticDraft:
    return build_draft(item.id, specs_from_gold(item.findings), item.other, item.normal, seed, edit)


def test_a_normal_image_only_gets_none_or_add() -> None:
    assert {make_draft(NORMAL, s).edit for s in range(40)} == {"none", "add"}
    with pytest.raises(ValueError, match="needs a present finding"):
        make_draft_forced(NORMAL, "drop")
    text = make_draft_forced(NORMAL, "none").text
    assert any(m.label is Label.NO_FINDING for m in read_draft(text).mentions), text


def test_side_and_zone_come_from_the_boxes() -> None:
    specs = specs_from_gold(SICK.findings)
    # the image's right half is the patient's left
    assert [(s.label, s.side, s.zone) for s in specs] == [
        (Label.PLEURAL_EFFUSION, "left", "lower"),
        (Label.PNEUMOTHORAX, "right", "upper"),
    ]
    both = specs_from_gold([LEFT_EFFUSION, GoldFinding(Label.PLEURAL_EFFUSION, RIGHT_PTX.box, "Effusion")])
    assert both[0].side == "bilateral"
    # the side edit may only swap a side every box clearly has
    assert [s.side_clear for s in specs] == [True, True] and not both[0].side_clear
    hugging = GoldFinding(Label.PLEURAL_EFFUSION, Box(x0=0.5, y0=0.6, x1=0.62, y1=0.9), "Effusion")
    assert specs_from_gold([hugging])[0].side == "left" and not specs_from_gold([hugging])[0].side_clear


@pytest.mark.parametrize("seed", range(12))
def test_the_side_edit_names_the_other_side_and_expects_laterality(seed: int) -> None:
    draft = make_draft_forced(SICK, "side", seed)
    assert draft.target in {Label.PLEURAL_EFFUSION, Label.PNEUMOTHORAX}
    assert ("LATERALITY", draft.target) in {(e.kind, e.label) for e in draft.expected}
    true_side = "left" if draft.target is Label.PLEURAL_EFFUSION else "right"
    said = {m.laterality for m in read_draft(draft.text).mentions if m.label is draft.target}
    assert said == {OPPOSITE[true_side]}, draft.text


def test_the_side_edit_leaves_every_other_draft_as_it_was() -> None:
    """Only a "none" draft may become a "side" draft, from a stream of its own: every other draft is
    the one the same seed gave before the side edit existed (when no finding could be swapped)."""
    unswappable = [dataclasses.replace(s, side_clear=False) for s in specs_from_gold(SICK.findings)]
    edits: Counter[str] = Counter()
    for seed in range(80):
        draft = make_draft(SICK, seed)
        before = build_draft(SICK.id, unswappable, SICK.other, SICK.normal, seed)
        edits[draft.edit] += 1
        if draft.edit == "side":
            assert before.edit == "none"
        else:
            assert draft == before
    assert edits["side"] > 0 and edits["none"] > 0


@pytest.mark.skipif(not CHESTX_TEST.is_file(), reason=f"shared ChestX-Det not found at {CHESTX_TEST}")
def test_every_allowed_edit_on_real_gold_is_read_as_intended() -> None:
    items = load_dataset(DatasetSpec("chestx-det", CHESTX_TEST)).items
    for item in items:
        for edit in allowed_edits(item):
            check(item, 1, edit)


@pytest.mark.skipif(not CHESTX_TEST.is_file(), reason=f"shared ChestX-Det not found at {CHESTX_TEST}")
def test_phrasing_varies() -> None:
    items = load_dataset(DatasetSpec("chestx-det", CHESTX_TEST)).items
    sentences: Counter[str] = Counter()
    for item in items:
        for line in make_draft(item, 0).text.removeprefix("IMPRESSION: ").splitlines():
            for s in re.split(r"(?<=\.)\s+(?=[A-Z])", re.sub(r"^\d+\. ", "", line)):
                sentences[s] += 1
    assert len(sentences) > 400, sentences.most_common(5)
    assert sentences.most_common(1)[0][1] < 0.1 * len(items)  # no sentence dominates


def test_every_label_has_several_wordings() -> None:
    for label in FINDING_LABELS:
        spec = FindingSpec(label, "left", "lower")
        seen = {build_draft(f"x{i}", [spec], (), False, 0, "none").text for i in range(200)}
        assert len(seen) >= 15, (label, sorted(seen)[:5])


# Real report language the rule reader reads wrongly. Kept out of the synthetic templates (they would
# measure one construction, not the reader) and reported; strict, so a reader fix shows up here.
KNOWN_READER_GAPS = [
    ("Trace left pleural effusion or pleural thickening.", Label.PLEURAL_EFFUSION, "uncertain"),
]
# Side words that imply a side: the lingula is only in the left lung; lobe abbreviations name theirs
# (the evaluation's only LATERALITY misses before the reader knew them).
IMPLIED_SIDES = [
    ("Consolidation in the lingula.", Label.LUNG_OPACITY_CONSOLIDATION, "left"),
    ("Lingula nodule measuring 6 mm.", Label.NODULE_MASS, "left"),
    ("Lingular opacity.", Label.LUNG_OPACITY_CONSOLIDATION, "left"),
    ("RUL nodule.", Label.NODULE_MASS, "right"),
    ("LLL consolidation.", Label.LUNG_OPACITY_CONSOLIDATION, "left"),
]
# Gaps this work found and the reader now handles (structured "label: none" lines; "upper normal").
FIXED_READER_GAPS = [
    ("Pneumothorax: none.", Label.PNEUMOTHORAX, "absent"),
    ("Pleural effusion: none.", Label.PLEURAL_EFFUSION, "absent"),
    ("Heart size is upper normal.", Label.CARDIOMEGALY, "absent"),
]


@pytest.mark.parametrize(("text", "label", "status"), FIXED_READER_GAPS)
def test_fixed_reader_gaps(text: str, label: Label, status: str) -> None:
    statuses = {m.status for m in read_draft(text).mentions if m.label is label}
    assert statuses == {status}


@pytest.mark.parametrize(("text", "label", "status"), KNOWN_READER_GAPS)
@pytest.mark.xfail(strict=True, reason="known rule-reader gap, reported by the evaluation work")
def test_known_reader_gaps(text: str, label: Label, status: str) -> None:
    statuses = {m.status for m in read_draft(text).mentions if m.label is label}
    assert statuses == {status}


@pytest.mark.parametrize(("text", "label", "side"), IMPLIED_SIDES)
def test_side_words_that_imply_a_side(text: str, label: Label, side: str) -> None:
    assert {m.laterality for m in read_draft(text).mentions if m.label is label} == {side}
