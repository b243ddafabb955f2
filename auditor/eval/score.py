"""Score a finished run from its records: integrity first, then presence, boxes, urgent recall, flags.

The totals are checked, not assumed: every dataset item has exactly one record, clean + recovered +
failed = total, and the number of scored items equals the dataset's item count. A failed stage is
scored as having predicted nothing (a failed grounding: no findings, no flags; a failed reading: judged
as no draft, so only the image-only URGENT flags); the item is not left out, because leaving it out is
exactly the silent drop that once flipped a model decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from auditor.eval.boxes import as_array
from auditor.eval.items import EvalItem
from auditor.eval.metrics import PRF, BoxScores, FlagKey, Proportion, flag_scores, macro_f1, presence_prf
from auditor.eval.records import FlagRecord, ItemRecord
from auditor.eval.steps import predicted_labels
from auditor.labels import FINDING_LABELS, LABEL_ORDER, URGENT_LABELS, Label
from auditor.recovery import tally
from auditor.schema import Box, ParseOutcome

IOU_THRESHOLDS = (0.3, 0.5)
FLAG_KINDS = ("MISSING", "UNSUPPORTED", "URGENT", "LATERALITY")
MAX_SHOWN = 50


def check_totals(items: Sequence[EvalItem], records: Sequence[ItemRecord]) -> None:
    """One record per item, same ids, same order: anything else is a bug, and it stops the scoring."""
    if [i.id for i in items] != [r.id for r in records]:
        raise ValueError(f"records ({len(records)}) do not match the dataset items ({len(items)}) one to one")


def integrity(records: Sequence[ItemRecord], *, audit: bool) -> dict[str, object]:
    total = tally(r.outcome for r in records)
    by_stage = {"grounding": tally(r.grounding_outcome for r in records).model_dump()}
    if audit:
        by_stage["reading"] = tally(r.reading_outcome or ParseOutcome.FAILED for r in records).model_dump()
    stages = Counter(f.stage for r in records for f in r.failures)
    return {
        "integrity": total.model_dump(),
        "integrity_by_stage": by_stage,
        "failures_by_stage": dict(sorted(stages.items())),
        "failures": [{"id": r.id, "stage": f.stage, "reason": f.reason} for r in records for f in r.failures],
    }


@dataclass(frozen=True)
class Presence:
    scores: dict[Label, PRF]
    macro_labels: list[Label]

    @property
    def macro_f1(self) -> float:
        return round(macro_f1([self.scores[lb] for lb in self.macro_labels]), 4)

    def as_dict(self) -> dict[str, object]:
        return {
            "labels": {lb.value: s.as_dict() for lb, s in self.scores.items()},
            "macro_f1": self.macro_f1,
            "macro_labels": [lb.value for lb in self.macro_labels],
        }


def presence(items: Sequence[EvalItem], records: Sequence[ItemRecord]) -> Presence:
    """Per-label P/R/F1 of the grounding against gold; macro-F1 over the labels with gold positives.

    ``no_finding`` is predicted when the grounding succeeded and reported none of the five labels.
    """
    golds = [i.gold() for i in items]
    predicted = [predicted_labels(r) for r in records]
    normal_pred = [
        r.grounding_outcome is not ParseOutcome.FAILED and not p
        for r, p in zip(records, predicted, strict=True)
    ]
    scores: dict[Label, PRF] = {}
    for label in LABEL_ORDER:
        gold = [g.get(label) for g in golds]
        pred = normal_pred if label is Label.NO_FINDING else [label in p for p in predicted]
        scores[label] = presence_prf(gold, pred)
    return Presence(scores, [lb for lb in LABEL_ORDER if scores[lb].support > 0])


def _pred_boxes(record: ItemRecord, label: Label) -> list[Box]:
    if record.grounding_outcome is ParseOutcome.FAILED:
        return []
    return [
        Box(x0=b[0], y0=b[1], x1=b[2], y1=b[3]) for f in record.findings if f.label is label and (b := f.box)
    ]


def boxes(items: Sequence[EvalItem], records: Sequence[ItemRecord]) -> dict[float, BoxScores]:
    """Localisation per IoU threshold, one-to-one greedy matching within each label of each image."""
    scores = {t: BoxScores(t) for t in IOU_THRESHOLDS}
    for item, record in zip(items, records, strict=True):
        for label in FINDING_LABELS:
            gold = as_array(item.boxes(label))
            pred = as_array(_pred_boxes(record, label))
            if len(gold) or len(pred):
                for s in scores.values():
                    s.add(gold, pred)
    return scores


def urgent_recall(items: Sequence[EvalItem], records: Sequence[ItemRecord]) -> dict[Label, Proportion]:
    """Per urgent label: images whose gold has it, and how many of those the grounding reported."""
    out: dict[Label, Proportion] = {}
    for label in sorted(URGENT_LABELS):
        hits = [
            label in predicted_labels(r)
            for i, r in zip(items, records, strict=True)
            if label in i.present_labels()
        ]
        out[label] = Proportion(sum(hits), len(hits))
    return out


def _keys(flags: Sequence[FlagRecord]) -> set[FlagKey]:
    return {(f.kind, f.label.value) for f in flags}


def audit_flags(records: Sequence[ItemRecord]) -> dict[str, object]:
    """Flag precision/recall per kind, exactness per edit kind, and the items that went wrong."""
    expected = [_keys(r.expected) for r in records]
    produced = [_keys(r.flags) for r in records]
    scores = flag_scores(expected, produced, FLAG_KINDS)
    edits: dict[str, Counter[str]] = {}
    wrong = []
    status_wrong = 0
    for r, e, p in zip(records, expected, produced, strict=True):
        ok = e == p
        pinned = [x for x in r.expected if x.draft_status is not None]
        for x in pinned:
            got = [f for f in r.flags if f.kind == x.kind and f.label is x.label]
            if got and got[0].draft_status != x.draft_status:
                status_wrong += 1
                ok = False
        c = edits.setdefault(r.edit or "?", Counter())
        c["n"] += 1
        c["exact"] += ok
        if r.target_status is not None:
            c[f"read:{r.target_status}"] += 1
        if not ok:
            wrong.append(
                {
                    "id": r.id,
                    "edit": r.edit,
                    "target": r.target,
                    "draft": r.draft,
                    "expected": sorted(f"{k}:{lb}" for k, lb in e),
                    "produced": sorted(f"{f.kind}:{f.label.value}:{f.draft_status}" for f in r.flags),
                    "failures": [f.reason for f in r.failures],
                }
            )
    return {
        "flags": {k: s.as_dict() for k, s in scores.items()},
        "edits": {k: _edit_summary(c) for k, c in sorted(edits.items())},
        "draft_status_mismatches": status_wrong,
        "mismatches": {"count": len(wrong), "shown": wrong[:MAX_SHOWN]},
    }


def _edit_summary(c: Counter[str]) -> dict[str, object]:
    """Items, exact flag agreement, and how the reader read the edited finding (present/uncertain/...)."""
    read = {k.removeprefix("read:"): v for k, v in sorted(c.items()) if k.startswith("read:")}
    return {
        "n": c["n"],
        "exact": c["exact"],
        "exact_rate": round(c["exact"] / c["n"], 4),
        "target_read_as": read,
    }


def score(items: Sequence[EvalItem], records: Sequence[ItemRecord], *, audit: bool) -> dict[str, object]:
    """All metrics of a run as JSON-ready data, the published table's rows under ``headline``."""
    check_totals(items, records)
    pres = presence(items, records)
    box = boxes(items, records)
    urgent = urgent_recall(items, records)
    out: dict[str, object] = {"dataset_items": len(items), "items_scored": len(records)}
    out.update(integrity(records, audit=audit))
    out["presence"] = pres.as_dict()
    out["boxes"] = {f"iou_{t}": s.as_dict() for t, s in box.items()}
    out["urgent_recall"] = {lb.value: p.as_dict() for lb, p in urgent.items()}
    if audit:
        out.update(audit_flags(records))
    mean_iou = box[0.3].mean_iou
    out["headline"] = {
        "presence_macro_f1": pres.macro_f1,
        "box_iou30_rate": box[0.3].rate.as_dict(),
        "box_iou30_precision": box[0.3].precision.as_dict(),
        "box_iou50_rate": box[0.5].rate.as_dict(),
        "mean_iou_matched": None if mean_iou is None else round(mean_iou, 4),
        "urgent_recall_nodule_mass": urgent[Label.NODULE_MASS].as_dict(),
        "urgent_recall_pneumothorax": urgent[Label.PNEUMOTHORAX].as_dict(),
    }
    return out
