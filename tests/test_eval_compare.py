"""`eval compare`: two runs side by side, with counts, exact intervals and paired tests, so that nobody
over-reads 4/9 against 3/9."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor.cli import main
from auditor.eval.items import EvalItem, GoldFinding
from auditor.eval.records import ItemRecord, PredictedFinding
from auditor.eval.runstore import ITEMS_FILE
from auditor.eval.score import score
from auditor.labels import Label
from auditor.schema import Box, ParseOutcome

NODULE_BOX = Box(x0=0.2, y0=0.2, x1=0.3, y1=0.3)
ITEMS = [
    EvalItem(id=f"n{i}", findings=(GoldFinding(Label.NODULE_MASS, NODULE_BOX, "Nodule"),), normal=False)
    for i in range(9)
]


def write_run(folder: Path, hits: set[int]) -> None:
    """A grounding run in which the model found the nodule on the images numbered in ``hits``."""
    records = []
    for i, item in enumerate(ITEMS):
        found = [PredictedFinding(label=Label.NODULE_MASS, box=(0.2, 0.2, 0.3, 0.3))] if i in hits else []
        outcome = ParseOutcome.CLEAN
        records.append(
            ItemRecord(
                id=item.id,
                gold=[Label.NODULE_MASS],
                outcome=outcome,
                grounding_outcome=outcome,
                findings=found,
            )
        )
    metrics = {"command": "grounding", **score(ITEMS, records, audit=False)}
    metrics["run"] = {"config": {"datasets": [{"kind": "test", "sha256": "0" * 64}]}}
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    (folder / ITEMS_FILE).write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")


def test_compare_shows_counts_intervals_and_a_paired_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(tmp_path / "v1", {0, 1, 2, 3})  # 4/9
    write_run(tmp_path / "v2", {2, 3, 4})  # 3/9
    out_file = tmp_path / "cmp.md"
    code = main(["eval", "compare", str(tmp_path / "v1"), str(tmp_path / "v2"), "--out", str(out_file)])
    text = capsys.readouterr().out
    assert code == 0
    assert text == out_file.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| Urgent recall, nodule / mass"))
    assert "| 4/9 | 3/9 | -0.111 |" in row
    assert "4/9 = 0.444 [0.137, 0.788]" in row and "3/9 = 0.333 [0.075, 0.701]" in row
    assert "A only 2, B only 1, exact McNemar p = 1.000" in row


def test_compare_without_shared_items_has_no_paired_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(tmp_path / "a", {0})
    write_run(tmp_path / "b", {1})
    (tmp_path / "b" / ITEMS_FILE).unlink()
    assert main(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    text = capsys.readouterr().out
    assert "no paired tests" in text and "McNemar" not in text


def test_compare_needs_finished_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["eval", "compare", str(tmp_path / "empty"), str(tmp_path / "empty")])
    assert exc.value.code == 2
    assert "metrics.json" in capsys.readouterr().err


def test_compare_reads_run_folders_without_changing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A torn last line (a run killed mid-write, or one still being written) is ignored, not repaired:
    only the writer that resumes a run may cut it off."""
    write_run(tmp_path / "v1", {0, 1, 2, 3})
    write_run(tmp_path / "v2", {2, 3, 4})
    for name, tail in (("v1", '{"id": "n9", "outcome": "cle'), ("v2", "")):
        with open(tmp_path / name / ITEMS_FILE, "a", encoding="utf-8") as fh:
            fh.write(tail)
    # v2 loses the newline after its last whole record
    v2_items = tmp_path / "v2" / ITEMS_FILE
    v2_items.write_bytes(v2_items.read_bytes().rstrip(b"\n"))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main(["eval", "compare", str(tmp_path / "v1"), str(tmp_path / "v2")])
    text = capsys.readouterr().out
    assert code == 0
    assert "A only 2, B only 1" in text  # the whole records of both runs were all read
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
