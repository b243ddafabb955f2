"""The rule reader beside medspaCy's ConText on the same reports, scored the same way, in one run.

ConText set-up (medspaCy 1.3): its default pipeline (PyRuSH sentences, target matcher, ConText with the
default English rules, which come from NegEx and pyConTextNLP), and as targets the same six-label
mapping the rule reader uses: every phrase of the shared vocabulary (`auditor.labels.FREE_TEXT_TERMS`;
the terms it drops on purpose become OTHER targets, so that "atelectasis" is a finding outside the six),
plus one token pattern for the enlarged heart ("the heart is mildly enlarged"). A target that ConText
marks negated is absent, uncertain is uncertain, hypothetical or historical is no mention; any other is
present. ``no_finding`` is predicted present when a report has no affirmed target at all. Both readers
are scored with `auditor.eval.metrics` both ways (uncertain counted as not present, and as present),
and timed over the whole set on one core (reports/s, best of ``--repeat``).

medspaCy is not a dependency of the project, and it cannot share the project's virtual environment:
medspaCy 1.3 pins spaCy < 3.8, whose thinc needs numpy < 2 (installing it into `.venv` downgrades numpy
there). Give it its own:

    python3.11 -m venv /tmp/venv-context && /tmp/venv-context/bin/pip install -e . medspacy
    /tmp/venv-context/bin/python bench/reader_baselines.py [--csv ../shared/data/openi/openi_dev.csv]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from auditor.draft_rules import read_draft
from auditor.eval.metrics import PRF, macro_f1, presence_prf
from auditor.eval.openi import ReportItem, read_reports
from auditor.labels import FREE_TEXT_TERMS, LABEL_ORDER, Label

DEFAULT_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "openi" / "openi_dev.csv"
OTHER = "OTHER"

# One reading of a report: label value -> its most assertive status ("present" > "uncertain" > "absent").
Statuses = dict[str, str]
_RANK = {"present": 2, "uncertain": 1, "absent": 0}


def _keep(out: Statuses, label: str, status: str) -> None:
    if label not in out or _RANK[status] > _RANK[out[label]]:
        out[label] = status


def rules_reader() -> Callable[[str], Statuses]:
    def read(text: str) -> Statuses:
        out: Statuses = {}
        for m in read_draft(text).mentions:
            _keep(out, m.label.value, m.status)
        return out

    return read


def context_reader() -> Callable[[str], Statuses]:
    try:
        import medspacy
        from medspacy.ner import TargetRule
    except ImportError:
        raise SystemExit(
            "medspacy is not installed here; see the install lines at the top of this file"
        ) from None

    nlp = medspacy.load(enable=["medspacy_pyrush", "medspacy_target_matcher", "medspacy_context"])
    rules = [
        TargetRule(term, label.value if label is not None else OTHER)
        for term, label in FREE_TEXT_TERMS.items()
        if label is not Label.NO_FINDING
    ]
    heart = [
        {"LOWER": {"IN": ["heart", "cardiac", "cardiomediastinal"]}},
        {"OP": "?"},
        {"OP": "?"},
        {"OP": "?"},
    ]
    big = [{"LOWER": {"IN": ["enlarged", "enlargement", "large", "prominent", "borderline"]}}]
    rules.append(TargetRule("heart enlarged", Label.CARDIOMEGALY.value, pattern=heart + big))
    nlp.get_pipe("medspacy_target_matcher").add(rules)

    def read(text: str) -> Statuses:
        out: Statuses = {}
        affirmed = False
        for ent in nlp(text).ents:
            if ent._.is_hypothetical or ent._.is_historical or ent._.is_family:
                continue
            status = "absent" if ent._.is_negated else "uncertain" if ent._.is_uncertain else "present"
            affirmed = affirmed or status != "absent"
            if ent.label_ != OTHER:
                _keep(out, ent.label_, status)
        if not affirmed:
            out[Label.NO_FINDING.value] = "present"
        return out

    return read


def score(items: Sequence[ReportItem], readings: Sequence[Statuses], present: set[str]) -> dict[str, PRF]:
    return {
        lb.value: presence_prf(
            [i.gold.get(lb) for i in items], [r.get(lb.value) in present for r in readings]
        )
        for lb in LABEL_ORDER
    }


def run(
    name: str, read: Callable[[str], Statuses], items: Sequence[ReportItem], repeat: int
) -> dict[str, Any]:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        readings = [read(i.text) for i in items]
        best = min(best, time.perf_counter() - t0)
    strict, lenient = score(items, readings, {"present"}), score(items, readings, {"present", "uncertain"})
    return {
        "name": name,
        "strict": strict,
        "lenient": lenient,
        "macro_strict": macro_f1(list(strict.values())),
        "macro_lenient": macro_f1(list(lenient.values())),
        "rate": len(items) / best,
    }


def table(results: list[dict[str, Any]]) -> str:
    head = "| reader | macro-F1, uncertain = not present | macro-F1, uncertain = present | reports/s |"
    lines = [head, "|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['macro_strict']:.3f} | {r['macro_lenient']:.3f} | {r['rate']:,.0f} |"
        )
    lines += [
        "",
        "| label: F1 (TP/FP/FN), uncertain = not present / = present | "
        + " | ".join(r["name"] for r in results)
        + " |",
    ]
    lines.append("|---|" + "---|" * len(results))
    for lb in LABEL_ORDER:
        cells = []
        for r in results:
            s, u = r["strict"][lb.value], r["lenient"][lb.value]
            cells.append(f"{s.f1:.3f} ({s.tp}/{s.fp}/{s.fn}) / {u.f1:.3f} ({u.tp}/{u.fp}/{u.fn})")
        lines.append(f"| {lb.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    items = read_reports(args.csv)
    results = [
        run("rule reader (auditor.draft_rules)", rules_reader(), items, args.repeat),
        run("medspaCy ConText, default rules", context_reader(), items, args.repeat),
    ]
    print(f"{len(items)} reports from {args.csv}, one core\n")
    print(table(results))


if __name__ == "__main__":
    main()
