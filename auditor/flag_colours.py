"""The flag palette: one colour per flag kind, shared by the picture (``auditor.overlay``), the worklist
report and the MCP Apps viewer. Plain data without PIL, so the server can fill the viewer's colours in
at start without importing an imaging library."""

from __future__ import annotations

from typing import Final, Literal

Style = Literal["URGENT", "LATERALITY", "MISSING", "UNSUPPORTED", "AGREED", "FINDING"]
"""How a finding or legend line is coloured. FINDING: an image finding that was not compared."""
RGB = tuple[int, int, int]

COLOURS: Final[dict[Style, RGB]] = {
    "URGENT": (230, 30, 30),
    "LATERALITY": (255, 230, 0),
    "MISSING": (255, 140, 0),
    "UNSUPPORTED": (190, 120, 255),
    "AGREED": (30, 185, 60),
    "FINDING": (40, 120, 255),
}
TEXT_ON: Final[dict[Style, RGB]] = {
    "URGENT": (255, 255, 255),
    "LATERALITY": (0, 0, 0),
    "MISSING": (0, 0, 0),
    "UNSUPPORTED": (0, 0, 0),
    "AGREED": (0, 0, 0),
    "FINDING": (255, 255, 255),
}
KEY_TEXT: Final[dict[Style, str]] = {
    "URGENT": "URGENT: can't-miss category on the image",
    "LATERALITY": "LATERALITY: side in draft vs boxes",
    "MISSING": "MISSING: on the image, not in the draft",
    "UNSUPPORTED": "UNSUPPORTED: in the draft, not on the image",
    "AGREED": "agreed: image and draft agree",
    "FINDING": "image finding, not compared",
}
