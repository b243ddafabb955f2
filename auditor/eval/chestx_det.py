"""ChestX-Det JSON: a list of ``{file_name, syms, boxes}``, boxes ``[x1, y1, x2, y2]`` in 1024 px.

ChestX-Det annotates its 13 categories exhaustively, so an empty ``syms`` list is a normal image
(``no_finding`` gold True). Images are not distributed with the annotations. Pure logic: the caller
parses the JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from auditor.eval.boxes import pixel_box
from auditor.eval.items import DatasetStats, EvalItem, GoldFinding, normal_from

CHESTX_DET_FRAME: Final = 1024.0


def _record(index: int, record: object, source: str) -> tuple[str, list[str], list[list[float]]]:
    where = f"{source}[{index}]"
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object with file_name, syms, boxes")
    name, syms, boxes = record.get("file_name"), record.get("syms"), record.get("boxes")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: file_name must be a non-empty string")
    where = f"{source}[{index}] ({name})"
    if not isinstance(syms, list) or not all(isinstance(s, str) for s in syms):
        raise ValueError(f"{where}: syms must be a list of names")
    if not isinstance(boxes, list) or len(boxes) != len(syms):
        raise ValueError(f"{where}: boxes must be a list with one box per sym ({len(syms)})")
    coords: list[list[float]] = []
    for box in boxes:
        ok = isinstance(box, list) and len(box) == 4
        if not ok or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
            raise ValueError(f"{where}: a box must be four numbers [x1, y1, x2, y2], got {box!r}")
        coords.append([float(v) for v in box])
    return name, syms, coords


def chestx_det_items(
    records: Sequence[object], source: str = "ChestX_Det.json"
) -> tuple[list[EvalItem], DatasetStats]:
    """Parsed JSON records -> one item per image, in file order; duplicate file names are an error."""
    stats = DatasetStats()
    items: list[EvalItem] = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        name, syms, coords = _record(index, record, source)
        if name in seen:
            raise ValueError(f"{source}[{index}]: file_name {name!r} appears twice")
        seen.add(name)
        stats.rows += 1
        found: list[GoldFinding] = []
        other: list[str] = []
        for sym, (x0, y0, x1, y1) in zip(syms, coords, strict=True):
            label = stats.labels.map("chestx-det", sym)
            if label is None:
                other.append(sym)
                continue
            stats.boxes_in += 1
            box = stats.count_box(pixel_box(x0, y0, x1, y1, CHESTX_DET_FRAME, CHESTX_DET_FRAME))
            found.append(GoldFinding(label, box, sym))
        gold = tuple(found)
        items.append(
            EvalItem(
                id=name, image=name, findings=gold, other=tuple(other), normal=normal_from(gold, len(other))
            )
        )
    return items, stats
