"""Score a draft reader on an Open-i style report CSV: per-label P/R/F1, macro-F1, integrity.

A label is "predicted present" when the reading has a mention of it with status ``present``.
Gold blanks are left out of that label's score and counted. A reading that fails is scored as
predicting nothing, and listed by id: the total always equals the number of rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from pydantic import BaseModel, Field

from auditor.eval.metrics import macro_f1, presence_prf
from auditor.eval.openi import read_reports
from auditor.labels import LABEL_ORDER
from auditor.schema import DraftReading, Integrity, ModelInfo, ParseOutcome


class LabelScore(BaseModel):
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    tn: int
    support: int
    excluded: int = Field(description="rows whose gold was blank (ambiguous) for this label")


class ReaderEvalResult(BaseModel):
    """The metrics of one reader run, with enough provenance to reproduce it."""

    dataset: str
    dataset_sha256: str
    reader: ModelInfo
    labels: dict[str, LabelScore]
    macro_f1: float
    integrity: Integrity
    failures: list[dict[str, str]]
    reports_per_second: float


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_all(texts: list[str], reader: str) -> tuple[list[DraftReading], float]:
    if reader != "rules":
        raise ValueError(f"reader {reader!r} is not available here (choose rules)")
    from auditor.draft_rules import read_draft

    t0 = time.perf_counter()
    readings = [read_draft(t) for t in texts]
    return readings, time.perf_counter() - t0


def evaluate_reader(path: str | Path, reader: str = "rules") -> ReaderEvalResult:
    items = read_reports(path)
    readings, seconds = _read_all([i.text for i in items], reader)
    scores = {}
    for label in LABEL_ORDER:
        gold = [i.gold.get(label) for i in items]
        predicted = [any(m.label is label and m.status == "present" for m in r.mentions) for r in readings]
        scores[label.value] = presence_prf(gold, predicted)
    outcomes = [r.outcome for r in readings]
    failures = [
        {"id": i.id, "reason": "; ".join(n.message for n in r.notes) or "failed"}
        for i, r in zip(items, readings, strict=True)
        if r.outcome is ParseOutcome.FAILED
    ]
    return ReaderEvalResult(
        dataset=str(path),
        dataset_sha256=_sha256(path),
        reader=readings[0].model if readings else ModelInfo(backend=reader, model_id="?"),
        labels={k: LabelScore.model_validate(v.as_dict()) for k, v in scores.items()},
        macro_f1=round(macro_f1(list(scores.values())), 4),
        integrity=Integrity(
            total=len(outcomes),
            clean=outcomes.count(ParseOutcome.CLEAN),
            recovered=outcomes.count(ParseOutcome.RECOVERED),
            failed=outcomes.count(ParseOutcome.FAILED),
        ),
        failures=failures,
        reports_per_second=round(len(items) / seconds, 1) if seconds else 0.0,
    )


def report_markdown(result: ReaderEvalResult) -> str:
    lines = [
        f"Reader `{result.reader.backend}:{result.reader.model_id}` on `{result.dataset}` "
        f"(sha256 {result.dataset_sha256[:12]}...)",
        "",
        "| label | precision | recall | F1 | support | excluded (blank gold) |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in result.labels.items():
        lines.append(
            f"| {name} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {s.support} | {s.excluded} |"
        )
    i = result.integrity
    lines += [
        f"| **macro-F1** | | | **{result.macro_f1:.3f}** | | |",
        "",
        f"Integrity: {i.total} reports, {i.clean} clean, {i.recovered} recovered, {i.failed} failed.",
    ]
    return "\n".join(lines) + "\n"


def write_run(result: ReaderEvalResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(
        json.dumps(result.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
    )
    (out / "report.md").write_text(report_markdown(result), encoding="utf-8")
