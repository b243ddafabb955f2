"""``report.md``: the published metric table first (same rows, same layout), then everything needed to
believe it: counts with exact intervals, the integrity table with every failure by id, the audit flags,
the dataset's label accounting and the run's provenance.
"""

from __future__ import annotations

from typing import Any

MAX_FAILURES_SHOWN = 100
_FAILED_MEANS = "a failed stage is scored as predicting nothing: a failed grounding gives no findings"
_FAILED_MEANS_AUDIT = (
    f"{_FAILED_MEANS} and no flags, a failed reading is judged as no draft "
    "(image-only: URGENT flags only, no MISSING or UNSUPPORTED)"
)

HEADLINE_ROWS = (
    ("Presence macro-F1", "presence_macro_f1"),
    ("Box [email protected] rate", "box_iou30_rate"),
    ("Box [email protected] precision", "box_iou30_precision"),
    ("Box [email protected] rate", "box_iou50_rate"),
    ("Mean IoU on matched boxes", "mean_iou_matched"),
    ("Urgent recall, nodule / mass", "urgent_recall_nodule_mass"),
    ("Urgent recall, pneumothorax", "urgent_recall_pneumothorax"),
)
COUNT_ROWS = frozenset({"urgent_recall_nodule_mass", "urgent_recall_pneumothorax"})


def fmt_value(value: Any, *, counts: bool = False) -> str:
    """A headline cell: 0.735; a count-based rate as 4/9 (or 0.633 with its k/n behind it); n/a if empty."""
    if value is None:
        return "n/a"
    if isinstance(value, dict):
        if value.get("n", 0) == 0:
            return "n/a (N=0)"
        if counts:
            return f"{value['k']}/{value['n']}"
        return f"{value['value']:.3f}"
    return f"{value:.3f}"


def fmt_bound(x: float) -> str:
    """Three decimals, with more where three would round a bound onto 0 or 1 that is not exactly there."""
    text = f"{x:.3f}"
    digits = 3
    while text in ("0.000", "1.000") and x not in (0.0, 1.0) and digits < 8:
        digits += 1
        text = f"{x:.{digits}f}"
    return text


def fmt_interval(lo: float, hi: float) -> str:
    return f"[{fmt_bound(lo)}, {fmt_bound(hi)}]"


def fmt_ci(value: Any) -> str:
    if not isinstance(value, dict) or not value.get("n"):
        return ""
    return f"{value['k']}/{value['n']} = {value['value']:.3f} {fmt_interval(*value['ci95'])}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def headline_table(metrics: dict[str, Any], column: str) -> list[str]:
    head = metrics["headline"]
    lines = [f"| Metric | {column} |", "|---|---|"]
    for name, key in HEADLINE_ROWS:
        lines.append(f"| {name} | {fmt_value(head[key], counts=key in COUNT_ROWS)} |")
    return lines


def _intervals(metrics: dict[str, Any]) -> list[str]:
    head = metrics["headline"]
    lines = ["Counts behind the rates, with exact (Clopper-Pearson) 95% intervals:", ""]
    for name, key in HEADLINE_ROWS:
        if ci := fmt_ci(head[key]):
            lines.append(f"- {name}: {ci}")
    return lines


def _integrity(metrics: dict[str, Any]) -> list[str]:
    i = metrics["integrity"]
    lines = [
        "## Integrity",
        "",
        f"Dataset items: {metrics['dataset_items']}; items scored: {metrics['items_scored']}.",
        "",
        "| stage | total | clean | recovered | failed |",
        "|---|---|---|---|---|",
        f"| **item** | {i['total']} | {i['clean']} | {i['recovered']} | {i['failed']} |",
    ]
    for stage, s in metrics["integrity_by_stage"].items():
        lines.append(f"| {stage} | {s['total']} | {s['clean']} | {s['recovered']} | {s['failed']} |")
    failures = metrics["failures"]
    lines.append("")
    if not failures:
        lines.append("No item failed.")
        return lines
    means = _FAILED_MEANS_AUDIT if metrics["command"] == "audit" else _FAILED_MEANS
    lines += [f"Failures ({len(failures)}; {means}):", ""]
    lines += ["| id | stage | reason |", "|---|---|---|"]
    for f in failures[:MAX_FAILURES_SHOWN]:
        reason = str(f["reason"]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {f['id']} | {f['stage']} | {reason} |")
    if len(failures) > MAX_FAILURES_SHOWN:
        lines.append(f"| ... | | {len(failures) - MAX_FAILURES_SHOWN} more in metrics.json |")
    return lines


def _flags(metrics: dict[str, Any]) -> list[str]:
    lines = [
        "## Audit flags on synthetic drafts",
        "",
        "| flag | precision | recall | n (expected) | TP | FP | FN | recall 95% CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, s in metrics["flags"].items():
        lines.append(
            f"| {kind} | {_pct(s['precision'])} | {_pct(s['recall'])} | {s['n']} | {s['tp']} | {s['fp']} | "
            f"{s['fn']} | {fmt_interval(*s['recall_ci95'])} |"
        )
    lines += [
        "",
        "| edit | items | flags exactly as expected | rate | reader's status for the edited finding |",
        "|---|---|---|---|---|",
    ]
    for kind, e in metrics["edits"].items():
        read = ", ".join(f"{k} {v}" for k, v in e.get("target_read_as", {}).items()) or "n/a"
        lines.append(f"| {kind} | {e['n']} | {e['exact']} | {e['exact_rate']:.3f} | {read} |")
    mism = metrics["mismatches"]
    lines += [
        "",
        f"Items whose flags differ from the expected ones: {mism['count']} (up to 50 in metrics.json).",
    ]
    return lines


def _presence(metrics: dict[str, Any]) -> list[str]:
    p = metrics["presence"]
    lines = [
        "## Presence per label (image stage against gold)",
        "",
        "| label | precision | recall | F1 | support | excluded (gold unknown) |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in p["labels"].items():
        scores = " | ".join(f"{s[k]:.3f}" for k in ("precision", "recall", "f1"))
        lines.append(f"| {name} | {scores} | {s['support']} | {s['excluded']} |")
    lines += ["", f"Macro-F1 is the mean over labels with gold positives: {', '.join(p['macro_labels'])}."]
    return lines


def _datasets(metrics: dict[str, Any]) -> list[str]:
    lines = ["## Data", ""]
    for ds in metrics["datasets"]:
        labels = ds["labels"]
        lines.append(
            f"- `{ds['kind']}:{ds['path']}` sha256 `{ds['sha256']}`: {ds['rows']} rows, {ds['items']} items"
        )
        for kind in ("mapped", "dropped", "unknown"):
            counts = ", ".join(f"{k} {v}" for k, v in labels[kind].items()) or "none"
            lines.append(f"  - labels {kind}: {counts}")
        lines.append(
            f"  - boxes: {ds['boxes_in']} in, {ds['boxes_out']} usable, {ds['boxes_clipped']} clipped to the "
            f"image, {ds['boxes_unusable']} unusable"
        )
        lines.extend(f"  - {note}" for note in ds["notes"])
    return lines


def _provenance(metrics: dict[str, Any]) -> list[str]:
    run = metrics["run"]
    cfg = run["config"]
    code = cfg["code"]
    g = cfg["grounder"]
    lines = [
        "## Provenance",
        "",
        f"- command: `{run['command_line']}`",
        f"- grounder: {g.get('backend')} `{g.get('model_id')}` revision {g.get('revision') or 'n/a'}, "
        f"prompt {g.get('prompt_version') or 'n/a'}",
    ]
    if "replay_sha256" in g:
        lines.append(f"- replay file: `{g['replay_file']}` sha256 `{g['replay_sha256']}`")
    if "reader" in cfg:
        r = cfg["reader"]
        lines.append(
            f"- reader: {r.get('backend')} `{r.get('model_id')}` revision {r.get('revision') or 'n/a'}, "
            f"prompt {r.get('prompt_version') or 'n/a'}"
        )
    if cfg.get("settings"):
        shown = ", ".join(f"{k}={v}" for k, v in sorted(cfg["settings"].items()))
        lines.append(f"- generation settings: {shown}")
    if "seed" in cfg:
        lines.append(f"- seed {cfg['seed']}, synthetic drafts {cfg['synthetic_version']}")
    lines.append(
        f"- code: cxr-draft-auditor {code['auditor']}, git {code['git_commit']}"
        + (" (uncommitted changes)" if metrics["run"].get("git_dirty") else "")
    )
    lines.append(f"- config sha256 `{run['config_sha256']}`")
    return lines


_ORACLE_NOTE = [
    "The image stage here is the dataset's own gold (`--grounder oracle`): the table above is perfect by",
    "construction and only checks the plumbing; the flag table below measures the reader and the judge.",
    "",
]


def report_markdown(metrics: dict[str, Any]) -> str:
    title = "Audit evaluation" if metrics["command"] == "audit" else "Grounding evaluation"
    names = ", ".join(f"`{d['path']}`" for d in metrics["datasets"])
    g = metrics["run"]["config"]["grounder"]
    column = f"{g.get('backend')}:{g.get('model_id')}"
    lines = [
        f"# {title}: {names}",
        "",
        "Research and educational QA evaluation; not a medical device, not a diagnosis.",
        "",
        *headline_table(metrics, column),
        "",
        *(_ORACLE_NOTE if g.get("backend") == "oracle" else []),
        *_intervals(metrics),
        "",
    ]
    if metrics["command"] == "audit":
        lines += [*_flags(metrics), ""]
    lines += [
        *_integrity(metrics),
        "",
        *_presence(metrics),
        "",
        *_datasets(metrics),
        "",
        *_provenance(metrics),
    ]
    return "\n".join(lines) + "\n"
