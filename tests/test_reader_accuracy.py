"""The rule reader on real reports: the accuracy floor the README publishes must hold, both ways.

Not a timed test. The Open-i test skips with a reason where the shared data is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.eval.reader_eval import evaluate_reader, report_markdown
from auditor.labels import Label

OPENI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "openi" / "openi_dev.csv"


@pytest.mark.skipif(not OPENI.is_file(), reason=f"shared Open-i data not found at {OPENI}")
def test_rule_reader_accuracy_on_openi_dev() -> None:
    result = evaluate_reader(OPENI)
    assert result.integrity.total == 3085
    assert result.integrity.failed == 0
    assert result.macro_f1 >= 0.96, result.labels
    for name, score in result.labels.items():
        assert score.f1 >= 0.90, (name, score)
    # the other convention (a hedge counted as present) is reported beside it, and holds too
    assert result.macro_f1_uncertain_present >= 0.95, result.labels_uncertain_present


def test_both_conventions_with_their_counts(tmp_path: Path) -> None:
    """A hedged mention is a miss when uncertain counts as not present, a hit when it counts as present."""
    csv = tmp_path / "openi.csv"
    header = "uid,text," + ",".join(lb.value for lb in Label) + "\n"
    rows = [
        '1,"Possible small left pleural effusion.",1,0,0,0,0,0\n',
        '2,"Small right pleural effusion.",1,0,0,0,0,0\n',
        '3,"No pleural effusion or pneumothorax.",0,0,0,0,0,1\n',
    ]
    csv.write_text(header + "".join(rows), encoding="utf-8")
    result = evaluate_reader(csv)
    strict, lenient = result.labels["pleural_effusion"], result.labels_uncertain_present["pleural_effusion"]
    assert (strict.tp, strict.fn, strict.fp, strict.tn) == (1, 1, 0, 1)
    assert (lenient.tp, lenient.fn, lenient.fp, lenient.tn) == (2, 0, 0, 1)
    assert result.macro_f1 < result.macro_f1_uncertain_present
    report = report_markdown(result)
    assert f"**{result.macro_f1:.3f}**" in report and f"**{result.macro_f1_uncertain_present:.3f}**" in report
