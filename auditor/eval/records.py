"""One line of ``items.jsonl``: everything an evaluation needs to score an item, written as it finishes.

Scores are computed from these records only, never from in-memory state, so a resumed run and an
uninterrupted one are scored the same way, and a run can be re-scored later. A failed item is a record
too: its stage and reason are on it, and it is scored as having predicted nothing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from auditor.labels import Label
from auditor.schema import ParseOutcome

FailureStage = Literal["dataset", "image", "grounding", "reading", "compare"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Failure(_Record):
    """Why an item, or one of its stages, produced no usable result."""

    stage: FailureStage
    reason: str


class PredictedFinding(_Record):
    label: Label
    box: tuple[float, float, float, float] | None = None


class FlagRecord(_Record):
    kind: str
    label: Label
    draft_status: str | None = None


class ItemRecord(_Record):
    """The outcome of one dataset item. ``outcome`` is failed when any stage failed."""

    id: str
    outcome: ParseOutcome
    grounding_outcome: ParseOutcome
    failures: list[Failure] = Field(default_factory=list)
    gold: list[Label] = Field(default_factory=list, description="the finding labels the gold has")
    findings: list[PredictedFinding] = Field(default_factory=list)
    image_sha256: str | None = None
    raw_output: str | None = None
    notes: list[str] = Field(default_factory=list, description="note codes of the grounding")
    # audit runs only
    draft: str | None = None
    edit: str | None = None
    target: Label | None = None
    target_status: str | None = Field(
        default=None,
        description="how the reader read the edited finding: present/uncertain/absent/not_mentioned",
    )
    expected: list[FlagRecord] = Field(default_factory=list)
    flags: list[FlagRecord] = Field(default_factory=list)
    reading_outcome: ParseOutcome | None = None
    ms: float = 0.0


def combine(*outcomes: ParseOutcome | None) -> ParseOutcome:
    """An item's outcome from its stages': failed beats recovered beats clean; a missing stage failed."""
    if any(o is None or o is ParseOutcome.FAILED for o in outcomes):
        return ParseOutcome.FAILED
    if any(o is ParseOutcome.RECOVERED for o in outcomes):
        return ParseOutcome.RECOVERED
    return ParseOutcome.CLEAN
