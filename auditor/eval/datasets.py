"""Datasets named ``KIND:PATH`` -> evaluation items, with the file's sha256 and an account of its labels.

This is the I/O side of the dataset readers (`nih`, `chestx_det`, `vindr`, `openi`), which are pure.
Several datasets may be evaluated in one run; their item ids must then be distinct.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from auditor.eval.chestx_det import chestx_det_items
from auditor.eval.items import DatasetStats, EvalItem, GoldFinding
from auditor.eval.nih import nih_items
from auditor.eval.openi import read_reports
from auditor.eval.vindr import Size, vindr_items
from auditor.labels import FINDING_LABELS, Label

KINDS: Final = ("nih-bbox", "chestx-det", "vindr", "openi")
IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


@dataclass(frozen=True)
class DatasetSpec:
    kind: str
    path: Path

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}"


@dataclass
class LoadedDataset:
    """One dataset file's items, its sha256 and what the reader counted on the way."""

    spec: DatasetSpec
    sha256: str
    items: list[EvalItem]
    stats: DatasetStats

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.spec.kind,
            "path": str(self.spec.path),
            "sha256": self.sha256,
            "items": len(self.items),
            **self.stats.as_dict(),
        }


def parse_spec(text: str) -> DatasetSpec:
    """``KIND:PATH`` -> DatasetSpec; a bad kind or an empty path is a ValueError naming the choices."""
    kind, sep, path = text.partition(":")
    if not sep or kind not in KINDS or not path:
        raise ValueError(f"--dataset {text}: expected KIND:PATH with KIND one of {', '.join(KINDS)}")
    return DatasetSpec(kind, Path(path))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_dataset(
    spec: DatasetSpec, *, sizes: Path | None = None, images: Path | None = None
) -> LoadedDataset:
    """Read one dataset. Malformed rows raise ValueError naming file and row; nothing is skipped."""
    if not spec.path.is_file():
        raise ValueError(f"{spec.path}: no such file")
    source = spec.path.name
    if spec.kind == "nih-bbox":
        with open(spec.path, newline="", encoding="utf-8") as fh:
            items, stats = nih_items(csv.reader(fh), source)
    elif spec.kind == "chestx-det":
        try:
            records = json.loads(spec.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{spec.path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(records, list):
            raise ValueError(f"{spec.path}: expected a JSON list of records")
        items, stats = chestx_det_items(records, source)
    elif spec.kind == "vindr":
        with open(spec.path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"image_id", "class_name", "x_min", "y_min", "x_max", "y_max"} - set(
                reader.fieldnames or []
            )
            if missing:
                raise ValueError(f"{spec.path}: missing column(s) {sorted(missing)}")
            rows = list(reader)
        ids = list(dict.fromkeys((r.get("image_id") or "").strip() for r in rows))
        size_map = _read_sizes(sizes) if sizes is not None else _sizes_from_images(images, ids)
        items, stats = vindr_items(rows, size_map, source)
        if sizes is None and images is None:
            stats.notes.append("no --sizes CSV and no --images folder: every VinDr item lacks a size")
    else:
        items, stats = openi_items(spec.path)
    return LoadedDataset(spec, sha256_file(spec.path), items, stats)


def openi_items(path: Path) -> tuple[list[EvalItem], DatasetStats]:
    """Open-i reports as items: labels without boxes; a blank gold cell stays ambiguous (None)."""
    stats = DatasetStats()
    items = []
    for report in read_reports(path):
        stats.rows += 1
        gold = report.gold
        found = tuple(GoldFinding(lb, None, "report") for lb in FINDING_LABELS if gold.get(lb) is True)
        for f in found:
            stats.labels.mapped[f.label.value] += 1
        ambiguous = tuple((lb, None) for lb in FINDING_LABELS if lb in gold and gold[lb] is None)
        items.append(
            EvalItem(
                id=report.id,
                findings=found,
                normal=gold.get(Label.NO_FINDING),
                gold_override=ambiguous,
            )
        )
    stats.notes.append("report-level labels: no boxes, no images")
    return items, stats


def _read_sizes(path: Path) -> dict[str, Size]:
    """A CSV ``image_id,width,height`` (the size of the image the boxes were drawn on)."""
    sizes: dict[str, Size] = {}
    try:
        fh = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise ValueError(f"--sizes {path}: no such file") from None
    with fh:
        reader = csv.DictReader(fh)
        if not {"image_id", "width", "height"} <= set(reader.fieldnames or []):
            raise ValueError(f"{path}: expected columns image_id,width,height")
        for row_no, row in enumerate(reader, start=2):
            try:
                width, height = float(row["width"]), float(row["height"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{row_no}: width and height must be numbers") from None
            if not (width > 0 and height > 0):
                raise ValueError(f"{path}:{row_no}: width and height must be positive")
            sizes[row["image_id"].strip()] = (width, height)
    return sizes


def _sizes_from_images(folder: Path | None, ids: list[str]) -> dict[str, Size]:
    """Pixel sizes read from image headers (no decoding). An id without a readable file gets none."""
    if folder is None:
        return {}
    index = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    sizes: dict[str, Size] = {}
    for image_id in ids:
        path = index.get(image_id)
        size = _header_size(path) if path is not None else None
        if size is not None:
            sizes[image_id] = size
    return sizes


def _header_size(path: Path) -> Size | None:
    try:
        if path.suffix.lower() in {".dcm", ".dicom"}:
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return float(ds.Columns), float(ds.Rows)
        from PIL import Image

        with Image.open(path) as im:
            return float(im.width), float(im.height)
    except Exception:  # an unreadable header: the item then reports "no image size", visibly
        return None


def load_all(
    specs: list[DatasetSpec], *, sizes: Path | None = None, images: Path | None = None
) -> tuple[list[EvalItem], list[LoadedDataset]]:
    """Every dataset's items, in order; an id that appears in two datasets is an error."""
    loaded = [load_dataset(s, sizes=sizes, images=images) for s in specs]
    owner: dict[str, DatasetSpec] = {}
    items: list[EvalItem] = []
    for ds in loaded:
        for item in ds.items:
            if item.id in owner:
                raise ValueError(f"item id {item.id!r} is in both {owner[item.id]} and {ds.spec}")
            owner[item.id] = ds.spec
            items.append(item)
    return items, loaded
