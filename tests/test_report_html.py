"""The worklist report as a pure function: escaping, highlighted spans, ordering, self-containment (a
CSP that matches the inline code, no external references) and determinism. The browser check is in
test_report_html_browser.py."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from typing import Any

import pytest
from PIL import Image

from auditor.batch import ResultLine, summarize
from auditor.compare import compare
from auditor.draft_rules import read_draft
from auditor.labels import Label
from auditor.overlay import RenderedImage, render_findings
from auditor.report_html import (
    DISCLAIMER,
    StudyFailure,
    StudyResult,
    highlight_draft,
    render_report,
    row_tags,
)
from auditor.schema import (
    AuditReport,
    Box,
    DraftMention,
    Flag,
    Grounding,
    ImageFinding,
    ModelInfo,
    ParseOutcome,
)

MODEL = ModelInfo(backend="test", model_id="test")
PTX = ImageFinding(label=Label.PNEUMOTHORAX, box=Box(x0=0.55, y0=0.1, x1=0.9, y1=0.45))
HEART = ImageFinding(label=Label.CARDIOMEGALY, box=Box(x0=0.3, y0=0.45, x1=0.75, y1=0.8))


def grounding(*findings: ImageFinding, failed: bool = False) -> Grounding:
    outcome = ParseOutcome.FAILED if failed else ParseOutcome.CLEAN
    return Grounding(findings=list(findings), outcome=outcome, model=MODEL)


def audit(g: Grounding, draft: str) -> AuditReport:
    reading = read_draft(draft) if draft.strip() else None
    return AuditReport(grounding=g, reading=reading, comparison=compare(g, reading))


def picture(g: Grounding, report: AuditReport) -> RenderedImage:
    image = Image.linear_gradient("L").resize((200, 240))
    return render_findings(image, g, report.comparison, max_side=128, image_format="JPEG", max_bytes=20_000)


@pytest.fixture(scope="module")
def results() -> list[StudyResult]:
    """In worklist order: clean, unsupported, urgent+missing, image-only urgent, failed grounding, error."""
    cases = [
        ("clean", grounding(HEART), "Cardiomegaly."),
        ("unsupported", grounding(), "Small right pleural effusion."),
        (
            '<img src=x onerror="alert(1)">',
            grounding(PTX, HEART),
            "Cardiomegaly is present. No pneumothorax.",
        ),
        ("image-only", grounding(PTX), ""),
        ("garbled", grounding(failed=True), "No acute disease <script>alert(2)</script>."),
    ]
    out = []
    for ident, g, draft in cases:
        report = audit(g, draft)
        out.append(StudyResult(ident, report=report, picture=picture(g, report)))
    out.append(StudyResult("gone & lost", error=StudyFailure("not_found", "no such file: /x/<y>.png")))
    return out


def summary_of(results: Sequence[StudyResult]) -> dict[str, Any]:
    """The totals audit-batch would pass in: ``summarize`` over the results lines."""
    lines = [ResultLine(id=r.id, report=r.report, error=r.error) for r in results]
    return summarize(lines)


def page(results: list[StudyResult], when: str = "2024-01-01T00:00:00+00:00") -> str:
    return render_report(results, summary_of(results), generated_at=when, source="day.csv")


def row_ids(html_text: str) -> list[str]:
    return re.findall(
        r'<tr data-tags="[^"]*" data-flags="\d+"><td class="rank">\d+</td><td class="id">([^<]*)<', html_text
    )


def test_rows_sorted_urgent_first_then_by_flags(results: list[StudyResult]) -> None:
    assert row_ids(page(results)) == [
        "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;",  # URGENT + MISSING
        "image-only",  # URGENT, partial
        "unsupported",  # 1 flag
        "garbled",  # no flags, image stage failed: before the clean one
        "clean",
    ]


def test_everything_from_a_study_is_escaped(results: list[StudyResult]) -> None:
    text = page(results)
    data_blocks = text.count('<script type="application/json"')
    assert text.count("<script>") == 1 and text.count("<script") == 1 + data_blocks, "only our own script"
    assert "<img src=x" not in text and "alert(2)</script>" not in text
    assert "No acute disease &lt;script&gt;alert(2)&lt;/script&gt;." in text
    assert "gone &amp; lost" in text and "no such file: /x/&lt;y&gt;.png" in text


def test_self_contained_with_a_csp_that_matches_the_inline_code(results: list[StudyResult]) -> None:
    text = page(results)
    refs = re.findall(r'\b(?:src|href|action|poster|srcset)="([^"]*)"', text)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs]
    assert "url(" not in text and "@import" not in text
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)
    assert csp is not None and "default-src 'none'" in csp.group(1)
    for tag in ("style", "script"):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.S)
        assert body is not None
        digest = base64.b64encode(hashlib.sha256(body.group(1).encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in csp.group(1)


def test_disclaimer_first_and_failures_listed(results: list[StudyResult]) -> None:
    text = page(results)
    body = text[text.index("<body>") + len("<body>") :]
    assert body.startswith('<p class="disclaimer" id="disclaimer">')
    assert "not a diagnosis" in DISCLAIMER
    failed = text[text.index('<section id="failed">') :]
    assert "Not audited (1)" in failed and "not_found" in failed and "gone &amp; lost" in failed
    assert "6 studies" in text and "5 audited" in text and "2 with URGENT flags" in text
    assert "flags: 2 URGENT, 0 LATERALITY, 1 MISSING, 1 UNSUPPORTED" in text


def test_header_shows_the_summary_it_is_given(results: list[StudyResult]) -> None:
    """The totals come from the run's summary (what summary.json says), not recounted here."""
    summary = summary_of(results) | {
        "studies": 60,
        "audited": 50,
        "failed": 10,
        "studies_with_urgent": 7,
        "flags": {"URGENT": 9, "MISSING": 8, "UNSUPPORTED": 3},
    }
    text = render_report(results, summary, generated_at="t")
    totals = text[text.index('<p class="totals">') : text.index("</header>")]
    assert "60 studies" in totals and "50 audited" in totals and "10 not audited" in totals
    # a summary written before LATERALITY existed has no count for it: shown as 0, not a crash
    assert (
        "7 with URGENT flags" in totals
        and "flags: 9 URGENT, 0 LATERALITY, 8 MISSING, 3 UNSUPPORTED" in totals
    )


def test_pictures_inline_as_data_uris(results: list[StudyResult]) -> None:
    text = page(results)
    uris = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)" width="(\d+)" height="(\d+)"', text)
    assert len(uris) == 5
    assert all(base64.b64decode(data).startswith(b"\xff\xd8\xff") for data, _, _ in uris)


def test_deterministic_apart_from_the_generated_line(results: list[StudyResult]) -> None:
    a, b = page(results, "2024-01-01T00:00:00+00:00"), page(results, "2031-12-31T23:59:59+00:00")
    assert a != b
    gen = re.compile(r'<p class="meta" id="generated">Generated [^<]*</p>')
    assert gen.sub("", a) == gen.sub("", b)
    assert page(results) == page(results)


def test_row_tags_drive_the_filters(results: list[StudyResult]) -> None:
    tags = {r.id: row_tags(r.report) for r in results if r.report is not None}
    assert tags == {
        "clean": ["NONE"],
        "unsupported": ["UNSUPPORTED"],
        '<img src=x onerror="alert(1)">': ["URGENT", "MISSING"],
        "image-only": ["URGENT", "PARTIAL"],
        "garbled": ["PARTIAL", "NONE"],
    }


def test_flagged_spans_are_marked_by_kind(results: list[StudyResult]) -> None:
    report = results[2].report
    assert report is not None and report.reading is not None
    html_text = highlight_draft(report.reading.draft, report.comparison.flags)
    assert html_text == (
        'Cardiomegaly is present. No <mark class="k-urgent" data-kinds="URGENT MISSING" '
        'title="URGENT pneumothorax; MISSING pneumothorax">pneumothorax</mark>.'
    )
    unsupported = results[1].report
    assert unsupported is not None and unsupported.reading is not None
    assert '<mark class="k-unsupported"' in highlight_draft(
        unsupported.reading.draft, unsupported.comparison.flags
    )


def test_overlapping_spans_split_and_bad_spans_are_skipped() -> None:
    draft = "a <b> & effusion"

    def mention(start: int, end: int) -> DraftMention:
        return DraftMention(
            label=Label.PLEURAL_EFFUSION, status="present", span=draft[start:end], start=start, end=end
        )

    def flag(kind: str, *mentions: DraftMention) -> Flag:
        return Flag(
            kind=kind,
            label=Label.PLEURAL_EFFUSION,
            rule_id="x",
            draft_status="present",
            message="m",
            draft_evidence=list(mentions),
        )

    wrong = DraftMention(label=Label.PLEURAL_EFFUSION, status="present", span="zz", start=0, end=2)
    out = highlight_draft(draft, [flag("UNSUPPORTED", mention(2, 7)), flag("MISSING", mention(6, 16), wrong)])
    assert out == (
        'a <mark class="k-unsupported" data-kinds="UNSUPPORTED" title="UNSUPPORTED pleural effusion">'
        "&lt;b&gt; </mark>"
        '<mark class="k-missing" data-kinds="MISSING UNSUPPORTED" '
        'title="MISSING pleural effusion; UNSUPPORTED pleural effusion">&amp;</mark>'
        '<mark class="k-missing" data-kinds="MISSING" title="MISSING pleural effusion"> effusion</mark>'
    )


def test_empty_and_all_failed() -> None:
    assert "No study was audited" in render_report([], summarize([]), generated_at="t")
    failures = [StudyResult("a", error=StudyFailure("not_found", "gone"))]
    only_failed = render_report(failures, summary_of(failures), generated_at="t")
    assert "Not audited (1)" in only_failed and 'id="studies"' not in only_failed


def test_laterality_has_its_filter_badge_count_and_mark() -> None:
    """The issue's case: an effusion boxed on the patient's left (image right), the draft says right."""
    left_effusion = ImageFinding(label=Label.PLEURAL_EFFUSION, box=Box(x0=0.6, y0=0.6, x1=0.9, y1=0.9))
    g = grounding(left_effusion, HEART)
    report = audit(g, "Small right pleural effusion. Cardiomegaly.")
    assert row_tags(report) == ["LATERALITY"]
    study = StudyResult("side", report=report, picture=picture(g, report))
    text = page([study])
    assert '<input type="checkbox" value="LATERALITY" checked>' in text
    assert "flags: 0 URGENT, 1 LATERALITY, 0 MISSING, 0 UNSUPPORTED" in text
    assert '<span class="badge k-laterality">LATERALITY</span>' in text
    assert "draft says right, boxes on the other side" in text and "LATERALITY.opposite_side" in text
    assert report.reading is not None
    assert '<mark class="k-laterality" data-kinds="LATERALITY"' in highlight_draft(
        report.reading.draft, report.comparison.flags
    )


# --- the worklist at a glance -----------------------------------------------------------------------


def test_ids_are_never_broken_and_age_and_view_show_under_them() -> None:
    from auditor.schema import StudyContext

    g = grounding(HEART)
    reading = read_draft("Cardiomegaly.")
    context = StudyContext(age_years=7, view="AP")
    report = AuditReport(
        grounding=g, reading=reading, comparison=compare(g, reading, context=context), context=context
    )
    html_text = page([StudyResult("CXR-2024-000123", report=report)])
    assert "word-break:break-all" not in html_text and "td.id{" in html_text
    assert re.search(r"td\.id\{[^}]*white-space:nowrap", html_text)
    assert '<td class="id">CXR-2024-000123<div class="context">age 7, AP view</div></td>' in html_text


def test_context_cautions_sit_beside_the_flags_not_in_the_notes() -> None:
    from auditor.schema import StudyContext

    g = grounding(HEART)
    context = StudyContext(age_years=7, view="AP")
    report = AuditReport(
        grounding=g, reading=None, comparison=compare(g, None, context=context), context=context
    )
    html_text = page([StudyResult("child", report=report)])
    flags_cell = html_text.split('<td class="flags">', 1)[1].split("</td>", 1)[0]
    notes_cell = html_text.split('<td class="notes">', 1)[1].split("</td>", 1)[0]
    assert '<ul class="cautions">' in flags_cell and "AP view" in flags_cell and "7 years" in flags_cell
    assert "pediatric_caution" not in notes_cell and "ap_view_heart_size" not in notes_cell


def test_the_thumbnail_opens_the_full_size_picture_beside_the_page() -> None:
    from auditor.batch import PICTURE_SIDE

    report = audit(grounding(PTX), "")
    study = StudyResult(
        "a", report=report, picture=picture(report.grounding, report), picture_file="pictures/0a.jpg"
    )
    html_text = page([study])
    cell = html_text.split('<td class="picture">', 1)[1].split("</td>", 1)[0]
    assert cell.startswith('<a href="pictures/0a.jpg" target="_blank" rel="noopener noreferrer"')
    assert cell.count("data:image/jpeg;base64,") == 1  # only the thumbnail is embedded
    refs = re.findall(r'\b(?:src|href)="([^"]*)"', html_text)
    assert all(r.startswith(("data:", "#")) or r == "pictures/0a.jpg" for r in refs), refs
    assert PICTURE_SIDE >= 640  # large enough to see a nodule's box once opened
