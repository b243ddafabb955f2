"""The assistant turn a grounder is trained to write: the exact JSON the grounding prompt asks for.

Findings are written in the model-native box format (`auditor.recovery.BoxFormat`) and in the canonical
order recovery sorts into, so ``recover_findings(render_target(f, fmt), fmt)`` gives ``f`` back up to
rounding (a property test holds us to that). Boxes at scale 1 are written with three decimals; any
other scale as integers, as the prompt's contract says. Pure logic: no I/O, no models.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from auditor.labels import LABEL_RANK, Label
from auditor.recovery import BoxFormat

UNIT_DECIMALS: Final = 3
"""Decimals of a scale-1 coordinate: a thousandth of the image side, the resolution of scale 1000."""

XYXY = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrainFinding:
    """One finding of a training image: a label and its box as normalised ``(x0, y0, x1, y1)``."""

    label: Label
    box: XYXY

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label.value, "box": list(self.box)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainFinding:
        x0, y0, x1, y1 = (float(v) for v in data["box"])
        return cls(Label(data["label"]), (x0, y0, x1, y1))


def canonical(findings: Iterable[TrainFinding]) -> list[TrainFinding]:
    """Label order first, then position: the order recovery returns, so targets are deterministic."""
    return sorted(findings, key=lambda f: (LABEL_RANK[f.label], f.box))


def native_box(box: XYXY, fmt: BoxFormat) -> list[float] | list[int]:
    """A normalised box in the model's order and scale, rounded the way the prompt asks for.

    Rounding never collapses a box: a side that rounds to nothing is widened by one unit, inside the
    image, so every written box is one recovery accepts.
    """
    x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) * fmt.scale for v in box)
    integral = fmt.scale != 1
    step = 1.0 if integral else 10.0**-UNIT_DECIMALS

    def rounded(v: float) -> float:
        return float(round(v)) if integral else round(v, UNIT_DECIMALS)

    def side(lo: float, hi: float) -> tuple[float, float]:
        a, b = rounded(lo), rounded(hi)
        if b <= a:
            b = a + step
            if b > fmt.scale:
                a, b = rounded(fmt.scale - step), fmt.scale
        return a, b

    nx0, nx1 = side(x0, x1)
    ny0, ny1 = side(y0, y1)
    values = [ny0, nx0, ny1, nx1] if fmt.order == "yxyx" else [nx0, ny0, nx1, ny1]
    return [int(v) for v in values] if integral else values


def render_target(findings: Sequence[TrainFinding], fmt: BoxFormat) -> str:
    """The assistant's answer: one object per region, or exactly ``[{"label": "no_finding"}]``."""
    if not findings:
        return json.dumps([{"label": Label.NO_FINDING.value}])
    return json.dumps(
        [{"label": f.label.value, "box_2d": native_box(f.box, fmt)} for f in canonical(findings)]
    )


def format_name(fmt: BoxFormat) -> str:
    """``yxyx@1``: how manifests and run records name a box format (as `eval` provenance does)."""
    return f"{fmt.order}@{fmt.scale:g}"


def label_set(findings: Iterable[TrainFinding]) -> tuple[str, ...]:
    """The image's labels as a sorted tuple; ``("no_finding",)`` for a normal image."""
    names = sorted({f.label.value for f in findings})
    return tuple(names) if names else (Label.NO_FINDING.value,)
