"""The vocabulary: six exact labels, the URGENT set, and one synonym table shared by both sides."""

from __future__ import annotations

import json

import pytest

from auditor.labels import (
    DATASET_NAMES,
    FINDING_LABELS,
    FREE_TEXT_TERMS,
    HUMAN_NAMES,
    LABEL_ORDER,
    URGENT_LABELS,
    Label,
    dataset_label,
    map_label,
    normalize_name,
    synonym_table,
)

L = Label


def test_six_labels_exact_strings() -> None:
    assert [lb.value for lb in Label] == [
        "pleural_effusion",
        "pneumothorax",
        "lung_opacity_consolidation",
        "nodule_mass",
        "cardiomegaly",
        "no_finding",
    ]
    assert tuple(Label) == LABEL_ORDER
    assert set(FINDING_LABELS) == set(Label) - {L.NO_FINDING}
    assert set(HUMAN_NAMES) == set(Label)


def test_urgent_labels() -> None:
    assert {L.PNEUMOTHORAX, L.NODULE_MASS} == URGENT_LABELS
    assert L.NO_FINDING not in URGENT_LABELS


@pytest.mark.parametrize("label", list(Label))
def test_exact_names_map_exactly(label: Label) -> None:
    assert map_label(label.value) == (label, "exact")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Pleural Effusion", L.PLEURAL_EFFUSION),
        ("PLEURAL_EFFUSION", L.PLEURAL_EFFUSION),
        ("pleural-effusion", L.PLEURAL_EFFUSION),
        ("  pleural   effusion ", L.PLEURAL_EFFUSION),
        ("Nodule/Mass", L.NODULE_MASS),
        ("No Finding", L.NO_FINDING),
        ("Lung_Opacity_Consolidation", L.LUNG_OPACITY_CONSOLIDATION),
    ],
)
def test_case_space_underscore_variants(name: str, expected: Label) -> None:
    assert map_label(name) == (expected, "mapped")


@pytest.mark.parametrize(
    ("dataset", "name", "expected"),
    [
        ("vindr", "Nodule/Mass", L.NODULE_MASS),
        ("vindr", "Lung Opacity", L.LUNG_OPACITY_CONSOLIDATION),
        ("vindr", "Aortic enlargement", None),
        ("vindr", "Pleural effusion", L.PLEURAL_EFFUSION),
        ("vindr", "No finding", L.NO_FINDING),
        ("nih", "Effusion", L.PLEURAL_EFFUSION),
        ("nih", "Infiltration", L.LUNG_OPACITY_CONSOLIDATION),
        ("nih", "Atelectasis", None),
        ("nih", "Mass", L.NODULE_MASS),
        ("nih", "Edema", None),
        ("chestx-det", "Diffuse Nodule", L.NODULE_MASS),
        ("chestx-det", "Fracture", None),
        ("openi", "Airspace Disease", L.LUNG_OPACITY_CONSOLIDATION),
        ("openi", "Calcified Granuloma", None),
        ("openi", "normal", L.NO_FINDING),
    ],
)
def test_dataset_names(dataset: str, name: str, expected: Label | None) -> None:
    kind = "dropped" if expected is None else "mapped"
    assert dataset_label(dataset, name) == (expected, kind)
    assert map_label(name) == (expected, kind), "the shared table agrees with the dataset's own"


def test_dataset_label_unknown_name() -> None:
    assert dataset_label("vindr", "banana") == (None, "unknown")
    assert dataset_label("nih", "Diffuse Nodule") == (None, "unknown"), "tables are per dataset"


@pytest.mark.parametrize(
    "name",
    ["atelectasis", "edema", "calcified granuloma", "pericardial effusion", "Pulmonary Edema", "emphysema"],
)
def test_free_text_dropped_terms(name: str) -> None:
    assert map_label(name) == (None, "dropped")


def test_pericardial_effusion_is_not_pleural() -> None:
    assert map_label("pericardial effusion").label is None
    assert map_label("effusion").label is L.PLEURAL_EFFUSION


@pytest.mark.parametrize("name", ["banana", "", "   ", "pleural", "effusion of the knee"])
def test_unknown_names(name: str) -> None:
    assert map_label(name) == (None, "unknown")


def test_every_table_value_is_a_label_or_none() -> None:
    tables = [*DATASET_NAMES.values(), FREE_TEXT_TERMS]
    for table in tables:
        for name, value in table.items():
            assert value is None or isinstance(value, Label), f"{name!r} -> {value!r}"
    assert set(DATASET_NAMES) == {"vindr", "nih", "chestx-det", "openi"}


def test_dataset_keys_are_normalised() -> None:
    for dataset, table in DATASET_NAMES.items():
        for name in table:
            assert normalize_name(name) == name, f"{dataset}: key {name!r} can never match"


def test_one_vocabulary_no_name_maps_two_ways() -> None:
    seen: dict[str, Label | None] = {}
    for table in [*DATASET_NAMES.values(), FREE_TEXT_TERMS]:
        for name, value in table.items():
            key = normalize_name(name)
            assert seen.setdefault(key, value) == value, f"{name!r} maps to {seen[key]} and to {value}"


@pytest.mark.parametrize(("name", "value"), sorted(FREE_TEXT_TERMS.items()))
def test_every_free_text_term_maps_through_map_label(name: str, value: Label | None) -> None:
    kinds = {"dropped"} if value is None else {"exact", "mapped"}
    got = map_label(name)
    assert got.label == value and got.kind in kinds, (
        f"BUG in auditor/labels.py: map_label({name!r}) gives {got} but FREE_TEXT_TERMS says "
        f"{value}: _ALL_SYNONYMS keys are not normalised, while map_label looks up normalize_name(name)"
    )


def test_synonym_table_is_json() -> None:
    table = synonym_table()
    back = json.loads(json.dumps(table))
    assert back == table
    assert set(table) == {"datasets", "free_text"}
    assert table["datasets"]["vindr"]["nodule mass"] == "nodule_mass"
    assert table["datasets"]["vindr"]["aortic enlargement"] is None
    assert table["free_text"]["atelectasis"] is None
    values = {v for t in table["datasets"].values() for v in t.values()} | set(table["free_text"].values())
    assert values <= {lb.value for lb in Label} | {None}
