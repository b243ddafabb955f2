"""Open-i style report CSVs: ``uid``/``id``, ``text`` and per-label gold cells 1 / 0 / blank."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from auditor.labels import LABEL_ORDER, Label


@dataclass(frozen=True)
class ReportItem:
    """One report with its gold: True, False, or None where the coder left the label ambiguous."""

    id: str
    text: str
    gold: dict[Label, bool | None]


def _cell(value: str | None) -> bool | None:
    value = (value or "").strip()
    if value in {"", "-1", "nan"}:
        return None
    if value in {"1", "1.0"}:
        return True
    if value in {"0", "0.0"}:
        return False
    raise ValueError(f"gold cell must be 1, 0 or blank, got {value!r}")


def read_reports(path: str | Path) -> list[ReportItem]:
    """Read every row; a row with an unreadable gold cell is an error naming the row, not a skip."""
    items: list[ReportItem] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or [])
        id_col = "uid" if "uid" in fields else "id"
        missing = {"text", id_col} - fields
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        for row_no, row in enumerate(reader, start=2):
            try:
                gold = {lb: _cell(row.get(lb.value)) for lb in LABEL_ORDER if lb.value in fields}
            except ValueError as exc:
                raise ValueError(f"{path}:{row_no}: {exc}") from exc
            items.append(ReportItem(id=row[id_col], text=row["text"] or "", gold=gold))
    return items
