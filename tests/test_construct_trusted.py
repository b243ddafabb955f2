"""`construct_trusted` must build exactly what validation would, and refuse an incomplete field set."""

from __future__ import annotations

import pytest

from auditor.compare import compare
from auditor.draft_rules import read_draft
from auditor.schema import (
    Box,
    Comparison,
    DraftReading,
    Flag,
    Grounding,
    ImageFinding,
    ModelInfo,
    ParseOutcome,
    construct_trusted,
)


def test_trusted_results_equal_validated_ones() -> None:
    grounding = Grounding(
        findings=[
            ImageFinding(label="pneumothorax", box=Box(x0=0.1, y0=0.1, x1=0.4, y1=0.5)),
            ImageFinding(label="pleural_effusion", box=Box(x0=0.5, y0=0.6, x1=0.9, y1=0.9)),
        ],
        outcome=ParseOutcome.CLEAN,
        model=ModelInfo(backend="test", model_id="t"),
    )
    reading = read_draft("No pneumothorax. Mild cardiomegaly. Right effusion.")
    comparison = compare(grounding, reading)
    assert comparison.flags
    assert Comparison.model_validate(comparison.model_dump()) == comparison
    assert DraftReading.model_validate(reading.model_dump()) == reading
    for flag in comparison.flags:
        assert Flag.model_validate(flag.model_dump()) == flag
    assert comparison.model_fields_set == set(Comparison.model_fields)


def test_trusted_construction_refuses_missing_fields() -> None:
    with pytest.raises(TypeError, match="missing"):
        construct_trusted(ModelInfo, backend="x")
