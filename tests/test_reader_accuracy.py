"""The rule reader on real reports: the accuracy floor the README publishes must hold.

Not a timed test. Skips with a reason where the shared data is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.eval.reader_eval import evaluate_reader

OPENI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "openi" / "openi_dev.csv"


@pytest.mark.skipif(not OPENI.is_file(), reason=f"shared Open-i data not found at {OPENI}")
def test_rule_reader_accuracy_on_openi_dev() -> None:
    result = evaluate_reader(OPENI)
    assert result.integrity.total == 3085
    assert result.integrity.failed == 0
    assert result.macro_f1 >= 0.96, result.labels
    for name, score in result.labels.items():
        assert score.f1 >= 0.90, (name, score)
