"""NIH ChestX-ray14 ``BBox_List_2017.csv``: one row per radiologist box, ``x, y, w, h`` in 1024-px frames.

The header is malformed (``Image Index,Finding Label,Bbox [x,y,w,h],,,``), so columns are named here by
position: image, label, x, y, w, h. Cells after the sixth must be empty. Boxes are normalised by the
1024-pixel frame they were drawn in, whatever resolution a local copy of the image has. Pure logic: the
caller reads the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from auditor.eval.boxes import pixel_box
from auditor.eval.items import DatasetStats, EvalItem, GoldFinding, normal_from

NIH_FRAME: Final = 1024.0
COLUMNS: Final = ("image", "label", "x", "y", "w", "h")


def _number(cell: str, what: str, where: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise ValueError(f"{where}: {what} must be a number, got {cell!r}") from None


def nih_items(
    rows: Iterable[Sequence[str]], source: str = "BBox_List_2017.csv"
) -> tuple[list[EvalItem], DatasetStats]:
    """Rows of the CSV (header included or not) -> one item per image, in first-appearance order."""
    stats = DatasetStats()
    findings: dict[str, list[GoldFinding]] = {}
    other: dict[str, list[str]] = {}
    for row_no, row in enumerate(rows, start=1):
        where = f"{source}:{row_no}"
        if row_no == 1 and row and row[0].strip().lower() == "image index":
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(COLUMNS) or any(cell.strip() for cell in row[len(COLUMNS) :]):
            raise ValueError(
                f"{where}: expected {len(COLUMNS)} cells ({', '.join(COLUMNS)}), got {list(row)}"
            )
        image, name = row[0].strip(), row[1].strip()
        if not image or not name:
            raise ValueError(f"{where}: image and label must not be empty")
        x, y, w, h = (_number(row[i], COLUMNS[i], where) for i in range(2, 6))
        stats.rows += 1
        findings.setdefault(image, [])
        other.setdefault(image, [])
        label = stats.labels.map("nih", name)
        if label is None:
            other[image].append(name)
            continue
        stats.boxes_in += 1
        box = stats.count_box(pixel_box(x, y, x + w, y + h, NIH_FRAME, NIH_FRAME))
        findings[image].append(GoldFinding(label, box, name))
    items = []
    for image, found in findings.items():
        gold = tuple(found)
        items.append(
            EvalItem(
                id=image,
                image=image,
                findings=gold,
                other=tuple(other[image]),
                normal=normal_from(gold, len(other[image])),
            )
        )
    return items, stats
