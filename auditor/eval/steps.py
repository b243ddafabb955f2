"""One dataset item through the stages, as a record: ground it (grounding runs), or write its synthetic
draft, ground, read and judge it (audit runs).

Each step returns a record whatever happens inside it: a stage that raises or returns unusable output
becomes a `Failure` on the record (stage + reason), and the item is scored as having produced nothing
there. Only KeyboardInterrupt and other BaseExceptions escape: they stop the run, which resumes later.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from auditor.compare import compare, draft_status
from auditor.eval.grounders import ItemError, ItemGrounder
from auditor.eval.items import EvalItem
from auditor.eval.records import Failure, FlagRecord, ItemRecord, PredictedFinding, combine
from auditor.eval.synthetic import make_draft
from auditor.labels import LABEL_ORDER, Label
from auditor.schema import DraftReading, Grounding, ParseOutcome

Reader = Callable[[str], DraftReading]
FALLBACK_CODE = "reader_fallback_rules"


def _why(notes: list[str], default: str) -> str:
    return "; ".join(notes) or default


def _ground(item: EvalItem, grounder: ItemGrounder) -> tuple[Grounding | None, str | None, list[Failure]]:
    if item.problem is not None:
        return None, None, [Failure(stage="dataset", reason=item.problem)]
    try:
        grounding, sha = grounder.ground_item(item)
    except ItemError as exc:
        return None, None, [Failure(stage=exc.stage, reason=exc.reason)]
    except Exception as exc:  # a grounder bug or crash is this item's failure, and the run goes on
        return None, None, [Failure(stage="grounding", reason=f"{type(exc).__name__}: {exc}")]
    if grounding.failed:
        reason = _why([n.message for n in grounding.notes], "the model output had no usable findings")
        return grounding, sha, [Failure(stage="grounding", reason=reason)]
    return grounding, sha, []


def _grounding_fields(grounding: Grounding | None, sha: str | None) -> dict[str, object]:
    if grounding is None:
        return {"grounding_outcome": ParseOutcome.FAILED, "image_sha256": sha}
    return {
        "grounding_outcome": grounding.outcome,
        "findings": [
            PredictedFinding(
                label=f.label, box=None if f.box is None else (f.box.x0, f.box.y0, f.box.x1, f.box.y1)
            )
            for f in grounding.findings
        ],
        "image_sha256": sha,
        "raw_output": grounding.raw_output,
        "notes": [n.code for n in grounding.notes],
    }


def ground_step(item: EvalItem, grounder: ItemGrounder) -> ItemRecord:
    """A grounding-evaluation record for one item."""
    t0 = time.perf_counter()
    grounding, sha, failures = _ground(item, grounder)
    fields = _grounding_fields(grounding, sha)
    outcome = grounding.outcome if grounding is not None else ParseOutcome.FAILED
    return ItemRecord.model_validate(
        {
            "id": item.id,
            "gold": _gold(item),
            "outcome": combine(outcome) if not failures else ParseOutcome.FAILED,
            "failures": failures,
            "ms": round((time.perf_counter() - t0) * 1000, 3),
            **fields,
        }
    )


def _read(text: str, read: Reader) -> tuple[DraftReading | None, list[Failure]]:
    """The reading to judge, or None when the reader failed (raised, or gave a failed outcome).

    A failed reading is judged as no reading at all (the image-only pass: URGENT flags only), so the
    item predicts no MISSING or UNSUPPORTED flag. The reader is the configured one, called directly:
    nothing here falls back to another reader, which would score that reader under this one's name.
    A reading that says the rule reader stood in (``reader_fallback_rules``) is a failure too.
    """
    try:
        reading = read(text)
    except Exception as exc:  # BackendError (out of memory, engine down, ...) or a reader bug
        code = getattr(exc, "code", None)
        name = f"{type(exc).__name__}({code})" if isinstance(code, str) else type(exc).__name__
        return None, [Failure(stage="reading", reason=f"{name}: {exc}")]
    if reading.failed:
        why = _why([n.message for n in reading.notes], "the reader's output was unusable")
        return None, [Failure(stage="reading", reason=why)]
    fallback = [n.message for n in reading.notes if n.code == FALLBACK_CODE]
    if fallback:
        return None, [Failure(stage="reading", reason=fallback[0])]
    return reading, []


def audit_step(item: EvalItem, seed: int, grounder: ItemGrounder, read: Reader) -> ItemRecord:
    """An audit-evaluation record: synthetic draft, grounding, reading, the judge's flags."""
    t0 = time.perf_counter()
    draft = make_draft(item, seed)
    grounding, sha, failures = _ground(item, grounder)
    reading, read_failures = _read(draft.text, read)
    failures += read_failures
    flags: list[FlagRecord] = []
    try:
        comparison = compare(grounding, reading)
        flags = [
            FlagRecord(kind=f.kind, label=f.label, draft_status=f.draft_status) for f in comparison.flags
        ]
    except Exception as exc:
        failures.append(Failure(stage="compare", reason=f"{type(exc).__name__}: {exc}"))
    g_out = grounding.outcome if grounding is not None else None
    r_out = ParseOutcome.FAILED if reading is None else reading.outcome
    outcome = ParseOutcome.FAILED if failures else combine(g_out, r_out)
    return ItemRecord.model_validate(
        {
            "id": item.id,
            "gold": _gold(item),
            "outcome": outcome,
            "failures": failures,
            "ms": round((time.perf_counter() - t0) * 1000, 3),
            **_grounding_fields(grounding, sha),
            "draft": draft.text,
            "edit": draft.edit,
            "target": draft.target,
            "target_status": _status_of(reading, draft.target),
            "expected": [
                FlagRecord(kind=e.kind, label=e.label, draft_status=e.draft_status) for e in draft.expected
            ],
            "flags": flags,
            "reading_outcome": r_out,
        }
    )


def _status_of(reading: DraftReading | None, label: Label | None) -> str | None:
    """The reader's status for ``label`` as the judge collapses it (`compare.draft_status`), or
    not_mentioned; None without a reading or a target."""
    if reading is None or label is None:
        return None
    return draft_status([m for m in reading.mentions if m.label is label]) or "not_mentioned"


def _gold(item: EvalItem) -> list[Label]:
    return [lb for lb in LABEL_ORDER if lb in item.present_labels()]


def predicted_labels(record: ItemRecord) -> frozenset[Label]:
    """The finding labels the grounding reported (none when it failed)."""
    if record.grounding_outcome is ParseOutcome.FAILED:
        return frozenset()
    return frozenset(f.label for f in record.findings if f.label is not Label.NO_FINDING)
