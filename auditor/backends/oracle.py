"""The oracle grounder: a dataset's own gold boxes, served as if a perfect image model had found them.

It isolates the draft reader and the judge in an evaluation: with the image stage exact, every wrong
flag on a synthetic draft is the reader's or the judge's. It needs no image, so it grounds an item by
its id (`ground_id`); asked to ground an image it refuses, because it has no way to know which item
an image is. Gold with no finding becomes ``[no_finding]``, as a model would answer; gold that only
carries labels outside the six becomes an empty finding list (nothing of the six is on the image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from auditor.backends import BackendError, BackendState
from auditor.labels import LABEL_RANK, Label
from auditor.schema import Box, Grounding, ImageFinding, ModelInfo, ParseOutcome

if TYPE_CHECKING:
    from auditor.images import LoadedImage

ORACLE_MODEL: Final = ModelInfo(backend="oracle", model_id="dataset-gold-boxes")

GoldEntry = tuple[Label, Box | None]


class OracleGrounder:
    """Groundings built straight from gold findings, keyed by dataset item id."""

    def __init__(self, gold: Mapping[str, Sequence[GoldEntry]], normal: Mapping[str, bool | None]) -> None:
        self._gold = gold
        self._normal = normal

    def load(self) -> None:
        return None

    def state(self) -> BackendState:
        return BackendState(
            role="grounder",
            backend="oracle",
            model_id=ORACLE_MODEL.model_id,
            loaded=True,
            device="cpu",
            detail={"items": len(self._gold)},
        )

    def ground(self, image: LoadedImage) -> Grounding:
        raise BackendError(
            "needs_item", "the oracle grounder grounds dataset items by id (ground_id), not images"
        )

    def ground_id(self, item_id: str) -> Grounding:
        """The gold findings of one item as a clean Grounding; an unknown id is a BackendError."""
        if item_id not in self._gold:
            raise BackendError("no_gold", f"the oracle has no gold for item {item_id!r}")
        entries = sorted(
            self._gold[item_id],
            key=lambda e: (LABEL_RANK[e[0]], e[1].as_list() if e[1] is not None else []),
        )
        findings = [
            ImageFinding(label=label, box=box) for label, box in entries if label is not Label.NO_FINDING
        ]
        if not findings and self._normal.get(item_id) is True:
            findings = [ImageFinding(label=Label.NO_FINDING)]
        return Grounding(findings=findings, outcome=ParseOutcome.CLEAN, model=ORACLE_MODEL)
