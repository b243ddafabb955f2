"""The held-out split as a dataset `eval grounding` reads: ChestX-Det's JSON layout.

`eval grounding --dataset chestx-det:OUT/heldout.chestx-det.json --images DIR` then scores a grounder
on exactly the curated held-out images and boxes. Boxes are written in ChestX-Det's 1024-pixel frame
(the normalised box times 1024, which the reader divides back exactly: a power of two), labels under
the ChestX-Det name that maps to each audit label (`EVAL_NAMES`, checked by a test against the one
vocabulary table), and images by their path under the corpus's image folder. Pure logic.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from auditor.eval.chestx_det import CHESTX_DET_FRAME
from auditor.labels import Label
from auditor.train.records import SftRecord

EVAL_KIND: Final = "chestx-det"
EVAL_NAMES: Final[dict[Label, str]] = {
    Label.PLEURAL_EFFUSION: "Effusion",
    Label.PNEUMOTHORAX: "Pneumothorax",
    Label.LUNG_OPACITY_CONSOLIDATION: "Consolidation",
    Label.NODULE_MASS: "Nodule",
    Label.CARDIOMEGALY: "Cardiomegaly",
}


def image_name(record: SftRecord, images: Path) -> str:
    """The image's path relative to ``images`` (what `eval` looks up there); absolute if outside it."""
    path = Path(record.image)
    try:
        return path.relative_to(images).as_posix()
    except ValueError:
        return str(path)


def as_chestx_det(records: Iterable[SftRecord], images: Path) -> list[dict[str, Any]]:
    """One ``{file_name, syms, boxes}`` per record; a normal image has empty ``syms`` (ChestX-Det's
    convention for no finding)."""
    return [
        {
            "file_name": image_name(r, images),
            "syms": [EVAL_NAMES[f.label] for f in r.findings],
            "boxes": [[v * CHESTX_DET_FRAME for v in f.box] for f in r.findings],
        }
        for r in records
    ]
