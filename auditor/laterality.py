"""The patient's side of an image box: the one convention the judge and the evaluation share.

On a PA or AP frontal chest film in the standard display the patient faces the viewer, so the image's
LEFT half (small x) is the patient's RIGHT and the image's right half is the patient's left. A box is
given a side only when it clearly lies in one half: it does not cross the midline, its centre lies
beyond a margin either side of the midline, and most of its area lies beyond that margin too. Anything
else (a box across or hugging the midline) has no side, and nothing is concluded from it. A lateral
film has no left/right in x at all; the judge never calls this for one. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

from auditor.labels import Label
from auditor.schema import Box

PatientSide = Literal["left", "right"]

MIDLINE: Final = 0.5
MIDLINE_MARGIN: Final = 0.05
"""A band of 5% of the image width either side of the midline where no side is read."""
MOST_OF_AREA: Final = 2 / 3
"""The share of a box's area that must lie beyond the margin for the box to have a side."""

OPPOSITE: Final[dict[PatientSide, PatientSide]] = {"left": "right", "right": "left"}
SIDELESS_LABELS: Final[frozenset[Label]] = frozenset({Label.CARDIOMEGALY, Label.NO_FINDING})
"""Labels that have no side: never checked for laterality."""


def patient_side(box: Box) -> PatientSide | None:
    """The patient's side of ``box`` on a frontal film in standard display, or None where unclear."""
    if box.x0 < MIDLINE < box.x1:
        return None  # across the midline
    width = box.x1 - box.x0
    centre = (box.x0 + box.x1) / 2
    if centre < MIDLINE - MIDLINE_MARGIN:
        beyond = min(box.x1, MIDLINE - MIDLINE_MARGIN) - box.x0
        side: PatientSide = "right"  # the image's left half
    elif centre > MIDLINE + MIDLINE_MARGIN:
        beyond = box.x1 - max(box.x0, MIDLINE + MIDLINE_MARGIN)
        side = "left"
    else:
        return None
    return side if beyond >= MOST_OF_AREA * width else None


def sides_of(boxes: Iterable[Box | None]) -> set[PatientSide | None]:
    """The sides of several boxes; None in the set stands for a box without a side (or no box)."""
    return {None if b is None else patient_side(b) for b in boxes}


def mirrored(box: Box) -> Box:
    """The box on the image flipped left to right (what a film displayed the other way round shows)."""
    return Box(x0=1.0 - box.x1, y0=box.y0, x1=1.0 - box.x0, y1=box.y1)
