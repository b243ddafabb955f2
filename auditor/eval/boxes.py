"""Box geometry for evaluation: pixel boxes to `Box`, IoU, and merging several readers' boxes.

Pure numpy, no I/O. Datasets draw boxes in pixels of the image the radiologist saw; the audit contract
is the unit square, so every dataset box passes through `pixel_box`, which clips what lies a hair
outside the image (and says so) and refuses what is degenerate (and says so), never silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from auditor.schema import Box

FloatArray = npt.NDArray[np.float64]

MERGE_IOU: Final = 0.5
"""Same-label boxes from several readers that overlap at least this much are one finding."""


@dataclass(frozen=True)
class PixelBox:
    """The outcome of normalising one pixel box: the Box (None when unusable) and what was done to it."""

    box: Box | None
    clipped: bool = False
    problem: str | None = None


def pixel_box(x0: float, y0: float, x1: float, y1: float, width: float, height: float) -> PixelBox:
    """Corners in pixels -> a Box in [0, 1]. Clipped to the image; None (with a reason) if empty."""
    if not (width > 0 and height > 0):
        return PixelBox(None, problem=f"image size {width}x{height} is not positive")
    values = (x0, y0, x1, y1)
    if not all(np.isfinite(v) for v in values):
        return PixelBox(None, problem=f"box {list(values)} has a non-finite coordinate")
    nx0, nx1 = sorted((x0 / width, x1 / width))
    ny0, ny1 = sorted((y0 / height, y1 / height))
    cx0, cy0, cx1, cy1 = (min(max(v, 0.0), 1.0) for v in (nx0, ny0, nx1, ny1))
    clipped = (cx0, cy0, cx1, cy1) != (nx0, ny0, nx1, ny1)
    if not (cx0 < cx1 and cy0 < cy1):
        return PixelBox(None, clipped, problem=f"box {list(values)} is empty inside a {width}x{height} image")
    return PixelBox(Box(x0=cx0, y0=cy0, x1=cx1, y1=cy1), clipped)


def as_array(boxes: Sequence[Box]) -> FloatArray:
    """Boxes as an (n, 4) float array of x0, y0, x1, y1 (shape (0, 4) when empty)."""
    if not boxes:
        return np.zeros((0, 4), dtype=np.float64)
    return np.array([(b.x0, b.y0, b.x1, b.y1) for b in boxes], dtype=np.float64)


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """Pairwise intersection-over-union of (n, 4) and (m, 4) boxes: an (n, m) array."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0.0, None) * np.clip(iy1 - iy0, 0.0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


def merge_clusters(boxes: FloatArray, threshold: float = MERGE_IOU) -> list[list[int]]:
    """Union-find over boxes: two boxes join when their IoU >= threshold; clusters are transitive.

    So A~B and B~C put A, B, C in one cluster even when A and C do not overlap enough. Clusters are
    returned in order of their first member, members ascending: the result is deterministic.
    """
    n = len(boxes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n > 1:
        ious = iou_matrix(boxes, boxes)
        for i, j in zip(*np.nonzero(np.triu(ious >= threshold, k=1)), strict=True):
            ri, rj = find(int(i)), find(int(j))
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    clusters: dict[int, list[int]] = {}
    for i in range(n):
        clusters.setdefault(find(i), []).append(i)
    return sorted(clusters.values(), key=lambda c: c[0])


def merge_boxes(boxes: FloatArray, threshold: float = MERGE_IOU) -> FloatArray:
    """Merge overlapping boxes: each union-find cluster becomes the coordinate-wise MEAN of its members.

    The mean (not the enclosing union) is the rule: three readers outlining one effusion slightly
    differently describe one region of about that size; their union would be larger than any of them
    and would inflate the gold box that predictions are scored against.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    clusters = merge_clusters(boxes, threshold)
    if not clusters:
        return np.zeros((0, 4), dtype=np.float64)
    return np.array([boxes[c].mean(axis=0) for c in clusters], dtype=np.float64)
