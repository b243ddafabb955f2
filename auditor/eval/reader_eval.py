"""Score a draft reader on an Open-i style report CSV: per-label P/R/F1, macro-F1, integrity.

Two conventions, both always reported, with the counts behind every figure: a hedged mention
(``uncertain``) counted as not present (``labels``, ``macro_f1``: a label is predicted present when
the reading has a mention of it with status ``present``), and counted as present
(``labels_uncertain_present``, ``macro_f1_uncertain_present``). Coders of real reports tag some hedged
findings and not others, so neither convention alone says how a reader does.
Gold blanks are left out of that label's score and counted. A reading that fails is scored as
predicting nothing, and listed by id: the total always equals the number of rows.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, Field

from auditor.eval.datasets import sha256_file
from auditor.eval.metrics import PRF, macro_f1, presence_prf
from auditor.eval.openi import ReportItem, read_reports
from auditor.eval.provenance import code_version, environment
from auditor.eval.runstore import write_json, write_text_atomic
from auditor.labels import LABEL_ORDER
from auditor.recovery import tally
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
    labels: dict[str, LabelScore] = Field(description="uncertain counted as not present")
    macro_f1: float = Field(description="uncertain counted as not present")
    labels_uncertain_present: dict[str, LabelScore] = Field(description="uncertain counted as present")
    macro_f1_uncertain_present: float = Field(description="uncertain counted as present")
    integrity: Integrity
    failures: list[dict[str, str]]
    reports_per_second: float
    code: dict[str, object] = Field(
        default_factory=dict, description="package version, git commit and whether the tree was dirty"
    )
    environment: dict[str, str] = Field(default_factory=dict, description="python, numpy, platform")
    command_line: str = ""
    started: str = ""


def _read_all(texts: list[str], reader: str) -> tuple[list[DraftReading], float]:
    if reader != "rules":
        raise ValueError(f"reader {reader!r} is not available here (choose rules)")
    from auditor.draft_rules import read_draft

    t0 = time.perf_counter()
    readings = [read_draft(t) for t in texts]
    return readings, time.perf_counter() - t0


def _scores(items: list[ReportItem], readings: list[DraftReading], present: set[str]) -> dict[str, PRF]:
    """Per label: predicted present when some mention of it has a status in ``present``."""
    scores = {}
    for label in LABEL_ORDER:
        gold = [i.gold.get(label) for i in items]
        predicted = [any(m.label is label and m.status in present for m in r.mentions) for r in readings]
        scores[label.value] = presence_prf(gold, predicted)
    return scores


def evaluate_reader(path: str | Path, reader: str = "rules", command_line: str = "") -> ReaderEvalResult:
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    items = read_reports(path)
    readings, seconds = _read_all([i.text for i in items], reader)
    scores = _scores(items, readings, {"present"})
    lenient = _scores(items, readings, {"present", "uncertain"})
    failures = [
        {"id": i.id, "reason": "; ".join(n.message for n in r.notes) or "failed"}
        for i, r in zip(items, readings, strict=True)
        if r.outcome is ParseOutcome.FAILED
    ]
    return ReaderEvalResult(
        dataset=str(path),
        dataset_sha256=sha256_file(Path(path)),
        reader=readings[0].model if readings else ModelInfo(backend=reader, model_id="?"),
        labels={k: LabelScore.model_validate(v.as_dict()) for k, v in scores.items()},
        macro_f1=round(macro_f1(list(scores.values())), 4),
        labels_uncertain_present={k: LabelScore.model_validate(v.as_dict()) for k, v in lenient.items()},
        macro_f1_uncertain_present=round(macro_f1(list(lenient.values())), 4),
        integrity=tally(r.outcome for r in readings),
        failures=failures,
        reports_per_second=round(len(items) / seconds, 1) if seconds else 0.0,
        code=code_version(),
        environment=environment(),
        command_line=command_line,
        started=started,
    )


def report_markdown(result: ReaderEvalResult) -> str:
    lines = [
        f"Reader `{result.reader.backend}:{result.reader.model_id}` on `{result.dataset}` "
        f"(sha256 {result.dataset_sha256[:12]}...)",
        "",
        "Left: a hedged (`uncertain`) mention counted as not present; right: counted as present.",
        "",
        "| label | P | R | F1 | TP | FP | FN | P | R | F1 | TP | FP | FN | gold present | blank gold |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in result.labels.items():
        u = result.labels_uncertain_present[name]
        lines.append(
            f"| {name} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {s.tp} | {s.fp} | {s.fn} "
            f"| {u.precision:.3f} | {u.recall:.3f} | {u.f1:.3f} | {u.tp} | {u.fp} | {u.fn} "
            f"| {s.support} | {s.excluded} |"
        )
    lines.append(
        f"| **macro-F1** | | | **{result.macro_f1:.3f}** | | | | | | "
        f"**{result.macro_f1_uncertain_present:.3f}** | | | | | |"
    )
    i = result.integrity
    lines += [
        "",
        f"Integrity: {i.total} reports, {i.clean} clean, {i.recovered} recovered, {i.failed} failed.",
        "",
        "## Provenance",
        "",
        f"- command: `{result.command_line or 'n/a'}`",
        f"- dataset sha256 `{result.dataset_sha256}`",
        f"- code: cxr-draft-auditor {result.code.get('auditor')}, git {result.code.get('git_commit')}"
        + (" (uncommitted changes)" if result.code.get("git_dirty") else ""),
    ]
    return "\n".join(lines) + "\n"


def write_run(result: ReaderEvalResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", result.model_dump(mode="json"))
    write_text_atomic(out / "report.md", report_markdown(result))
