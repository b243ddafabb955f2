"""``eval compare RUN_A RUN_B``: two runs side by side, with the counts and exact intervals behind every
small-N rate and, where the runs scored the same items, paired differences with an exact McNemar test.

The point is not to over-read noise: 4/9 against 3/9 has intervals [0.137, 0.788] and [0.075, 0.701]
and one discordant image, which is no evidence of a difference at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.eval.metrics import mcnemar_exact
from auditor.eval.records import ItemRecord
from auditor.eval.report import COUNT_ROWS, HEADLINE_ROWS, fmt_ci, fmt_interval, fmt_value
from auditor.eval.runstore import RunError, load_records
from auditor.eval.steps import predicted_labels
from auditor.labels import Label


@dataclass
class Run:
    path: Path
    metrics: dict[str, Any]
    records: dict[str, ItemRecord]


def load_run(path: Path) -> Run:
    """A finished run's metrics and records, read without touching the folder (a torn last line of
    ``items.jsonl`` is ignored, not repaired: repairing is the resuming writer's job)."""
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise RunError(f"{path}: no metrics.json (not a finished run folder)")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    records = load_records(path)  # read-only: comparing two runs never changes either folder
    return Run(path, metrics, records)


def _same_items(a: Run, b: Run) -> bool:
    da = a.metrics.get("run", {}).get("config", {}).get("datasets")
    db = b.metrics.get("run", {}).get("config", {}).get("datasets")
    return bool(a.records) and da == db and set(a.records) == set(b.records)


def _paired(units: dict[str, tuple[bool, bool]]) -> str:
    only_a = sum(1 for x, y in units.values() if x and not y)
    only_b = sum(1 for x, y in units.values() if y and not x)
    p = mcnemar_exact(only_a, only_b)
    return f"paired on {len(units)}: A only {only_a}, B only {only_b}, exact McNemar p = {p:.3f}"


def _urgent_units(a: Run, b: Run, label: Label) -> dict[str, tuple[bool, bool]]:
    return {
        i: (label in predicted_labels(ra), label in predicted_labels(b.records[i]))
        for i, ra in a.records.items()
        if label in ra.gold
    }


def _flag_units(a: Run, b: Run, kind: str) -> dict[str, tuple[bool, bool]]:
    units = {}
    for i, ra in a.records.items():
        rb = b.records[i]
        got_a = {(f.kind, f.label) for f in ra.flags}
        got_b = {(f.kind, f.label) for f in rb.flags}
        shared = {(e.kind, e.label) for e in ra.expected} & {(e.kind, e.label) for e in rb.expected}
        for key in shared:
            if key[0] == kind:
                units[f"{i}:{key[1].value}"] = (key in got_a, key in got_b)
    return units


def _counts(score: dict[str, Any], what: str) -> str:
    """tp/(tp+fp) for precision, tp/n for recall."""
    tp = score["tp"]
    return f"{tp}/{tp + score['fp']}" if what == "precision" else f"{tp}/{score['n']}"


def _diff(va: Any, vb: Any) -> str:
    x = va.get("value") if isinstance(va, dict) else va
    y = vb.get("value") if isinstance(vb, dict) else vb
    return "n/a" if x is None or y is None else f"{y - x:+.3f}"


def compare_markdown(a: Run, b: Run) -> str:
    paired = _same_items(a, b)
    ha, hb = a.metrics["headline"], b.metrics["headline"]
    lines = [
        f"# Run comparison: A = `{a.path}`, B = `{b.path}`",
        "",
        "B - A is shown for every row; cells with counts carry exact (Clopper-Pearson) 95% intervals.",
        "Paired tests use the items both runs scored."
        if paired
        else "The runs did not score the same items: no paired tests.",
        "",
        "| Metric | A | B | B - A | counts and intervals |",
        "|---|---|---|---|---|",
    ]
    urgent_labels = {
        "urgent_recall_nodule_mass": Label.NODULE_MASS,
        "urgent_recall_pneumothorax": Label.PNEUMOTHORAX,
    }
    for name, key in HEADLINE_ROWS:
        va, vb = ha[key], hb[key]
        counts = key in COUNT_ROWS
        parts = [f"{side} {ci}" for side, ci in (("A", fmt_ci(va)), ("B", fmt_ci(vb))) if ci]
        if paired and key in urgent_labels:
            units = _urgent_units(a, b, urgent_labels[key])
            if units:
                parts.append(_paired(units))
        detail = "; ".join(parts)
        cells = (fmt_value(va, counts=counts), fmt_value(vb, counts=counts), _diff(va, vb), detail)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "flags" in a.metrics and "flags" in b.metrics:
        for kind in a.metrics["flags"]:
            fa, fb = a.metrics["flags"][kind], b.metrics["flags"].get(kind)
            if fb is None:
                continue
            for what in ("precision", "recall"):
                ci = what + "_ci95"
                detail = (
                    f"A {_counts(fa, what)} {fmt_interval(*fa[ci])}; "
                    f"B {_counts(fb, what)} {fmt_interval(*fb[ci])}"
                )
                units = _flag_units(a, b, kind) if paired and what == "recall" else {}
                if units:
                    detail += "; " + _paired(units)
                lines.append(
                    f"| {kind} flag {what} | {fmt_value(fa[what])} | {fmt_value(fb[what])} | "
                    f"{_diff(fa[what], fb[what])} | {detail} |"
                )
    ia, ib = a.metrics["integrity"], b.metrics["integrity"]
    lines.append(
        f"| Items failed | {ia['failed']}/{ia['total']} | {ib['failed']}/{ib['total']} | "
        f"{ib['failed'] - ia['failed']:+d} | clean A {ia['clean']}, B {ib['clean']}; "
        f"recovered A {ia['recovered']}, B {ib['recovered']} |"
    )
    return "\n".join(lines) + "\n"
