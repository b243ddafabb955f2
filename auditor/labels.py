"""The audit vocabulary: six labels, the URGENT set, and the one synonym table both sides share.

The grounding model was trained with atelectasis, edema, calcified granuloma, aortic enlargement and
the like dropped, so the draft side must drop them too: mapping "atelectasis" to opacity on one side
only would make the judge fire false flags. Every name either maps to a label or is dropped on
purpose; an unknown name is reported as unknown, never guessed.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final, Literal, NamedTuple


class Label(StrEnum):
    """The six audit labels, spelled exactly as every model prompt and schema spells them."""

    PLEURAL_EFFUSION = "pleural_effusion"
    PNEUMOTHORAX = "pneumothorax"
    LUNG_OPACITY_CONSOLIDATION = "lung_opacity_consolidation"
    NODULE_MASS = "nodule_mass"
    CARDIOMEGALY = "cardiomegaly"
    NO_FINDING = "no_finding"


LABEL_ORDER: Final[tuple[Label, ...]] = tuple(Label)
"""Canonical order: used wherever output order must be deterministic."""

FINDING_LABELS: Final[tuple[Label, ...]] = tuple(lb for lb in Label if lb is not Label.NO_FINDING)
"""The five labels that name something on the image (everything but ``no_finding``)."""

URGENT_LABELS: Final[frozenset[Label]] = frozenset({Label.PNEUMOTHORAX, Label.NODULE_MASS})
"""Can't-miss findings: surfaced as URGENT whenever the image shows them."""

LABEL_RANK: Final[dict[Label, int]] = {lb: i for i, lb in enumerate(LABEL_ORDER)}

HUMAN_NAMES: Final[dict[Label, str]] = {
    Label.PLEURAL_EFFUSION: "pleural effusion",
    Label.PNEUMOTHORAX: "pneumothorax",
    Label.LUNG_OPACITY_CONSOLIDATION: "lung opacity / consolidation",
    Label.NODULE_MASS: "nodule / mass",
    Label.CARDIOMEGALY: "cardiomegaly",
    Label.NO_FINDING: "no finding",
}

# --- Dataset label names -------------------------------------------------------------------------
# Keys are normalised (see `normalize_name`). ``None`` means "dropped on purpose": outside the six.
_L = Label
DATASET_NAMES: Final[dict[str, dict[str, Label | None]]] = {
    "vindr": {
        "aortic enlargement": None,
        "atelectasis": None,
        "calcification": None,
        "cardiomegaly": _L.CARDIOMEGALY,
        "consolidation": _L.LUNG_OPACITY_CONSOLIDATION,
        "ild": None,
        "infiltration": _L.LUNG_OPACITY_CONSOLIDATION,
        "lung opacity": _L.LUNG_OPACITY_CONSOLIDATION,
        "nodule mass": _L.NODULE_MASS,
        "other lesion": None,
        "pleural effusion": _L.PLEURAL_EFFUSION,
        "pleural thickening": None,
        "pneumothorax": _L.PNEUMOTHORAX,
        "pulmonary fibrosis": None,
        "no finding": _L.NO_FINDING,
    },
    "nih": {
        "atelectasis": None,
        "cardiomegaly": _L.CARDIOMEGALY,
        "effusion": _L.PLEURAL_EFFUSION,
        "infiltration": _L.LUNG_OPACITY_CONSOLIDATION,
        "infiltrate": _L.LUNG_OPACITY_CONSOLIDATION,
        "mass": _L.NODULE_MASS,
        "nodule": _L.NODULE_MASS,
        "pneumonia": _L.LUNG_OPACITY_CONSOLIDATION,
        "pneumothorax": _L.PNEUMOTHORAX,
        "consolidation": _L.LUNG_OPACITY_CONSOLIDATION,
        "edema": None,
        "emphysema": None,
        "fibrosis": None,
        "pleural thickening": None,
        "hernia": None,
        "no finding": _L.NO_FINDING,
    },
    "chestx-det": {
        "atelectasis": None,
        "calcification": None,
        "cardiomegaly": _L.CARDIOMEGALY,
        "consolidation": _L.LUNG_OPACITY_CONSOLIDATION,
        "diffuse nodule": _L.NODULE_MASS,
        "effusion": _L.PLEURAL_EFFUSION,
        "emphysema": None,
        "fibrosis": None,
        "fracture": None,
        "mass": _L.NODULE_MASS,
        "nodule": _L.NODULE_MASS,
        "pleural thickening": None,
        "pneumothorax": _L.PNEUMOTHORAX,
    },
    "openi": {  # MeSH major headings, as the shared data's README maps them
        "pleural effusion": _L.PLEURAL_EFFUSION,
        "pneumothorax": _L.PNEUMOTHORAX,
        "opacity": _L.LUNG_OPACITY_CONSOLIDATION,
        "airspace disease": _L.LUNG_OPACITY_CONSOLIDATION,
        "consolidation": _L.LUNG_OPACITY_CONSOLIDATION,
        "infiltrate": _L.LUNG_OPACITY_CONSOLIDATION,
        "pneumonia": _L.LUNG_OPACITY_CONSOLIDATION,
        "nodule": _L.NODULE_MASS,
        "mass": _L.NODULE_MASS,
        "cardiomegaly": _L.CARDIOMEGALY,
        "cardiac shadow enlarged": _L.CARDIOMEGALY,
        "normal": _L.NO_FINDING,
        "costophrenic angle": None,
        "density": None,
        "atelectasis": None,
        "edema": None,
        "granuloma": None,
        "calcified granuloma": None,
    },
}

# --- Free-text phrases ----------------------------------------------------------------------------
# Report language for each label. The rule reader compiles these (longest phrase wins), and the
# recovery step uses them to map a model's off-vocabulary label. Plurals are listed explicitly.
FREE_TEXT_TERMS: Final[dict[str, Label | None]] = {
    # pleural effusion
    "pleural effusion": _L.PLEURAL_EFFUSION,
    "pleural effusions": _L.PLEURAL_EFFUSION,
    "effusion": _L.PLEURAL_EFFUSION,
    "effusions": _L.PLEURAL_EFFUSION,
    "pleural fluid": _L.PLEURAL_EFFUSION,
    "hydrothorax": _L.PLEURAL_EFFUSION,
    "hydrothoraces": _L.PLEURAL_EFFUSION,
    # pneumothorax
    "pneumothorax": _L.PNEUMOTHORAX,
    "pneumothoraces": _L.PNEUMOTHORAX,
    "pneumothoraxes": _L.PNEUMOTHORAX,
    "ptx": _L.PNEUMOTHORAX,
    # lung opacity / consolidation
    "consolidation": _L.LUNG_OPACITY_CONSOLIDATION,
    "consolidations": _L.LUNG_OPACITY_CONSOLIDATION,
    "consolidative": _L.LUNG_OPACITY_CONSOLIDATION,
    "opacity": _L.LUNG_OPACITY_CONSOLIDATION,
    "opacities": _L.LUNG_OPACITY_CONSOLIDATION,
    "opacification": _L.LUNG_OPACITY_CONSOLIDATION,
    "opacifications": _L.LUNG_OPACITY_CONSOLIDATION,
    "lung opacity": _L.LUNG_OPACITY_CONSOLIDATION,
    "airspace disease": _L.LUNG_OPACITY_CONSOLIDATION,
    "air space disease": _L.LUNG_OPACITY_CONSOLIDATION,
    "airspace opacity": _L.LUNG_OPACITY_CONSOLIDATION,
    "airspace opacities": _L.LUNG_OPACITY_CONSOLIDATION,
    "infiltrate": _L.LUNG_OPACITY_CONSOLIDATION,
    "infiltrates": _L.LUNG_OPACITY_CONSOLIDATION,
    "infiltration": _L.LUNG_OPACITY_CONSOLIDATION,
    "pneumonia": _L.LUNG_OPACITY_CONSOLIDATION,
    "pneumonias": _L.LUNG_OPACITY_CONSOLIDATION,
    "bronchopneumonia": _L.LUNG_OPACITY_CONSOLIDATION,
    "haziness": _L.LUNG_OPACITY_CONSOLIDATION,
    # "nodular opacity" describes an opacity's texture; coders of real reports (Open-i MeSH) tag it
    # Opacity, not Nodule, so it counts as opacity here. "nodule" and "mass" themselves stay nodule_mass.
    "nodular opacity": _L.LUNG_OPACITY_CONSOLIDATION,
    "nodular opacities": _L.LUNG_OPACITY_CONSOLIDATION,
    "nodular density": _L.LUNG_OPACITY_CONSOLIDATION,
    "nodular densities": _L.LUNG_OPACITY_CONSOLIDATION,
    # nodule / mass
    "nodule": _L.NODULE_MASS,
    "nodules": _L.NODULE_MASS,
    "masslike": _L.NODULE_MASS,
    "nodular": _L.NODULE_MASS,
    "nodularity": _L.NODULE_MASS,
    "fibronodular": _L.NODULE_MASS,
    "reticulonodular": _L.NODULE_MASS,
    "micronodular": _L.NODULE_MASS,
    "micronodules": _L.NODULE_MASS,
    "mass-like": _L.NODULE_MASS,
    "mass": _L.NODULE_MASS,
    "masses": _L.NODULE_MASS,
    "pulmonary nodule": _L.NODULE_MASS,
    "lung nodule": _L.NODULE_MASS,
    "lung mass": _L.NODULE_MASS,
    # cardiomegaly (sentence-level forms such as "the heart is enlarged" live in the rule reader)
    "cardiomegaly": _L.CARDIOMEGALY,
    "cardiac enlargement": _L.CARDIOMEGALY,
    "enlarged heart": _L.CARDIOMEGALY,
    "enlarged cardiac silhouette": _L.CARDIOMEGALY,
    "enlarged cardiac shadow": _L.CARDIOMEGALY,
    "enlargement of the cardiac silhouette": _L.CARDIOMEGALY,
    "enlargement of the heart": _L.CARDIOMEGALY,
    "cardiomegalic": _L.CARDIOMEGALY,
    # normal study
    "no finding": _L.NO_FINDING,
    "no findings": _L.NO_FINDING,
    "normal": _L.NO_FINDING,
    # dropped on purpose: outside the six, and dropped from the grounding model's training too
    "atelectasis": None,
    "atelectases": None,
    "atelectatic": None,
    "edema": None,
    "pulmonary edema": None,
    "interstitial edema": None,
    "granuloma": None,
    "granulomas": None,
    "calcified granuloma": None,
    "calcified granulomas": None,
    "granulomatous disease": None,
    "calcification": None,
    "calcifications": None,
    "pericardial effusion": None,
    "pericardial effusions": None,
    "aortic enlargement": None,
    "emphysema": None,
    "fibrosis": None,
    "scarring": None,
    "pleural thickening": None,
    "hernia": None,
    "fracture": None,
    "fractures": None,
    "mass effect": None,
}

MappingKind = Literal["exact", "mapped", "dropped", "unknown"]


class LabelMapping(NamedTuple):
    """How one name maps: to a label (exactly or via a synonym), dropped on purpose, or unknown."""

    label: Label | None
    kind: MappingKind


_LABEL_VALUES: Final[frozenset[str]] = frozenset(lb.value for lb in Label)
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalize_name(name: str) -> str:
    """Lower-case; punctuation, underscores and slashes become spaces ("Nodule/Mass" -> "nodule mass")."""
    return _NON_ALNUM.sub(" ", name.lower()).strip()


def _all_synonyms() -> dict[str, Label | None]:
    """Every table in one lookup, keyed the way `map_label` normalises its input."""
    merged: dict[str, Label | None] = {}
    for table in (*DATASET_NAMES.values(), FREE_TEXT_TERMS):
        for name, label in table.items():
            merged.setdefault(normalize_name(name), label)
    return merged


_ALL_SYNONYMS: Final[dict[str, Label | None]] = _all_synonyms()


def map_label(name: str) -> LabelMapping:
    """Map any dataset label or free-text name to an audit label, or say it is dropped or unknown."""
    if name in _LABEL_VALUES:
        return LabelMapping(Label(name), "exact")
    key = normalize_name(name)
    underscored = key.replace(" ", "_")
    if underscored in _LABEL_VALUES:
        return LabelMapping(Label(underscored), "mapped")
    if key in _ALL_SYNONYMS:
        label = _ALL_SYNONYMS[key]
        return LabelMapping(label, "dropped" if label is None else "mapped")
    return LabelMapping(None, "unknown")


def dataset_label(dataset: str, name: str) -> LabelMapping:
    """Map a label name from one dataset's own table (``vindr``, ``nih``, ``chestx-det``, ``openi``)."""
    table = DATASET_NAMES[dataset]
    key = normalize_name(name)
    if key not in table:
        return LabelMapping(None, "unknown")
    label = table[key]
    return LabelMapping(label, "dropped" if label is None else "mapped")


def synonym_table() -> dict[str, object]:
    """The whole vocabulary as plain JSON data (served as an MCP resource)."""
    return {
        "datasets": {
            ds: {k: (v.value if v else None) for k, v in t.items()} for ds, t in DATASET_NAMES.items()
        },
        "free_text": {k: (v.value if v else None) for k, v in FREE_TEXT_TERMS.items()},
    }
