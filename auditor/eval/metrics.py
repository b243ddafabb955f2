"""Pure metrics (numpy only): presence precision/recall/F1 per label and macro-F1.

Gold cells may be ``None`` (ambiguous): such rows are left out of that label's score, and the
number left out is reported beside the score so that nobody mistakes a smaller N for the full set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1 for one label, with the confusion counts they came from."""

    tp: int
    fp: int
    fn: int
    tn: int
    excluded: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        return self.tp + self.fn

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "support": self.support,
            "excluded": self.excluded,
        }


def presence_prf(gold: Sequence[bool | None], predicted: Sequence[bool]) -> PRF:
    """Binary presence scores; rows whose gold is None are excluded and counted."""
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} rows, predicted {len(predicted)}")
    known = np.array([g is not None for g in gold], dtype=bool)
    g = np.array([bool(x) for x in gold], dtype=bool)[known]
    p = np.asarray(predicted, dtype=bool)[known]
    return PRF(
        tp=int(np.sum(g & p)),
        fp=int(np.sum(~g & p)),
        fn=int(np.sum(g & ~p)),
        tn=int(np.sum(~g & ~p)),
        excluded=int(np.sum(~known)),
    )


def macro_f1(scores: Sequence[PRF]) -> float:
    """Unweighted mean F1 over labels."""
    return float(np.mean([s.f1 for s in scores])) if scores else 0.0
