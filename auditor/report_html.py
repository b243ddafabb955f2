"""The worklist report: one self-contained static HTML page that a person opens in a browser.

Pure: results and their summary in, a string out, no I/O. Self-contained because it is mailed around
and opened from disk: inline CSS and JS, thumbnails as ``data:`` URIs, and a Content-Security-Policy
that forbids every fetch, so the page cannot phone home even if a value in it were crafted to try.
Every piece of text from a study (ids, drafts, messages) is HTML-escaped. No DICOM header value ever
reaches this module: the pipeline never carries one. Deterministic apart from the ``generated_at``
line the caller passes.

It stays usable at 5,000 studies: each study embeds only a thumbnail (a few KB; the full-size picture
is a file beside the page, opened by clicking the thumbnail), the first `PAGE_ROWS` rows are in the
table as HTML, and the rest wait as inert JSON blocks of escaped row HTML that the script parses a
page at a time, as the reader scrolls or filters. Without JavaScript the first page still shows.
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from auditor.compare import side_words
from auditor.errors import Failure as StudyFailure
from auditor.labels import HUMAN_NAMES
from auditor.schema import AuditReport, DraftReading, DraftStatus, Flag, FlagKind, Note

if TYPE_CHECKING:
    from auditor.overlay import RenderedImage

DISCLAIMER: Final = (
    "Research and educational QA only. Not a medical device, not a diagnosis, not for clinical use. "
    "Outputs are frequently wrong: every flag is a request for a qualified reader to look again, and the "
    "decision always stays with the radiologist."
)
PAGE_ROWS: Final = 50
"""Rows in the table when the page opens, and rows added per page as the reader scrolls."""
KINDS: Final[tuple[FlagKind, ...]] = ("URGENT", "LATERALITY", "MISSING", "UNSUPPORTED")
"""Most severe first: the order of badges, filters, and which colour wins where highlights overlap."""
_KIND_RANK: Final[dict[str, int]] = {k: i for i, k in enumerate(KINDS)}
_DRAFT_WORDS: Final[dict[DraftStatus, str]] = {
    "denied": "denied",
    "denied_by_normal": "called normal",
    "not_mentioned": "not mentioned",
    "present": "reported",
    "uncertain": "hedged",
    "absent": "denied",
}
"""What the draft said, in the words the picture's legend uses, so the row and the picture agree."""
FILTERS: Final[tuple[tuple[str, str], ...]] = (
    ("URGENT", "URGENT"),
    ("LATERALITY", "LATERALITY (side)"),
    ("MISSING", "MISSING"),
    ("UNSUPPORTED", "UNSUPPORTED"),
    ("PARTIAL", "partial check (image-only, or image stage failed)"),
    ("NONE", "no flags"),
)
"""Row tags a reader can show or hide: (tag, label). A row shows when any of its tags is ticked."""

_STYLE: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;
background:#fafafa}
header,main,footer{padding:0 18px}
.disclaimer{margin:0;padding:10px 18px;background:#fff3cd;border-bottom:2px solid #e0b400;font-weight:600}
h1{font-size:20px;margin:14px 0 4px}
h2{font-size:17px;margin:22px 0 8px}
.meta{color:#555;margin:2px 0}
.totals span{display:inline-block;margin-right:14px}
#filters{border:1px solid #ccc;border-radius:6px;padding:6px 10px;margin:10px 0;background:#fff}
#filters label{margin-right:14px;white-space:nowrap;cursor:pointer}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #ddd;padding:6px 8px;vertical-align:top;text-align:left}
th{background:#eee;position:sticky;top:0;z-index:1}
tr[hidden]{display:none}
td.rank{color:#777;width:2.5em}
td.id{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:nowrap}
td.id .context{font-family:system-ui,sans-serif;color:#555;font-size:12px;margin-top:4px}
td.draft{max-width:30em;white-space:pre-wrap}
td.picture img{display:block;max-width:none;height:auto;background:#111}
td.picture a{cursor:zoom-in}
#more{margin:10px 0;padding:6px 14px;font:inherit;cursor:pointer}
.cautions{list-style:none;margin:0 0 6px;padding:0}
.cautions li{margin:0 0 4px;padding:3px 6px;border-left:5px solid #3b6fd6;background:#e3ecfb;font-size:13px}
ul.flags{list-style:none;margin:0;padding:0}
ul.flags li{margin:0 0 6px;padding:3px 6px;border-left:5px solid;border-radius:3px}
.badge{display:inline-block;font-weight:700;font-size:12px;padding:0 5px;border-radius:3px;margin-right:4px}
.rule{color:#666;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.msg{color:#333;font-size:13px}
.status{font-size:13px;margin-bottom:6px}
.status.degraded{color:#9b0000;font-weight:700}
.clean{color:#2b6e2b}
li.k-urgent,mark.k-urgent{border-color:#e61e1e;background:#fde2e2}
li.k-laterality,mark.k-laterality{border-color:#e6c800;background:#fff8c4}
li.k-missing,mark.k-missing{border-color:#ff8c00;background:#ffe9cc}
li.k-unsupported,mark.k-unsupported{border-color:#a060f0;background:#eee0ff}
.badge.k-urgent{background:#e61e1e;color:#fff}
.badge.k-laterality{background:#ffe600;color:#000}
.badge.k-missing{background:#ff8c00;color:#000}
.badge.k-unsupported{background:#be78ff;color:#000}
mark{padding:0 1px;border-bottom:2px solid;color:inherit}
details{font-size:12px;color:#444}
details code{color:#000}
.empty{color:#777;font-style:italic}
#failed td.code{font-family:ui-monospace,Menlo,Consolas,monospace}
footer{color:#666;font-size:12px;margin:20px 0}
"""

_SCRIPT: Final = """
(function () {
  "use strict";
  var tbody = document.querySelector("#studies tbody");
  if (tbody) {
    var PAGE = Number(tbody.parentNode.getAttribute("data-page"));
    var tags = JSON.parse(document.getElementById("row-tags").textContent);
    var blocks = document.querySelectorAll("script.rows");
    var nodes = Array.prototype.slice.call(tbody.rows);
    var parsed = [];
    var maker = document.createElement("template");
    var boxes = Array.prototype.slice.call(document.querySelectorAll("#filters input[type=checkbox]"));
    var shown = document.getElementById("shown");
    var more = document.getElementById("more");
    var matches = [];
    var done = 0;
    var node = function (i) {
      if (!nodes[i]) {
        var b = Math.floor((i - PAGE) / PAGE);
        if (!parsed[b]) { parsed[b] = JSON.parse(blocks[b].textContent); }
        maker.innerHTML = parsed[b][(i - PAGE) % PAGE];
        nodes[i] = maker.content.firstElementChild;
      }
      return nodes[i];
    };
    var next = function () {
      var end = Math.min(done + PAGE, matches.length);
      var page = document.createDocumentFragment();
      for (var k = done; k < end; k += 1) { page.appendChild(node(matches[k])); }
      tbody.appendChild(page);
      done = end;
      more.hidden = done >= matches.length;
      more.textContent = "Show " + Math.min(PAGE, matches.length - done) + " more of "
        + (matches.length - done) + " not yet shown";
    };
    var apply = function () {
      var on = {};
      boxes.forEach(function (box) { on[box.value] = box.checked; });
      matches = [];
      tags.forEach(function (t, i) {
        if (t.split(" ").some(function (tag) { return on[tag]; })) { matches.push(i); }
      });
      tbody.textContent = "";
      done = 0;
      next();
      if (shown) { shown.textContent = String(matches.length); }
    };
    boxes.forEach(function (box) { box.addEventListener("change", apply); });
    more.addEventListener("click", next);
    if ("IntersectionObserver" in window) {
      new IntersectionObserver(function (seen) {
        if (seen[0].isIntersecting && !more.hidden) { next(); }
      }, { rootMargin: "800px" }).observe(more);
    }
    apply();
  }
  performance.mark("report-ready");
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


CSP: Final = (
    "default-src 'none'; img-src data:; "
    f"style-src {_csp_hash(_STYLE)}; script-src {_csp_hash(_SCRIPT)}; "
    "base-uri 'none'; form-action 'none'"
)
"""Only our own inline style and script run, only data: images load: nothing can reach a network."""


@dataclass(frozen=True)
class StudyResult:
    """One worklist study as the page shows it: an audit (with its picture, if drawn) or a failure.
    ``picture`` is embedded in the page (a thumbnail); ``picture_file``, a path relative to the page,
    is the full-size picture it opens on click."""

    id: str
    report: AuditReport | None = None
    error: StudyFailure | None = None
    picture: RenderedImage | None = None
    picture_file: str | None = None


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _css_kind(kind: str) -> str:
    return "k-" + kind.lower()


# ---- ordering and tags -----------------------------------------------------------------------------


def _kinds(report: AuditReport) -> set[FlagKind]:
    return {f.kind for f in report.comparison.flags}


def is_partial(report: AuditReport) -> bool:
    """Less than a full comparison was made: the row must not read as a clean result."""
    return report.comparison.mode != "full"


def row_tags(report: AuditReport) -> list[str]:
    """The filter tags of one row (see FILTERS), in FILTERS order."""
    kinds = _kinds(report)
    tags: list[str] = [k for k in KINDS if k in kinds]
    if is_partial(report):
        tags.append("PARTIAL")
    if not kinds:
        tags.append("NONE")
    return tags


def sort_key(index: int, report: AuditReport) -> tuple[int, int, int, int]:
    """URGENT first, then more flags, then partial checks before clean ones, then worklist order."""
    flags = report.comparison.flags
    urgent = any(f.kind == "URGENT" for f in flags)
    return (0 if urgent else 1, -len(flags), 0 if is_partial(report) else 1, index)


# ---- the draft with its flagged spans ----------------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    kind: FlagKind
    label: str


def _flag_spans(draft: str, flags: Iterable[Flag]) -> list[_Span]:
    """Every draft span that produced a flag; a span that does not match the draft is skipped
    (the contracts guarantee it matches; this keeps a hand-edited result from breaking the page)."""
    spans = []
    for flag in flags:
        for m in flag.draft_evidence:
            if 0 <= m.start < m.end <= len(draft) and draft[m.start : m.end] == m.span:
                spans.append(_Span(m.start, m.end, flag.kind, HUMAN_NAMES[flag.label]))
    return spans


def highlight_draft(draft: str, flags: Sequence[Flag]) -> str:
    """The draft as HTML: escaped text, with each span that produced a flag wrapped in
    ``<mark class="k-<kind>">`` (the most severe kind where spans of several flags overlap)."""
    spans = _flag_spans(draft, flags)
    cuts = sorted({0, len(draft), *(s.start for s in spans), *(s.end for s in spans)})
    parts = []
    for a, b in itertools.pairwise(cuts):
        covering = [s for s in spans if s.start <= a and b <= s.end]
        text = _e(draft[a:b])
        if not covering:
            parts.append(text)
            continue
        kinds = [k for k in KINDS if any(s.kind == k for s in covering)]
        ordered = sorted({(_KIND_RANK[s.kind], s.kind, s.label) for s in covering})
        title = "; ".join(f"{kind} {label}" for _, kind, label in ordered)
        parts.append(
            f'<mark class="{_css_kind(kinds[0])}" data-kinds="{" ".join(kinds)}" title="{_e(title)}">'
            f"{text}</mark>"
        )
    return "".join(parts)


# ---- cells -------------------------------------------------------------------------------------------


def _status_line(report: AuditReport) -> str:
    """Say plainly when less than a full comparison was made, so an empty flag list is not read as
    agreement (the same words as the picture's legend)."""
    comparison = report.comparison
    if comparison.mode == "no_image":
        return (
            '<div class="status degraded">Image stage failed: no usable findings. Not a clean result: '
            "review this study without the tool.</div>"
        )
    if comparison.mode == "image_only":
        codes = {n.code for n in [*comparison.notes, *report.notes]}
        why = (
            "no draft given"
            if codes & {"no_draft_image_only", "draft_empty_image_only"}
            else "draft not read"
        )
        return f'<div class="status degraded">Image-only pass ({why}): only URGENT was checked.</div>'
    if not comparison.flags:
        return '<div class="status clean">Full comparison: no flags raised.</div>'
    return '<div class="status">Full comparison.</div>'


def _flag_item(flag: Flag) -> str:
    name = HUMAN_NAMES[flag.label]
    draft = "" if flag.kind == "UNSUPPORTED" else f" (draft: {_DRAFT_WORDS[flag.draft_status]})"
    if flag.kind == "LATERALITY":
        draft = f" ({side_words(flag)})"
    return (
        f'<li class="{_css_kind(flag.kind)}"><span class="badge {_css_kind(flag.kind)}">{flag.kind}</span>'
        f'{_e(name)}{draft} <span class="rule">{_e(flag.rule_id)}</span>'
        f'<div class="msg">{_e(flag.message)}</div></li>'
    )


def _is_caution(note: Note) -> bool:
    """Context cautions (a child, an AP film) change how to read the flags: shown beside them."""
    return note.stage == "context"


def _flags_cell(report: AuditReport) -> str:
    items = "".join(_flag_item(f) for f in report.comparison.flags)
    cautions = "".join(f"<li>{_e(n.message)}</li>" for n in report.comparison.notes if _is_caution(n))
    return (
        _status_line(report)
        + (f'<ul class="cautions">{cautions}</ul>' if cautions else "")
        + (f'<ul class="flags">{items}</ul>' if items else "")
    )


def _context_line(report: AuditReport) -> str:
    """Age and view under the study id, when the worklist gave them."""
    ctx = report.context
    if ctx is None or (ctx.age_years is None and ctx.view is None):
        return ""
    parts = ([f"age {ctx.age_years:g}"] if ctx.age_years is not None else []) + (
        [f"{ctx.view} view"] if ctx.view is not None else []
    )
    return f'<div class="context">{_e(", ".join(parts))}</div>'


def _draft_cell(reading: DraftReading | None, flags: Sequence[Flag]) -> str:
    if reading is None or not reading.draft.strip():
        return '<span class="empty">(no draft: image-only pass)</span>'
    return highlight_draft(reading.draft, flags)


def _picture_cell(study: StudyResult) -> str:
    """The embedded thumbnail; a click opens the full-size picture beside the page, when there is one."""
    pic = study.picture
    if pic is None:
        return '<span class="empty">(no picture)</span>'
    data = base64.b64encode(pic.data).decode("ascii")
    img = (
        f'<img src="data:{_e(pic.mime_type)};base64,{data}" width="{pic.width}" height="{pic.height}" '
        f'alt="Study {_e(study.id)}: image findings and flags drawn on the radiograph" decoding="async">'
    )
    if study.picture_file is None:
        return img
    return (
        f'<a href="{_e(study.picture_file)}" target="_blank" rel="noopener noreferrer" '
        f'title="open the full-size picture">{img}</a>'
    )


def _all_notes(report: AuditReport) -> list[Note]:
    notes = [*report.notes, *report.comparison.notes]
    if report.grounding is not None:
        notes += report.grounding.notes
    if report.reading is not None:
        notes += report.reading.notes
    return notes


def _notes_cell(report: AuditReport) -> str:
    notes = [n for n in _all_notes(report) if not _is_caution(n)]  # cautions sit beside the flags
    if not notes:
        return ""
    items = "".join(f"<li><code>{_e(n.code)}</code> {_e(n.message)}</li>" for n in notes)
    return f"<details><summary>notes ({len(notes)})</summary><ul>{items}</ul></details>"


def _row(rank: int, study: StudyResult, report: AuditReport) -> str:
    flags = report.comparison.flags
    return (
        f'<tr data-tags="{" ".join(row_tags(report))}" data-flags="{len(flags)}">'
        f'<td class="rank">{rank}</td><td class="id">{_e(study.id)}{_context_line(report)}</td>'
        f'<td class="flags">{_flags_cell(report)}</td>'
        f'<td class="draft">{_draft_cell(report.reading, flags)}</td>'
        f'<td class="picture">{_picture_cell(study)}</td>'
        f'<td class="notes">{_notes_cell(report)}</td></tr>'
    )


# ---- sections ----------------------------------------------------------------------------------------


def _count(summary: Mapping[str, Any], key: str) -> int:
    return int(summary[key])


def _unreported(summary: Mapping[str, Any]) -> str:
    """How many of the URGENT studies have one the draft does not already report (older summaries
    lack the count: then nothing is said)."""
    if "studies_with_urgent_not_in_draft" not in summary:
        return ""
    return f" ({_count(summary, 'studies_with_urgent_not_in_draft')} not in the draft)"


def _header(summary: Mapping[str, Any], *, title: str, source: str | None, generated_at: str) -> str:
    counts: Mapping[str, Any] = summary["flags"]
    flags = ", ".join(f"{int(counts.get(k, 0))} {k}" for k in KINDS)  # older summaries lack new kinds
    failed = _count(summary, "failed")
    not_audited = f'<a href="#failed">{failed} not audited</a>' if failed else "0 not audited"
    src = f'<p class="meta">Worklist: <code>{_e(source)}</code></p>' if source else ""
    return (
        f'<p class="disclaimer" id="disclaimer">{_e(DISCLAIMER)}</p><header><h1>{_e(title)}</h1>{src}'
        f'<p class="meta" id="generated">Generated {_e(generated_at)}</p>'
        f'<p class="totals"><span>{_count(summary, "studies")} studies</span>'
        f"<span>{_count(summary, 'audited')} audited</span><span>{not_audited}</span>"
        f"<span>{_count(summary, 'studies_with_urgent')} with URGENT flags{_unreported(summary)}</span>"
        f"<span>flags: {flags}</span></p></header>"
    )


def _filters(shown: int) -> str:
    boxes = "".join(
        f'<label><input type="checkbox" value="{tag}" checked> {_e(text)}</label>' for tag, text in FILTERS
    )
    return (
        f'<fieldset id="filters"><legend>Show studies with</legend>{boxes}'
        f' <span class="meta">showing <b id="shown">{shown}</b></span></fieldset>'
    )


def _json_block(data: object, attributes: str) -> str:
    """Data for the script, inert until parsed: every "<" is escaped, so no value can end the block."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return f'<script type="application/json" {attributes}>{text}</script>'


def _studies_table(results: Sequence[StudyResult]) -> str:
    """The first PAGE_ROWS rows as HTML; every row's tags, and the other rows' HTML in blocks of
    PAGE_ROWS, as JSON for the script (see the module's docstring)."""
    audited = [(i, r, r.report) for i, r in enumerate(results) if r.report is not None]
    if not audited:
        return '<h2>Audited studies</h2><p class="empty">No study was audited.</p>'
    audited.sort(key=lambda t: sort_key(t[0], t[2]))
    rows = [_row(rank, study, rep) for rank, (_, study, rep) in enumerate(audited, start=1)]
    tags = [" ".join(row_tags(rep)) for _, _, rep in audited]
    later = rows[PAGE_ROWS:]
    blocks = "".join(
        _json_block(later[start : start + PAGE_ROWS], 'class="rows"')
        for start in range(0, len(later), PAGE_ROWS)
    )
    hidden = (
        f'<noscript><p class="meta">Showing the first {PAGE_ROWS} of {len(rows)} studies: the rest and the '
        "filters need JavaScript.</p></noscript>"
        if later
        else ""
    )
    return (
        "<h2>Audited studies</h2>"
        + _filters(len(audited))
        + f'<table id="studies" data-page="{PAGE_ROWS}"><thead><tr><th>#</th><th>Study</th><th>Flags</th>'
        "<th>Draft</th><th>Picture</th><th>Notes</th></tr></thead><tbody>"
        + "".join(rows[:PAGE_ROWS])
        + '</tbody></table><button type="button" id="more" hidden>Show more</button>'
        + hidden
        + _json_block(tags, 'id="row-tags"')
        + blocks
    )


def _failed_row(ident: str, error: StudyFailure) -> str:
    return (
        f'<tr><td class="id">{_e(ident)}</td><td class="code">{_e(error.code)}</td>'
        f"<td>{_e(error.message)}</td></tr>"
    )


def _failed_table(results: Sequence[StudyResult]) -> str:
    failed = [r for r in results if r.report is None]
    if not failed:
        return ""
    rows = "".join(_failed_row(r.id, r.error or StudyFailure("unknown", "no result")) for r in failed)
    return (
        f'<section id="failed"><h2>Not audited ({len(failed)})</h2>'
        "<p>These studies produced no result: review them without the tool.</p>"
        "<table><thead><tr><th>Study</th><th>Reason</th><th>Message</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def render_report(
    results: Sequence[StudyResult],
    summary: Mapping[str, Any],
    *,
    generated_at: str,
    title: str = "CXR Draft Auditor: worklist report",
    source: str | None = None,
) -> str:
    """The whole page. ``results`` in worklist order; the table is re-sorted (URGENT first, then by
    number of flags), and failed studies are listed below it with their error. ``summary`` is the
    run's totals as ``auditor.batch.summarize`` made them (studies, audited, failed,
    studies_with_urgent, flags by kind): the header shows the same numbers as summary.json."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        + _header(summary, title=title, source=source, generated_at=generated_at)
        + "<main>"
        + _studies_table(results)
        + _failed_table(results)
        + "</main>"
        + f"<footer>{_e(DISCLAIMER)}</footer>"
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )
