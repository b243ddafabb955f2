"""Radiology phrasing for synthetic drafts: several templates per label, per status, and for normal studies.

Written the way impressions are written (severity, side, lobe, "with adjacent atelectasis", "without
pneumothorax", pertinent negatives, numbered lists), not the way the rule reader happens to read best:
the evaluation measures the reader against this language, and a phrase it misreads is a finding to
report, not a template to delete. Pure: every choice comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Final, Literal

from auditor.labels import Label, normalize_name

Side = Literal["left", "right", "bilateral"]
Zone = Literal["upper", "mid", "lower"]

_L = Label


@dataclass(frozen=True)
class FindingSpec:
    """What a sentence about one finding may say: side and zone (from the boxes) and dataset names.

    ``side_clear``: every box lies clearly on ``side`` as the judge reads sides, so a draft that swaps
    it must be flagged. ``state_side``: the sentence must name the side (the side edit's target)."""

    label: Label
    side: Side | None = None
    zone: Zone | None = None
    sources: tuple[str, ...] = ()
    side_clear: bool = False
    state_side: bool = False


# ---- word choices ---------------------------------------------------------------------------------
_EFFUSION_SEV: Final = ("small", "small", "moderate", "large", "trace", "tiny", "small to moderate", "")
_PTX_SEV: Final = ("small", "small", "tiny", "moderate", "large", "")
_OPACITY_ADJ: Final = ("patchy", "focal", "dense", "ill-defined", "hazy", "")
_NODULE_SIZE: Final = ("6 mm", "8 mm", "9 mm", "1 cm", "1.2 cm", "1.5 cm", "2 cm")
_MASS_SIZE: Final = ("3 cm", "4 cm", "4.5 cm", "5 cm", "6 cm")
_NODULE_ADJ: Final = ("rounded", "well-circumscribed", "spiculated", "noncalcified", "")
_CARDIO_SEV: Final = ("mild", "moderate", "marked", "")
_CARDIO_ADV: Final = {"mild": "mildly", "moderate": "moderately", "marked": "markedly", "": ""}

# ---- positive statements (one finding present) ----------------------------------------------------
_POSITIVE: Final[dict[Label, tuple[str, ...]]] = {
    _L.PLEURAL_EFFUSION: (
        "{sev} {side} pleural effusion.",
        "There is a {sev} {side} pleural effusion.",
        "{sev} {side} effusion.",
        "{sev} {side} pleural effusion with adjacent atelectasis.",
        "Blunting of the {side} costophrenic angle, consistent with a {sev} pleural effusion.",
        "Layering {side} pleural effusion.",
        "Persistent {sev} {side} pleural effusion.",
        "Large {side}-sided pleural effusion with associated compressive atelectasis.",
        "Decreased but persistent {sev} {side} pleural effusion.",
    ),
    _L.PNEUMOTHORAX: (
        "{sev} {side} pneumothorax.",
        "There is a {sev} {side} apical pneumothorax.",
        "{side} apical pneumothorax measuring approximately {cm} cm.",
        "A visible pleural line at the {side} apex indicates a {sev} pneumothorax.",
        "Interval development of a {sev} {side} pneumothorax.",
        "{sev} {side}-sided pneumothorax.",
        "{side} chest tube in place with {sev} residual pneumothorax.",
    ),
    _L.LUNG_OPACITY_CONSOLIDATION: (
        "{adj} {loc} {noun}.",
        "{adj} {noun} in the {loc}.",
        "There is {adj} {noun} in the {loc}.",
        "{adj} {noun} in the {loc}, consistent with pneumonia.",
        "Findings consistent with {loc} pneumonia.",
        "Improving {loc} {noun}.",
        "{adj} {noun}.",
    ),
    _L.NODULE_MASS: (
        "A {size} {adj} {noun} in the {loc}.",
        "A {size} pulmonary {noun}.",
        "{size} {loc} pulmonary {noun}.",
        "There is a {size} {adj} {noun} in the {loc}.",
        "{loc} {noun} measuring {size}.",
        "Stable {size} {loc} {noun}.",
        "Spiculated {loc} mass, concerning for malignancy.",
    ),
    _L.CARDIOMEGALY: (
        "Cardiomegaly.",
        "{sev} cardiomegaly.",
        "The heart is {adv} enlarged.",
        "The cardiac silhouette is enlarged.",
        "Enlarged cardiac silhouette.",
        "{sev} enlargement of the cardiac silhouette.",
        "Stable cardiomegaly.",
        "Cardiomegaly without pulmonary edema.",
        "Heart size is {adv} enlarged.",
        "The cardiomediastinal silhouette is enlarged.",
    ),
}
_POSITIVE_BILATERAL: Final[dict[Label, tuple[str, ...]]] = {
    _L.PLEURAL_EFFUSION: (
        "{sev} bilateral pleural effusions.",
        "Bilateral pleural effusions, {sev1} on the right and {sev2} on the left.",
        "{sev} bilateral pleural effusions, left greater than right.",
        "There are {sev} bilateral effusions.",
        "{sev} bilateral pleural effusions with bibasilar atelectasis.",
    ),
    _L.PNEUMOTHORAX: ("Bilateral pneumothoraces.", "{sev} bilateral apical pneumothoraces."),
    _L.LUNG_OPACITY_CONSOLIDATION: (
        "Bilateral {adj} airspace opacities.",
        "Multifocal bilateral consolidation.",
        "Patchy bilateral infiltrates.",
        "Bilateral lower lobe pneumonia.",
        "Diffuse bilateral airspace disease.",
    ),
    _L.NODULE_MASS: ("Multiple bilateral pulmonary nodules.", "Bilateral pulmonary masses."),
}
_DIFFUSE_NODULES: Final = (
    "Innumerable small nodules throughout both lungs.",
    "Diffuse bilateral micronodules.",
    "Multiple bilateral pulmonary nodules.",
    "Diffuse micronodular pattern throughout both lungs.",
)

# ---- hedged statements -----------------------------------------------------------------------------
_HEDGED: Final[dict[Label, tuple[str, ...]]] = {
    _L.PLEURAL_EFFUSION: (
        "Possible {sev} {side} pleural effusion.",
        "Questionable {side} pleural effusion.",
        "{sev} {side} pleural effusion cannot be excluded.",
        "Probable {sev} {side} pleural effusion.",
        "Blunting of the {side} costophrenic angle may reflect a {sev} effusion.",
        "Cannot exclude a {sev} {side} pleural effusion.",
        "{sev} {side} pleural effusion versus pleural thickening.",
    ),
    _L.PNEUMOTHORAX: (
        "Possible {sev} {side} apical pneumothorax.",
        "Questionable {side} pneumothorax.",
        "A {sev} {side} pneumothorax cannot be excluded.",
        "Suspected {side} pneumothorax.",
        "Cannot exclude a tiny {side} apical pneumothorax.",
    ),
    _L.LUNG_OPACITY_CONSOLIDATION: (
        "Possible early {loc} pneumonia.",
        "Questionable {loc} infiltrate.",
        "Possible {adj} consolidation in the {loc}.",
        "{loc} consolidation cannot be excluded.",
        "Suspected {loc} pneumonia.",
        "Possible early pneumonia.",
        "Findings may reflect early pneumonia.",
        "{loc} pneumonia is not excluded.",
    ),
    _L.NODULE_MASS: (
        "Possible {size} nodule in the {loc}.",
        "Questionable {loc} nodule.",
        "A {loc} nodule cannot be excluded.",
        "Possible {side} hilar mass.",
        "Possible pulmonary nodule.",
    ),
    _L.CARDIOMEGALY: (
        "Possible mild cardiomegaly.",
        "The heart may be mildly enlarged.",
        "Questionable cardiomegaly.",
        "Cardiomegaly cannot be excluded.",
    ),
}

# ---- denials ---------------------------------------------------------------------------------------
_NEGATIVE: Final[dict[Label, tuple[str, ...]]] = {
    _L.PLEURAL_EFFUSION: (
        "No pleural effusion.",
        "No pleural effusions.",
        "There is no pleural effusion.",
        "No {side} pleural effusion.",
        "No evidence of pleural effusion.",
        "No effusion.",
        "Interval resolution of the {side} pleural effusion.",
    ),
    _L.PNEUMOTHORAX: (
        "No pneumothorax.",
        "There is no pneumothorax.",
        "No evidence of pneumothorax.",
        "No {side} pneumothorax.",
        "No pneumothorax is seen.",
        "The previously seen {side} pneumothorax has resolved.",
        "{side} chest tube in place with no residual pneumothorax.",
    ),
    _L.LUNG_OPACITY_CONSOLIDATION: (
        "No focal consolidation.",
        "No focal airspace disease.",
        "No consolidation.",
        "No focal airspace opacity.",
        "There is no focal consolidation.",
        "No pneumonia.",
        "No focal consolidation to suggest pneumonia.",
    ),
    _L.NODULE_MASS: (
        "No pulmonary nodule or mass.",
        "No suspicious pulmonary nodules.",
        "No focal nodule or mass.",
        "No discrete pulmonary nodule.",
        "No mass.",
    ),
    _L.CARDIOMEGALY: (
        "Heart size is normal.",
        "Normal heart size.",
        "The heart is normal in size.",
        "The cardiac silhouette is within normal limits.",
        "No cardiomegaly.",
        "The cardiomediastinal silhouette is normal.",
        "Heart size is within normal limits.",
        "Heart size is at the upper limits of normal.",
    ),
}
# nouns that read well in one combined denial ("No focal consolidation, pleural effusion, or pneumothorax.")
_LIST_NOUNS: Final[dict[Label, tuple[str, ...]]] = {
    _L.LUNG_OPACITY_CONSOLIDATION: ("focal consolidation", "consolidation", "focal airspace disease"),
    _L.PLEURAL_EFFUSION: ("pleural effusion", "effusion"),
    _L.PNEUMOTHORAX: ("pneumothorax",),
}
_LISTED: Final = tuple(_LIST_NOUNS)
_LIST_FORMS: Final = ("No {items}.", "There is no {items}.", "No evidence of {items}.")
_WITHOUT_FORMS: Final = (" without {items}.", ", without {items}.")

# ---- normal studies --------------------------------------------------------------------------------
_NORMAL: Final = (
    "No acute cardiopulmonary abnormality.",
    "No acute cardiopulmonary process.",
    "No acute cardiopulmonary disease.",
    "No radiographic evidence of acute cardiopulmonary disease.",
    "Normal chest radiograph.",
    "No acute intrathoracic abnormality.",
    "The lungs are clear.",
    "Clear lungs.",
)

# ---- findings outside the six (dataset names that the vocabulary drops on purpose) -----------------
_OTHER: Final[dict[str, tuple[str, ...]]] = {
    "atelectasis": (
        "{side} basilar atelectasis.",
        "Linear atelectasis at the {side} lung base.",
        "Subsegmental atelectasis in the {side} lower lobe.",
        "Bibasilar atelectasis.",
    ),
    "fibrosis": ("Chronic interstitial fibrosis.", "{side} apical fibrosis.", "Pulmonary fibrosis."),
    "pulmonary fibrosis": ("Pulmonary fibrosis.", "Chronic interstitial fibrosis."),
    "calcification": (
        "Scattered calcifications.",
        "Calcified granuloma in the {side} upper lobe.",
        "Aortic arch calcification.",
    ),
    "fracture": (
        "Healed {side} rib fractures.",
        "Old {side} clavicle fracture.",
        "Acute {side} rib fracture.",
    ),
    "pleural thickening": (
        "{side} apical pleural thickening.",
        "Pleural thickening along the {side} lateral chest wall.",
    ),
    "emphysema": ("Emphysema.", "Hyperinflated lungs consistent with emphysema.", "Changes of emphysema."),
    "edema": ("Mild pulmonary edema.", "Interstitial edema."),
    "hernia": ("Small hiatal hernia.",),
    "aortic enlargement": ("Aortic enlargement.", "Tortuous, enlarged thoracic aorta."),
    "ild": ("Interstitial lung disease.",),
}

# ---- lines about devices and bones, outside every label: real impressions carry them ----------------
_FILLER: Final = (
    "No acute osseous abnormality.",
    "Degenerative changes of the thoracic spine.",
    "Median sternotomy wires are intact.",
    "Right internal jugular central venous catheter terminates in the SVC.",
    "Endotracheal tube tip is 4 cm above the carina.",
    "Left-sided pacemaker with leads in good position.",
    "Surgical clips in the right upper quadrant.",
)

_SPACES: Final = re.compile(r"\s+")
_NO_SIDE: Final = re.compile(r"(^|\s)-sided\b")
_SPACE_PUNCT: Final = re.compile(r"\s+([.,;])")
_ARTICLE: Final = re.compile(r"\b([Aa]) (?=[aeiouAEIOU]|8\b|8 |11 |18 )")


def tidy(text: str) -> str:
    """Collapse the blanks left by empty options, fix a/an, capitalise the sentence."""
    text = _SPACE_PUNCT.sub(r"\1", _SPACES.sub(" ", _NO_SIDE.sub(" ", text))).strip()
    text = _ARTICLE.sub(lambda m: m.group(1) + "n ", text)
    return text[:1].upper() + text[1:]


def _side_word(spec: FindingSpec, rng: random.Random, optional: bool = True) -> str:
    """The side when known (omitted now and then: laterality is optional in real drafts)."""
    if spec.side is None or spec.side == "bilateral":
        return ""
    return "" if optional and not spec.state_side and rng.random() < 0.15 else spec.side


def _location(spec: FindingSpec, side: str, rng: random.Random) -> str:
    """Lobe-level wording from side and zone: "right upper lobe", "lingula", "left lung base".

    A location always names a side (the finding's, else a random one: the gold has no box to
    contradict it); drafts without laterality use the templates that name no location."""
    if not side:
        side = spec.side if spec.side in ("left", "right") else rng.choice(("left", "right"))
    if spec.zone == "upper":
        return f"{side} upper lobe"
    if spec.zone == "mid":
        return "right middle lobe" if side == "right" else rng.choice(("lingula", "left mid lung"))
    if spec.zone == "lower":
        return rng.choice((f"{side} lower lobe", f"{side} lung base"))
    return f"{side} lung"


def _opacity_noun(spec: FindingSpec, rng: random.Random) -> str:
    names = {normalize_name(s) for s in spec.sources}
    if names & {"consolidation"}:
        return "consolidation"
    if names & {"infiltrate", "infiltration"}:
        return "infiltrate"
    if names & {"pneumonia"}:
        return rng.choice(("pneumonia", "consolidation"))
    if names & {"lung opacity"}:
        return rng.choice(("opacity", "airspace opacity"))
    return rng.choice(("consolidation", "opacity", "airspace disease", "infiltrate"))


def is_diffuse(spec: FindingSpec) -> bool:
    names = {normalize_name(s) for s in spec.sources}
    return "diffuse nodule" in names and not names & {"nodule", "mass"}


def _nodule_kind(spec: FindingSpec, rng: random.Random) -> str:
    names = {normalize_name(s) for s in spec.sources}
    if "mass" in names and "nodule" not in names:
        return "mass"
    if "nodule" in names and "mass" not in names:
        return "nodule"
    return rng.choice(("nodule", "mass"))


def _fill(template: str, spec: FindingSpec, rng: random.Random) -> str:
    side = _side_word(spec, rng)
    kind = _nodule_kind(spec, rng) if spec.label is _L.NODULE_MASS else ""
    sev_pool: tuple[str, ...] = _EFFUSION_SEV if spec.label is _L.PLEURAL_EFFUSION else _PTX_SEV
    if spec.label is _L.CARDIOMEGALY:
        sev_pool = _CARDIO_SEV
    sev = rng.choice(sev_pool)
    values = {
        "side": side,
        "sev": sev,
        "sev1": rng.choice(("small", "trace", "moderate")),
        "sev2": rng.choice(("small", "moderate", "large")),
        "adv": _CARDIO_ADV.get(sev, ""),
        "cm": rng.choice(("1", "2", "2.5", "3")),
        "adj": rng.choice(_OPACITY_ADJ if spec.label is _L.LUNG_OPACITY_CONSOLIDATION else _NODULE_ADJ),
        "loc": _location(spec, side, rng),
        "noun": kind if spec.label is _L.NODULE_MASS else _opacity_noun(spec, rng),
        "size": rng.choice(_MASS_SIZE if kind == "mass" else _NODULE_SIZE),
    }
    return tidy(template.format(**values))


def positive(spec: FindingSpec, rng: random.Random) -> str:
    """A sentence that reports the finding as present."""
    if spec.label is _L.NODULE_MASS and is_diffuse(spec):
        return rng.choice(_DIFFUSE_NODULES)
    if spec.side == "bilateral" and spec.label in _POSITIVE_BILATERAL:
        return _fill(rng.choice(_POSITIVE_BILATERAL[spec.label]), spec, rng)
    templates = _POSITIVE[spec.label]
    if spec.state_side:
        templates = tuple(t for t in templates if "{side}" in t or "{loc}" in t)
    return _fill(rng.choice(templates), spec, rng)


def hedged(spec: FindingSpec, rng: random.Random) -> str:
    """A sentence that only hedges on the finding ("possible", "cannot be excluded"). A finding on both
    sides is hedged without a location: a lobe would name one side, which its boxes contradict."""
    if spec.side != "bilateral":
        return _fill(rng.choice(_HEDGED[spec.label]), spec, rng)
    templates = tuple(t for t in _HEDGED[spec.label] if "{loc}" not in t)
    return _fill(rng.choice(templates), FindingSpec(spec.label, None, spec.zone, spec.sources), rng)


def negative(spec: FindingSpec, rng: random.Random) -> str:
    """A sentence that denies the finding (on its side, when one side is named)."""
    unilateral = spec if spec.side != "bilateral" else FindingSpec(spec.label, None, spec.zone, spec.sources)
    templates = _NEGATIVE[spec.label]
    if not _side_word(unilateral, rng, optional=False):
        templates = tuple(t for t in templates if "{side}" not in t)
    return _fill(rng.choice(templates), unilateral, rng)


def listable(label: Label) -> bool:
    return label in _LIST_NOUNS


def _join(nouns: list[str]) -> str:
    if len(nouns) == 1:
        return nouns[0]
    if len(nouns) == 2:
        return f"{nouns[0]} or {nouns[1]}"
    return ", ".join(nouns[:-1]) + ", or " + nouns[-1]


def list_negative(labels: list[Label], rng: random.Random) -> str:
    """One denial of several labels: "No focal consolidation, pleural effusion, or pneumothorax."."""
    ordered = sorted(labels, key=_LISTED.index)
    if rng.random() < 0.5:
        rng.shuffle(ordered)
    nouns = [rng.choice(_LIST_NOUNS[lb]) for lb in ordered]
    return tidy(rng.choice(_LIST_FORMS).format(items=_join(nouns)))


def without_clause(sentence: str, labels: list[Label], rng: random.Random) -> str:
    """A positive sentence with a trailing denial: "Small left pleural effusion without pneumothorax."."""
    nouns = [rng.choice(_LIST_NOUNS[lb]) for lb in labels]
    return sentence.rstrip(".") + rng.choice(_WITHOUT_FORMS).format(items=_join(nouns))


def filler(rng: random.Random) -> str:
    """A line about a device or the bones: no label, but the reader must not trip over it."""
    return rng.choice(_FILLER)


def normal_study(rng: random.Random) -> str:
    return rng.choice(_NORMAL)


def other_finding(name: str, rng: random.Random) -> str | None:
    """A sentence for a finding outside the six, by its dataset name; None when there is no wording."""
    templates = _OTHER.get(normalize_name(name))
    if templates is None:
        return None
    return tidy(rng.choice(templates).format(side=rng.choice(("left", "right", ""))))
