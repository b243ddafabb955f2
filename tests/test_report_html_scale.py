"""The worklist report at scale: only the first page of rows is HTML, the rest wait as inert JSON blocks
that the page's script renders a page at a time (scrolling, "show more", filters over every study);
each study costs at most 15 KB of page. Radiograph-like pictures are generated here, so nothing needs
the shared data; the browser half needs headless Chromium (tests/chromium.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from auditor.batch import ResultLine, summarize
from auditor.batch.pictures import PICTURE_BYTES, PICTURE_SIDE, THUMB_SIDE, make_thumbnail
from auditor.compare import compare
from auditor.draft_rules import read_draft
from auditor.labels import Label
from auditor.overlay import render_findings
from auditor.report_html import PAGE_ROWS, StudyResult, render_report
from auditor.schema import AuditReport, Box, Grounding, ImageFinding, ModelInfo, ParseOutcome
from tests.chromium import NEEDS_CHROMIUM, Cdp, chromium

BUDGET = 15_000
"""Bytes of page a study may cost: its row, its tags and its embedded thumbnail."""
DRAFTS = (
    "Small right pleural effusion. No pneumothorax. Heart size is normal.",
    "No acute cardiopulmonary abnormality.",
    "Possible left lower lobe consolidation. Cardiomegaly.",
    "",
    "Right upper lobe nodule, recommend CT. No pleural effusion or pneumothorax.",
)
FINDINGS = (
    (Label.PNEUMOTHORAX, Box(x0=0.55, y0=0.1, x1=0.9, y1=0.45)),
    (Label.PLEURAL_EFFUSION, Box(x0=0.1, y0=0.6, x1=0.4, y1=0.9)),
    (Label.CARDIOMEGALY, Box(x0=0.3, y0=0.45, x1=0.75, y1=0.8)),
    (Label.NODULE_MASS, Box(x0=0.2, y0=0.2, x1=0.3, y1=0.3)),
)


def radiograph(seed: int, side: int = 1024) -> Image.Image:
    """A grey, textured, radiograph-like picture: noise that compresses like film, not like a gradient."""
    noise = Image.effect_noise((side // 4, side // 4), 40 + seed % 20).resize((side, side))
    body = Image.radial_gradient("L").resize((side, side))
    return Image.blend(noise.filter(ImageFilter.GaussianBlur(2)), body, 0.5)


def study(i: int, pictures: list[bytes]) -> StudyResult:
    grounding = Grounding(
        findings=[ImageFinding(label=label, box=box) for label, box in FINDINGS[: i % 4 + 1][i % 2 :]],
        outcome=ParseOutcome.CLEAN,
        model=ModelInfo(backend="test", model_id="test"),
    )
    draft = DRAFTS[i % len(DRAFTS)]
    reading = read_draft(draft) if draft else None
    report = AuditReport(grounding=grounding, reading=reading, comparison=compare(grounding, reading))
    full = pictures[i % len(pictures)]
    return StudyResult(
        f"study-{i:05d}", report=report, picture=make_thumbnail(full), picture_file=f"p/{i}.jpg"
    )


@pytest.fixture(scope="module")
def full_pictures() -> list[bytes]:
    """Pictures as audit-batch draws them (640 px JPEG with boxes), from four generated radiographs."""
    grounding = Grounding(
        findings=[ImageFinding(label=label, box=box) for label, box in FINDINGS],
        outcome=ParseOutcome.CLEAN,
        model=ModelInfo(backend="test", model_id="test"),
    )
    comparison = compare(grounding, read_draft(DRAFTS[0]))
    return [
        render_findings(
            radiograph(seed),
            grounding,
            comparison,
            max_side=PICTURE_SIDE,
            image_format="JPEG",
            max_bytes=PICTURE_BYTES,
            flag_lines=False,
        ).data
        for seed in range(4)
    ]


def page(results: list[StudyResult]) -> str:
    lines = [ResultLine(id=r.id, report=r.report) for r in results]
    return render_report(results, summarize(lines), generated_at="t", source="day.csv")


def blocks(text: str) -> list[list[str]]:
    return [
        json.loads(b)
        for b in re.findall(r'<script type="application/json" class="rows">(.*?)</script>', text)
    ]


def test_rows_after_the_first_page_wait_as_json_in_order(full_pictures: list[bytes]) -> None:
    results = [study(i, full_pictures) for i in range(PAGE_ROWS * 2 + 7)]
    text = page(results)
    tbody = text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert tbody.count("<tr ") == PAGE_ROWS
    later = [row for block in blocks(text) for row in block]
    assert [len(b) for b in blocks(text)] == [PAGE_ROWS, 7]
    ranks = [int(m) for m in re.findall(r'<td class="rank">(\d+)</td>', tbody + "".join(later))]
    assert ranks == list(range(1, len(results) + 1)), "every row once, URGENT-first order kept"
    tags = json.loads(re.search(r'<script type="application/json" id="row-tags">(.*?)</script>', text)[1])  # type: ignore[index]
    assert len(tags) == len(results) and all(isinstance(t, str) and t for t in tags)
    for raw in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', text, re.S):
        assert "<" not in raw, "a data block can never close itself or open a comment"
    assert "<noscript>" in text and f"first {PAGE_ROWS} of {len(results)}" in text


def test_a_short_worklist_has_no_data_blocks(full_pictures: list[bytes]) -> None:
    text = page([study(i, full_pictures) for i in range(3)])
    assert blocks(text) == [] and "<noscript>" not in text


def test_each_study_costs_at_most_15_kb_of_page(full_pictures: list[bytes]) -> None:
    empty = len(page([]).encode())
    n = 200
    results = [study(i, full_pictures) for i in range(n)]
    size = len(page(results).encode())
    per_study = (size - empty) / n
    assert per_study <= BUDGET, f"{per_study:.0f} bytes a study"
    assert all(
        r.picture is not None and max(r.picture.width, r.picture.height) <= THUMB_SIDE for r in results
    )


# ---- in a browser ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cdp]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as cdp:
        yield cdp


ROW_IDS = (
    "Array.from(document.querySelectorAll('#studies tbody tr')).map(r => r.cells[1].firstChild.textContent)"
)


@NEEDS_CHROMIUM
def test_the_page_renders_by_pages_and_filters_over_every_study(
    browser: Cdp, tmp_path: Path, full_pictures: list[bytes]
) -> None:
    results = [study(i, full_pictures) for i in range(PAGE_ROWS * 2 + 30)]
    report = tmp_path / "report.html"
    report.write_text(page(results), encoding="utf-8")
    url = report.resolve().as_uri()
    session = browser.open(url)

    assert browser.js(session, "performance.getEntriesByName('report-ready').length") == 1
    first = browser.js(session, ROW_IDS)
    assert len(first) == PAGE_ROWS
    browser.js(session, "document.getElementById('more').click()")
    assert browser.js(session, ROW_IDS)[:PAGE_ROWS] == first
    browser.js(session, "document.getElementById('more').scrollIntoView()")  # the observer loads the rest
    browser.js(session, "new Promise(r => setTimeout(r, 300))")
    every = browser.js(session, ROW_IDS)
    assert len(every) == len(results) and len(set(every)) == len(results)
    assert browser.js(session, "document.getElementById('more').hidden") is True
    decoded = browser.js(
        session, "Promise.all(Array.from(document.images).map(i => i.decode().then(() => 1)))"
    )
    assert len(decoded) == len(results)

    urgent = sum(
        1 for r in results if r.report and any(f.kind == "URGENT" for f in r.report.comparison.flags)
    )
    browser.js(session, "window.scrollTo(0, 0)")  # else the shorter table brings "show more" into view
    browser.js(
        session,
        "for (const b of document.querySelectorAll('#filters input')) {"
        " if (b.checked !== (b.value === 'URGENT')) b.click(); }",
    )
    assert browser.js(session, "document.getElementById('shown').textContent") == str(urgent)
    assert len(browser.js(session, ROW_IDS)) == min(PAGE_ROWS, urgent) and urgent > PAGE_ROWS
    assert browser.js(session, "document.querySelector('td.picture a').getAttribute('href')").startswith("p/")

    errors, requests = browser.problems(session, url)
    assert errors == [], errors
    assert requests == [], f"the report made network requests: {requests}"
