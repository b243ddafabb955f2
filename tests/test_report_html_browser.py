"""The worklist report in a real headless Chromium (Debian `chromium`, driven by tests/chromium.py): it
loads with no console errors and no network requests, every picture decodes, rows are in order, and
the filters hide and show rows.

A screenshot is saved into the test's tmp folder and its path printed (pytest -s shows it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from auditor.batch import REPORT, read_worklist, run_batch
from auditor.config import Settings
from tests.chromium import CHROMIUM, FLAGS, NEEDS_CHROMIUM, Cdp, chromium
from tests.conftest import GARBLED_PNG, NORMAL_PNG, URGENT_PNG

NIH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nih" / "images"
pytestmark = [
    NEEDS_CHROMIUM,
    pytest.mark.skipif(not NIH.is_dir(), reason=f"shared NIH images not found at {NIH}"),
]
ODD_ID = "<i>image-only</i> & co"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cdp]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as cdp:
        yield cdp


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, replay_file: Path) -> Path:
    """report.html from a real audit-batch run over NIH images (replay grounder, rule reader)."""
    folder = tmp_path_factory.mktemp("worklist")
    rows = [
        ("urgent", URGENT_PNG, "Cardiomegaly is present. No pneumothorax."),
        ("unsupported", NORMAL_PNG, "Small right pleural effusion."),
        ("garbled", GARBLED_PNG, "No effusion."),
        (ODD_ID, URGENT_PNG, ""),
        ("clean", NORMAL_PNG, "No acute cardiopulmonary abnormality."),
        ("missing", "nope.png", "No effusion."),
    ]
    lines = [
        {"id": i, "image": str(NIH / name) if name != "nope.png" else name, "draft": d} for i, name, d in rows
    ]
    worklist = folder / "day.jsonl"
    worklist.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    settings = Settings(grounder="replay", replay=replay_file, reader="rules")
    run_batch(read_worklist(worklist), folder / "out", settings)
    return folder / "out" / REPORT


ROW_IDS = "Array.from(document.querySelectorAll('#studies tbody tr')).map(r => r.cells[1].textContent)"
VISIBLE = (
    "Array.from(document.querySelectorAll('#studies tbody tr'))"
    ".filter(r => getComputedStyle(r).display !== 'none').map(r => r.cells[1].textContent)"
)


def only(tags: list[str]) -> str:
    """Tick exactly ``tags`` by clicking, as a person would (each click fires 'change')."""
    return (
        "for (const b of document.querySelectorAll('#filters input')) {"
        f" if (b.checked !== {json.dumps(tags)}.includes(b.value)) b.click(); }}"
    )


def test_report_loads_clean_renders_and_filters(browser: Cdp, report: Path) -> None:
    url = report.resolve().as_uri()
    session = browser.open(url)

    assert browser.js(session, "document.body.firstElementChild.id") == "disclaimer"
    assert "not a diagnosis" in browser.js(session, "document.getElementById('disclaimer').textContent")
    assert browser.js(session, ROW_IDS) == ["urgent", ODD_ID, "unsupported", "garbled", "clean"]
    pictures = browser.js(
        session,
        "Promise.all(Array.from(document.images).map(i => i.decode().then("
        "() => [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])))",
    )
    assert len(pictures) == 5 and all(w > 0 and h > 0 and shown > 0 for w, h, shown in pictures), pictures
    assert browser.js(session, "document.querySelectorAll('mark.k-urgent').length") == 1
    assert browser.js(session, "document.querySelectorAll('mark.k-unsupported').length") == 1
    assert browser.js(session, "document.querySelector('#failed tbody').rows[0].cells[1].textContent") == (
        "not_found"
    )

    browser.js(session, only(["UNSUPPORTED"]))
    assert browser.js(session, VISIBLE) == ["unsupported"]
    assert browser.js(session, "document.getElementById('shown').textContent") == "1"
    browser.js(session, only(["URGENT"]))
    assert browser.js(session, VISIBLE) == ["urgent", ODD_ID]
    browser.js(session, only(["NONE"]))
    assert browser.js(session, VISIBLE) == ["garbled", "clean"]
    browser.js(session, only(["PARTIAL"]))
    assert browser.js(session, VISIBLE) == [ODD_ID, "garbled"]
    browser.js(session, only([]))
    assert browser.js(session, VISIBLE) == []
    browser.js(session, only(["URGENT", "MISSING", "UNSUPPORTED", "PARTIAL", "NONE"]))
    assert browser.js(session, VISIBLE) == ["urgent", ODD_ID, "unsupported", "garbled", "clean"]

    errors, requests = browser.problems(session, url)
    assert errors == [], errors
    assert requests == [], f"the report made network requests: {requests}"


def test_the_harness_does_see_errors_and_requests(browser: Cdp, tmp_path: Path) -> None:
    """The clean result above means something: a page with a script error, a CSP violation and an
    outside image is caught on every count."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="script-src \'none\'">'
        "</head><body><img src='http://127.0.0.1:9/x.png'>"
        "<script>throw new Error('boom')</script></body></html>"
    )
    session = browser.open(bad.resolve().as_uri())
    errors, requests = browser.problems(session, bad.resolve().as_uri())
    assert any("Content Security Policy" in e or "script" in e for e in errors), errors
    assert requests == ["http://127.0.0.1:9/x.png"]


def test_screenshot(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,1600",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            report.resolve().as_uri(),
        ],
        capture_output=True,
        timeout=60,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    print(f"\nscreenshot of the worklist report: {shot}")
    with Image.open(shot) as im:
        assert im.size == (1280, 1600)
        lo, hi = im.convert("L").getextrema()
        assert isinstance(lo, int) and isinstance(hi, int) and hi - lo > 100, "the screenshot is blank"
    if os.environ.get("CXR_TEST_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["CXR_TEST_KEEP_SCREENSHOT"])
