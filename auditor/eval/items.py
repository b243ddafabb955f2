"""What every dataset reader produces: evaluation items with gold findings, and an account of the labels.

Every dataset speaks its own label names. They pass through the one vocabulary table
(`auditor.labels.dataset_label`); a name that maps is kept, a name dropped on purpose (atelectasis,
fracture, ...) is counted and remembered on the item so that synthetic drafts can still describe it,
and a name the table does not know is counted as unknown and reported, never guessed.

Gold for ``no_finding`` is three-valued. True: the dataset says the image has no finding at all
(ChestX-Det's empty ``syms``, VinDr's "No finding"). False: at least one of the five labels is present.
None ("unknown"): the image carries only labels outside the six (e.g. atelectasis only). Such an image
is not normal, yet none of the five labels is on it, so it stays an item, its five finding labels are
gold-absent, and it is left out of the no_finding score, with the count reported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from auditor.eval.boxes import PixelBox
from auditor.labels import FINDING_LABELS, Label, dataset_label
from auditor.schema import Box


@dataclass(frozen=True)
class GoldFinding:
    """One gold finding: an audit label, its box (None where the dataset gives none), its source name."""

    label: Label
    box: Box | None
    source: str


@dataclass(frozen=True)
class EvalItem:
    """One image (or report) to evaluate. ``problem`` set means the item cannot be scored as it stands:
    it is then an integrity failure, listed by id and reason, never a skip."""

    id: str
    findings: tuple[GoldFinding, ...]
    normal: bool | None
    image: str | None = None
    other: tuple[str, ...] = ()
    gold_override: tuple[tuple[Label, bool | None], ...] = ()
    problem: str | None = None

    def gold(self) -> dict[Label, bool | None]:
        """Presence gold per label: True / False, or None where the dataset leaves it ambiguous."""
        present = {f.label for f in self.findings}
        out: dict[Label, bool | None] = {lb: lb in present for lb in FINDING_LABELS}
        out[Label.NO_FINDING] = self.normal
        out.update(dict(self.gold_override))
        return out

    def present_labels(self) -> frozenset[Label]:
        return frozenset(f.label for f in self.findings)

    def boxes(self, label: Label) -> list[Box]:
        return [f.box for f in self.findings if f.label is label and f.box is not None]


@dataclass
class LabelTally:
    """How the dataset's label names were mapped: counted per name, nothing unaccounted for."""

    mapped: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)

    def map(self, dataset: str, name: str) -> Label | None:
        """The label for ``name`` (None when dropped or unknown), counting it either way."""
        mapping = dataset_label(dataset, name)
        if mapping.kind == "unknown":
            self.unknown[name] += 1
        elif mapping.label is None:
            self.dropped[name] += 1
        else:
            self.mapped[name] += 1
        return mapping.label

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            "mapped": dict(sorted(self.mapped.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "unknown": dict(sorted(self.unknown.items())),
        }


@dataclass
class DatasetStats:
    """Counts a reader reports beside its items, so that nothing it did to the data is invisible."""

    rows: int = 0
    labels: LabelTally = field(default_factory=LabelTally)
    boxes_in: int = 0
    boxes_out: int = 0
    boxes_clipped: int = 0
    boxes_unusable: int = 0
    notes: list[str] = field(default_factory=list)

    def count_box(self, px: PixelBox) -> Box | None:
        """Account for one converted box (kept, clipped or unusable) and return what is kept."""
        self.boxes_clipped += px.clipped
        self.boxes_unusable += px.box is None
        self.boxes_out += px.box is not None
        return px.box

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "labels": self.labels.as_dict(),
            "boxes_in": self.boxes_in,
            "boxes_out": self.boxes_out,
            "boxes_clipped": self.boxes_clipped,
            "boxes_unusable": self.boxes_unusable,
            "notes": list(self.notes),
        }


def normal_from(findings: tuple[GoldFinding, ...], outside_six: int) -> bool | None:
    """no_finding gold: False with a mapped finding; None ("unknown") when only labels outside the six
    (dropped or unknown names) are on the image; True when nothing at all is."""
    if findings:
        return False
    return None if outside_six else True
