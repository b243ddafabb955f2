"""VinDr-CXR ``train.csv``: one row per (radiologist, box), boxes in the ORIGINAL image's pixels.

Up to three radiologists read each image, so one region usually arrives as two or three slightly
different boxes. Same-label boxes are merged with union-find at IoU >= 0.5 (transitively) and each
cluster becomes the coordinate-wise mean of its members (`auditor.eval.boxes.merge_boxes` says why the
mean and not the union). Labels are merged after mapping, so "Consolidation" from one reader and
"Lung Opacity" from another, over the same region, are one lung_opacity_consolidation finding.

Readers disagree: an image is ``no_finding`` only when every row on it says "No finding"; a finding
any reader boxed counts (the union of readers). Boxes are normalised by the image size the caller
supplies; a missing size, or a box far outside the size given (the size of a resized mirror, not of
the original DICOM), makes the item an integrity failure with that reason. Pure logic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

import numpy as np

from auditor.eval.boxes import MERGE_IOU, merge_boxes, pixel_box
from auditor.eval.items import DatasetStats, EvalItem, GoldFinding, normal_from
from auditor.labels import LABEL_RANK, Label

REQUIRED: Final = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max")
OUTSIDE_TOLERANCE: Final = 0.02
"""A box may poke this far (fraction of the side) outside the image before it is called a size error."""

Size = tuple[float, float]


def _coords(row: Mapping[str, str | None], where: str) -> list[float] | None:
    cells = [(row.get(k) or "").strip() for k in REQUIRED[2:]]
    if all(c in {"", "nan", "NaN"} for c in cells):
        return None
    try:
        values = [float(c) for c in cells]
    except ValueError:
        raise ValueError(f"{where}: box cells must be numbers, got {cells}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where}: box cells must be finite, got {cells}")
    return values


class _Image:
    """The rows of one image, gathered before merging."""

    def __init__(self) -> None:
        self.boxes: dict[Label, list[list[float]]] = {}
        self.unboxed: dict[Label, str] = {}
        self.sources: dict[Label, list[str]] = {}
        self.other: list[str] = []


def vindr_items(
    rows: Iterable[Mapping[str, str | None]],
    sizes: Mapping[str, Size] | None,
    source: str = "train.csv",
) -> tuple[list[EvalItem], DatasetStats]:
    """DictReader rows + ``{image_id: (width, height)}`` -> one item per image, first-appearance order."""
    stats = DatasetStats()
    images: dict[str, _Image] = {}
    for row_no, row in enumerate(rows, start=2):
        where = f"{source}:{row_no}"
        missing = [k for k in REQUIRED[:2] if not (row.get(k) or "").strip()]
        if missing:
            raise ValueError(f"{where}: empty {', '.join(missing)}")
        image_id, name = (row[k] or "" for k in REQUIRED[:2])
        image_id, name = image_id.strip(), name.strip()
        stats.rows += 1
        img = images.setdefault(image_id, _Image())
        label = stats.labels.map("vindr", name)
        if label is Label.NO_FINDING:
            continue
        if label is None:
            img.other.append(name)
            continue
        img.sources.setdefault(label, []).append(name)
        coords = _coords(row, where)
        if coords is None:
            img.unboxed[label] = name
        else:
            stats.boxes_in += 1
            img.boxes.setdefault(label, []).append(coords)
    items = [_item(image_id, img, (sizes or {}).get(image_id), stats) for image_id, img in images.items()]
    stats.notes.append(
        f"same-label boxes merged by union-find at IoU >= {MERGE_IOU} (coordinate-wise mean): "
        f"{stats.boxes_in} boxes in, {stats.boxes_out + stats.boxes_unusable} findings out"
    )
    return items, stats


def _item(image_id: str, img: _Image, size: Size | None, stats: DatasetStats) -> EvalItem:
    found: list[GoldFinding] = []
    problem = None if size is not None else f"no image size for {image_id}: boxes cannot be normalised"
    for label in sorted(set(img.boxes) | set(img.unboxed), key=LABEL_RANK.__getitem__):
        source = "/".join(sorted(set(img.sources[label])))
        merged = merge_boxes(np.array(img.boxes.get(label, []), dtype=np.float64))
        if not len(merged):
            found.append(GoldFinding(label, None, source))
            stats.boxes_unusable += 1
            continue
        for x0, y0, x1, y1 in merged.tolist():
            if size is None:
                found.append(GoldFinding(label, None, source))
                stats.boxes_unusable += 1
                continue
            width, height = size
            if problem is None and _far_outside((x0, y0, x1, y1), width, height):
                problem = (
                    f"box {[round(v, 1) for v in (x0, y0, x1, y1)]} lies outside the {width:g}x{height:g} "
                    "image: VinDr boxes are in original pixels (is this the size of a resized copy?)"
                )
            box = stats.count_box(pixel_box(x0, y0, x1, y1, width, height))
            found.append(GoldFinding(label, box, source))
    gold = tuple(found)
    return EvalItem(
        id=image_id,
        image=image_id,
        findings=gold,
        other=tuple(img.other),
        normal=normal_from(gold, len(img.other)),
        problem=problem,
    )


def _far_outside(box: tuple[float, float, float, float], width: float, height: float) -> bool:
    x0, y0, x1, y1 = box
    tx, ty = OUTSIDE_TOLERANCE * width, OUTSIDE_TOLERANCE * height
    return min(x0, x1) < -tx or min(y0, y1) < -ty or max(x0, x1) > width + tx or max(y0, y1) > height + ty
