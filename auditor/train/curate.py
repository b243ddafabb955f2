"""Curating a grounding corpus: the published choices, as defaults that flags can change.

1. Per label, boxes chained by IoU >= 0.5 are one region (union-find, transitive) and become their
   coordinate-wise mean: several readers outlining one effusion teach one box, not three.
2. Across labels, a box that overlaps a box of a MORE SPECIFIC label at IoU >= 0.6 is dropped: one region
   boxed as both opacity and nodule teaches the model to double-label (the write-up's v1 habit).
   Specificity is data (`SPECIFICITY`); labels of equal rank both stay, and the ties are counted.
3. Normal-only images are downsampled to ``normal_ratio`` per positive image, and positive images over
   an optional per-label cap are dropped, with a seeded RNG; images with a ``keep_all`` label
   (pneumothorax by default, the scarcest can't-miss finding) are never dropped.
4. The split is stratified by each image's label set and made over groups (an NIH patient), so no
   patient is on both sides.

Every merge, drop and keep is counted; `CurationReport.check` proves the counts add up before anything
is written. Pure logic: no I/O, no models; the RNG is seeded from the config.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from auditor.eval.boxes import iou_matrix, merge_clusters
from auditor.labels import Label
from auditor.train.records import SftRecord
from auditor.train.targets import TrainFinding

SPECIFICITY: Final[dict[Label, int]] = {
    Label.LUNG_OPACITY_CONSOLIDATION: 0,
    Label.CARDIOMEGALY: 1,
    Label.PLEURAL_EFFUSION: 1,
    Label.NODULE_MASS: 2,
    Label.PNEUMOTHORAX: 2,
}
"""Higher is more specific. Opacity is the generic label every other lung finding can also be called."""

NORMAL: Final = Label.NO_FINDING.value


@dataclass(frozen=True)
class CurationConfig:
    merge_iou: float = 0.5
    cross_label_iou: float = 0.6
    normal_ratio: float | None = 1.0
    """Normal-only images kept per positive image kept; None keeps them all."""
    max_per_label: int | None = None
    """Positive images per label; an image stays while any of its labels is under the cap."""
    keep_all: frozenset[Label] = frozenset({Label.PNEUMOTHORAX})
    heldout: float = 0.1
    seed: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "merge_iou": self.merge_iou,
            "cross_label_iou": self.cross_label_iou,
            "normal_ratio": self.normal_ratio,
            "max_per_label": self.max_per_label,
            "keep_all": sorted(lb.value for lb in self.keep_all),
            "heldout": self.heldout,
            "seed": self.seed,
            "specificity": {lb.value: rank for lb, rank in SPECIFICITY.items()},
        }


@dataclass
class BoxTally:
    """Boxes of one label: ``given == merged_away + dropped_cross_label + kept``."""

    given: int = 0
    merged_away: int = 0
    dropped_cross_label: int = 0
    kept: int = 0

    def add(self, other: BoxTally) -> None:
        self.given += other.given
        self.merged_away += other.merged_away
        self.dropped_cross_label += other.dropped_cross_label
        self.kept += other.kept

    def adds_up(self) -> bool:
        return self.given == self.merged_away + self.dropped_cross_label + self.kept

    def as_json(self) -> dict[str, int]:
        return {
            "in": self.given,
            "merged_away": self.merged_away,
            "dropped_cross_label": self.dropped_cross_label,
            "out": self.kept,
        }


@dataclass
class CurationReport:
    """What curation did, in counts that add up, and each merge and drop by image."""

    config: CurationConfig
    boxes: dict[Label, BoxTally] = field(default_factory=lambda: defaultdict(BoxTally))
    merges: list[dict[str, Any]] = field(default_factory=list)
    cross_label_drops: list[dict[str, Any]] = field(default_factory=list)
    cross_label_ties: int = 0
    images_in: int = 0
    normal_in: int = 0
    dropped_normal: list[str] = field(default_factory=list)
    dropped_over_cap: list[str] = field(default_factory=list)
    train: list[str] = field(default_factory=list)
    heldout: list[str] = field(default_factory=list)
    strata: dict[str, dict[str, int]] = field(default_factory=dict)
    labels_kept: Counter[str] = field(default_factory=Counter)

    def box_total(self) -> BoxTally:
        total = BoxTally()
        for tally in self.boxes.values():
            total.add(tally)
        return total

    def check(self) -> None:
        """Raise if any count fails to add up (a bug here, never a data problem)."""
        problems = [f"{lb}: boxes {t.as_json()}" for lb, t in self.boxes.items() if not t.adds_up()]
        kept = len(self.train) + len(self.heldout)
        if self.images_in != len(self.dropped_normal) + len(self.dropped_over_cap) + kept:
            problems.append(
                f"images: {self.images_in} in != {len(self.dropped_normal)} normal dropped + "
                f"{len(self.dropped_over_cap)} over cap + {kept} kept"
            )
        if len(set(self.train) & set(self.heldout)):
            problems.append("an image is in both train and heldout")
        if problems:
            raise AssertionError("curation counts do not add up: " + "; ".join(problems))

    def as_json(self) -> dict[str, Any]:
        total = self.box_total()
        kept = len(self.train) + len(self.heldout)
        return {
            "config": self.config.as_json(),
            "boxes": {
                **total.as_json(),
                "per_label": {lb.value: t.as_json() for lb, t in sorted(self.boxes.items())},
                "cross_label_ties_kept": self.cross_label_ties,
            },
            "images": {
                "in": self.images_in,
                "normal_in": self.normal_in,
                "positive_in": self.images_in - self.normal_in,
                "dropped_normal": len(self.dropped_normal),
                "dropped_over_cap": len(self.dropped_over_cap),
                "kept": kept,
                "train": len(self.train),
                "heldout": len(self.heldout),
            },
            "labels_kept": dict(sorted(self.labels_kept.items())),
            "strata": dict(sorted(self.strata.items())),
            "merged": self.merges,
            "dropped_cross_label": self.cross_label_drops,
            "dropped_normal": self.dropped_normal,
            "dropped_over_cap": self.dropped_over_cap,
        }


@dataclass(frozen=True)
class Curated:
    train: list[SftRecord]
    heldout: list[SftRecord]
    report: CurationReport


# --- 1 and 2: boxes within one image -------------------------------------------------------------------


def _array(findings: Sequence[TrainFinding]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array([f.box for f in findings], dtype=np.float64).reshape(-1, 4)


def merge_same_label(
    findings: Sequence[TrainFinding], threshold: float
) -> tuple[list[TrainFinding], list[tuple[Label, int]]]:
    """Per label, union-find clusters at IoU >= threshold -> their mean box; returns the findings and
    (label, cluster size) for every cluster of two or more."""
    by_label: dict[Label, list[TrainFinding]] = defaultdict(list)
    for f in findings:
        by_label[f.label].append(f)
    out: list[TrainFinding] = []
    merged: list[tuple[Label, int]] = []
    for label, group in by_label.items():
        boxes = _array(group)
        for cluster in merge_clusters(boxes, threshold):
            x0, y0, x1, y1 = (float(v) for v in boxes[cluster].mean(axis=0))
            out.append(TrainFinding(label, (x0, y0, x1, y1)))
            if len(cluster) > 1:
                merged.append((label, len(cluster)))
    return out, merged


def resolve_cross_label(
    findings: Sequence[TrainFinding], threshold: float, specificity: dict[Label, int] = SPECIFICITY
) -> tuple[list[TrainFinding], list[tuple[TrainFinding, Label, float]], int]:
    """Drop each box that overlaps a box of a strictly more specific label at IoU >= threshold.

    Returns the kept findings, (dropped finding, the label it gave way to, IoU) per drop, and how many
    overlapping pairs of different labels had equal specificity (neither gave way to the other).
    """
    if len(findings) < 2:
        return list(findings), [], 0
    ious = iou_matrix(_array(findings), _array(findings))
    kept: list[TrainFinding] = []
    dropped: list[tuple[TrainFinding, Label, float]] = []
    ties = 0
    for i, f in enumerate(findings):
        best: tuple[float, Label] | None = None
        for j, g in enumerate(findings):
            if g.label is f.label or ious[i, j] < threshold:
                continue
            if specificity[g.label] > specificity[f.label]:
                if best is None or ious[i, j] > best[0]:
                    best = (float(ious[i, j]), g.label)
            elif specificity[g.label] == specificity[f.label] and j > i:
                ties += 1
        if best is None:
            kept.append(f)
        else:
            dropped.append((f, best[1], round(best[0], 4)))
    return kept, dropped, ties


def curate_boxes(record: SftRecord, config: CurationConfig, report: CurationReport) -> SftRecord:
    """Steps 1 and 2 for one image, counted into ``report``."""
    given = Counter(f.label for f in record.findings)
    merged, clusters = merge_same_label(record.findings, config.merge_iou)
    after_merge = Counter(f.label for f in merged)
    kept, dropped, ties = resolve_cross_label(merged, config.cross_label_iou)
    after_cross = Counter(f.label for f in kept)
    for label in given:
        tally = report.boxes[label]
        tally.given += given[label]
        tally.merged_away += given[label] - after_merge[label]
        tally.dropped_cross_label += after_merge[label] - after_cross[label]
        tally.kept += after_cross[label]
    report.merges.extend({"id": record.id, "label": lb.value, "boxes": n} for lb, n in clusters)
    report.cross_label_drops.extend(
        {"id": record.id, "label": f.label.value, "box": list(f.box), "kept_label": by.value, "iou": iou}
        for f, by, iou in dropped
    )
    report.cross_label_ties += ties
    return record.with_findings(kept)


# --- 3: which images stay --------------------------------------------------------------------------------


def _protected(record: SftRecord, config: CurationConfig) -> bool:
    return any(f.label in config.keep_all for f in record.findings)


def cap_positives(
    positives: Sequence[SftRecord], config: CurationConfig
) -> tuple[list[SftRecord], list[SftRecord]]:
    """Visit positives in a seeded order; keep one while any of its labels is under the cap (always, for
    a ``keep_all`` label). Returns (kept, dropped), each in input order."""
    if config.max_per_label is None:
        return list(positives), []
    order = sorted(range(len(positives)), key=lambda i: positives[i].id)
    random.Random(f"{config.seed}:cap").shuffle(order)
    seen: Counter[Label] = Counter()
    keep: set[int] = set()
    for i in order:
        labels = {f.label for f in positives[i].findings}
        if _protected(positives[i], config) or any(seen[lb] < config.max_per_label for lb in labels):
            keep.add(i)
            seen.update(labels)
    return [r for i, r in enumerate(positives) if i in keep], [
        r for i, r in enumerate(positives) if i not in keep
    ]


def sample_normals(
    normals: Sequence[SftRecord], positives_kept: int, config: CurationConfig
) -> tuple[list[SftRecord], list[SftRecord]]:
    """At most ``floor(normal_ratio * positives_kept)`` normal images, chosen by a seeded RNG."""
    if config.normal_ratio is None:
        return list(normals), []
    quota = min(len(normals), int(config.normal_ratio * positives_kept))
    ids = sorted(r.id for r in normals)
    chosen = set(random.Random(f"{config.seed}:normal").sample(ids, quota))
    return [r for r in normals if r.id in chosen], [r for r in normals if r.id not in chosen]


# --- 4: the split ----------------------------------------------------------------------------------------


def stratified_split(
    records: Sequence[SftRecord], fraction: float, seed: int
) -> tuple[list[SftRecord], list[SftRecord], dict[str, dict[str, int]]]:
    """Groups (patients) go whole to one side; within each label-set stratum, ``round(n * fraction)``
    of its groups are held out, chosen by a seeded shuffle. A stratum of one group stays in train."""
    groups: dict[str, list[SftRecord]] = defaultdict(list)
    for r in records:
        groups[r.group].append(r)
    strata: dict[str, list[str]] = defaultdict(list)
    for name, members in groups.items():
        labels = sorted({lb for r in members for lb in r.labels if lb != NORMAL}) or [NORMAL]
        strata["+".join(labels)].append(name)
    held: set[str] = set()
    counts: dict[str, dict[str, int]] = {}
    for key, names in sorted(strata.items()):
        names = sorted(names)
        random.Random(f"{seed}:split:{key}").shuffle(names)
        n_held = int(len(names) * fraction + 0.5) if len(names) > 1 else 0
        held.update(names[:n_held])
        images_held = sum(len(groups[n]) for n in names[:n_held])
        images = sum(len(groups[n]) for n in names)
        counts[key] = {"train": images - images_held, "heldout": images_held}
    train = [r for r in records if r.group not in held]
    heldout = [r for r in records if r.group in held]
    return train, heldout, counts


def curate(records: Sequence[SftRecord], config: CurationConfig = CurationConfig()) -> Curated:
    """All four steps; the report is checked before it is returned."""
    repeated = [i for i, n in Counter(r.id for r in records).items() if n > 1]
    if repeated:
        raise ValueError(f"record ids must be unique; repeated: {sorted(repeated)[:5]}")
    report = CurationReport(config)
    report.images_in = len(records)
    curated = [curate_boxes(r, config, report) for r in records]
    normals = [r for r in curated if r.normal]
    report.normal_in = len(normals)
    positives, over_cap = cap_positives([r for r in curated if not r.normal], config)
    kept_normals, dropped_normals = sample_normals(normals, len(positives), config)
    report.dropped_over_cap = [r.id for r in over_cap]
    report.dropped_normal = [r.id for r in dropped_normals]
    keep = {r.id for r in [*positives, *kept_normals]}
    kept = [r for r in curated if r.id in keep]
    train, heldout, report.strata = stratified_split(kept, config.heldout, config.seed)
    report.train = [r.id for r in train]
    report.heldout = [r.id for r in heldout]
    report.labels_kept = Counter(lb for r in kept for lb in r.labels)
    report.check()
    return Curated(train, heldout, report)
