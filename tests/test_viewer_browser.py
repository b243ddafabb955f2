"""The audit viewer (MCP Apps) in a real headless Chromium, inside a test host that speaks the host side
of the protocol with the official package @modelcontextprotocol/ext-apps (its AppBridge), fed with real
tool results from the server (replay grounder, NIH radiographs): boxes where the grounding puts them,
every flag listed, a click lights the flag's box and phrase, the re-run of compare through the host,
themes, layers and narrow widths, and no console error, no network request, a CSP that holds.

Needs Chromium, Node.js's esbuild and the ext-apps package in the folder named by MCP_EXT_APPS_DIR (by
default .ci/.ext-apps, where .ci/run installs them); skipped with that reason otherwise. With
CXR_VIEWER_SCREENSHOT=path the screenshot the test makes is also saved there (the README's picture).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import Client
from mcp.client.extension import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from PIL import Image

from auditor.config import Settings
from auditor.overlay import COLOURS
from auditor.pipeline import Auditor
from mcp_server.app import build_server
from mcp_server.viewer import PREVIEW_TOOL, VIEWER_URI
from tests.chromium import NEEDS_CHROMIUM, TIMEOUT_S, Cdp, chromium
from tests.conftest import GARBLED_PNG, URGENT_PNG

ROOT = Path(__file__).resolve().parents[1]
EXT_APPS = Path(os.environ.get("MCP_EXT_APPS_DIR") or ROOT / ".ci" / ".ext-apps")
ESBUILD = EXT_APPS / "node_modules" / ".bin" / "esbuild"
BRIDGE = EXT_APPS / "node_modules" / "@modelcontextprotocol" / "ext-apps" / "package.json"
pytestmark = [
    NEEDS_CHROMIUM,
    pytest.mark.skipif(
        not (BRIDGE.is_file() and ESBUILD.is_file()),
        reason=f"no @modelcontextprotocol/ext-apps and esbuild under {EXT_APPS} (.ci/run installs them: "
        "npm install --prefix .ci/.ext-apps @modelcontextprotocol/ext-apps@2 esbuild)",
    ),
]
DRAFT = "Cardiomegaly is present. No pneumothorax. Small right pleural effusion."
# The scripted grounding of URGENT_PNG (tests/conftest.py), as normalised x0, y0, x1, y1.
KNOWN_BOXES = {"pneumothorax": (0.55, 0.10, 0.90, 0.45), "cardiomegaly": (0.30, 0.45, 0.75, 0.80)}
WIDTH = 960


@dataclass
class Host:
    """The server side of the test host: the real MCP server behind an Apps-capable client."""

    portal: BlockingPortal
    client: Client
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, arguments))
        result = self.portal.call(self.client.call_tool, name, arguments)
        dumped: dict[str, Any] = result.model_dump(by_alias=True, exclude_none=True, mode="json")
        return dumped

    def tool(self, name: str) -> dict[str, Any]:
        tools = self.portal.call(self.client.list_tools).tools
        found: dict[str, Any] = next(t for t in tools if t.name == name).model_dump(
            by_alias=True, exclude_none=True, mode="json"
        )
        return found

    def page(self) -> str:
        text: str = self.portal.call(self.client.read_resource, VIEWER_URI).contents[0].text
        return text


@dataclass
class Viewer:
    """One host page with the viewer in its iframe: run JS in either, and answer the app's tool calls."""

    cdp: Cdp
    page: str
    frame: str
    host: Host

    def js(self, expression: str) -> Any:
        return self.cdp.js(self.frame, expression)

    def pump(self) -> None:
        for call in self.cdp.js(self.page, "host.takeCalls()"):
            params = call["params"]
            result = self.host.call(params["name"], params.get("arguments") or {})
            self.cdp.js(self.page, f"host.answer({call['id']}, {json.dumps(result)})")

    def until(self, expression: str) -> Any:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            self.pump()
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"never true: {expression}")


@pytest.fixture(scope="module")
def host(replay_file: Path) -> Iterator[Host]:
    server = build_server(Auditor(Settings(grounder="replay", replay=replay_file)))
    apps_client = Client(server, extensions=[advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})])
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(apps_client) as client:
        yield Host(portal, client)


@pytest.fixture(scope="module")
def host_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test host page: tests/apps_host/host.js bundled with the official AppBridge for the browser."""
    folder = tmp_path_factory.mktemp("apps-host")
    subprocess.run(
        [str(ESBUILD), str(ROOT / "tests" / "apps_host" / "host.js"), "--bundle", "--format=iife",
         "--platform=browser", f"--outfile={folder / 'host.bundle.js'}", "--log-level=warning"],
        env={**os.environ, "NODE_PATH": str(EXT_APPS / "node_modules")},
        check=True,
        timeout=120,
    )  # fmt: skip
    page = folder / "host.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>test host</title></head>'
        '<body style="margin:0"><script src="host.bundle.js"></script></body></html>',
        encoding="utf-8",
    )
    return page.as_uri()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cdp]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as cdp:
        yield cdp


def open_viewer(cdp: Cdp, host_page: str, host: Host, tool: str, arguments: dict[str, Any]) -> Viewer:
    """Call ``tool`` on the server, then show its result in the viewer as a host does."""
    result = host.call(tool, arguments)
    page = cdp.open(host_page)
    metrics = {"width": WIDTH + 40, "height": 1400, "deviceScaleFactor": 1, "mobile": False}
    cdp.call("Emulation.setDeviceMetricsOverride", metrics, page)
    cdp.hold_frames(page)
    start = {
        "html": host.page(),
        "tool": host.tool(tool),
        "input": arguments,
        "result": result,
        "theme": "light",
        "width": WIDTH,
    }
    cdp.js(page, f"host.start({json.dumps(start)})")
    viewer = Viewer(cdp, page, cdp.frame(page), host)
    viewer.until("document.getElementById('status').textContent.indexOf('Waiting') < 0")
    return viewer


PICTURE_SHOWN = "(i => !i.hidden && i.complete && i.naturalWidth > 0)(document.getElementById('xray'))"
BOXES = """(() => {
  const img = document.getElementById('xray').getBoundingClientRect();
  const boxes = Array.from(document.querySelectorAll('#boxes .box'));
  return {size: [img.width, img.height], boxes: boxes.map(b => {
    const r = b.getBoundingClientRect();
    return {label: b.dataset.label, kind: b.className.split(' ').find(c => c.startsWith('k-')),
      colour: getComputedStyle(b).borderTopColor, selected: b.classList.contains('sel'),
      edges: [r.left - img.left, r.top - img.top, r.right - img.left, r.bottom - img.top]};
  })};
})()"""
FLAGS = """Array.from(document.querySelectorAll('#flags li[data-flag]')).map(li => ({
  kind: li.querySelector('.badge').textContent, rule: li.querySelector('.rule').textContent,
  message: li.querySelector('.msg').textContent,
  evidence: Array.from(li.querySelectorAll('.ev')).map(e => e.textContent)}))"""
LIT = """({boxes: Array.from(document.querySelectorAll('#boxes .box.sel')).map(b => b.dataset.label),
  text: Array.from(document.querySelectorAll('#draft mark.hl')).map(m => m.textContent)})"""


def click_flag(viewer: Viewer, index: int) -> dict[str, Any]:
    viewer.js(f"document.querySelector('#flags li[data-flag=\"{index}\"] button').click()")
    lit: dict[str, Any] = viewer.js(LIT)
    return lit


def flip_mention(viewer: Viewer, label: str, status: str) -> None:
    viewer.js(
        "(() => { const li = Array.from(document.querySelectorAll('#mentions li'))"
        f".find(li => li.querySelector('strong').textContent === {json.dumps(label)});"
        f" const s = li.querySelector('select'); s.value = {json.dumps(status)};"
        " s.dispatchEvent(new Event('change')); })()"
    )


def drop_finding(viewer: Viewer, label: str) -> None:
    viewer.js(
        "Array.from(document.querySelectorAll('#findings li'))"
        f".find(li => li.textContent.startsWith({json.dumps(label)})).querySelector('input').click()"
    )


def rgb(colour: tuple[int, int, int]) -> str:
    return "rgb({}, {}, {})".format(*colour)


def blocked_by_csp(cdp: Cdp, session: str) -> list[str]:
    """The requests (not data: URIs) Chromium announced in ``session`` and refused for the CSP unsent."""
    announced = {
        e["params"]["requestId"]: e["params"]["request"]["url"]
        for e in cdp.events
        if e.get("sessionId") == session
        and e["method"] == "Network.requestWillBeSent"
        and not e["params"]["request"]["url"].startswith("data:")
    }
    refused = {
        e["params"]["requestId"]
        for e in cdp.events
        if e.get("sessionId") == session
        and e["method"] == "Network.loadingFailed"
        and e["params"].get("blockedReason") == "csp"
    }
    assert set(announced) <= refused, announced  # nothing else was even announced
    return sorted(announced.values())


def screenshot(viewer: Viewer, path: Path) -> None:
    """The host page as a person sees it; also saved (a palette PNG) where CXR_VIEWER_SCREENSHOT says."""
    shot = viewer.cdp.call(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, viewer.page
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    with Image.open(path) as im:
        lo, hi = im.convert("L").getextrema()
        assert isinstance(lo, int) and isinstance(hi, int) and hi - lo > 100, "the screenshot is blank"
        keep = os.environ.get("CXR_VIEWER_SCREENSHOT")
        if keep:
            height = int(
                viewer.cdp.js(viewer.page, "document.querySelector('iframe').getBoundingClientRect().bottom")
            )
            crop = im.convert("RGB").crop((0, 0, WIDTH, min(im.height, height)))
            # octree keeps the flag colours true (median cut turned MISSING's orange to mustard)
            crop.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(keep, optimize=True)
    print(f"\nscreenshot of the audit viewer: {path}")


def test_viewer_shows_an_audit_and_reruns_compare(
    browser: Cdp, host_page: str, host: Host, nih_images: Path, tmp_path: Path
) -> None:
    arguments = {"image": str(nih_images / URGENT_PNG), "draft": DRAFT}
    viewer = open_viewer(browser, host_page, host, "audit", arguments)
    report = host.call("audit", arguments)["structuredContent"]
    original = report["comparison"]["flags"]
    assert [f["kind"] for f in original] == ["URGENT", "MISSING", "UNSUPPORTED"]

    # the pixels: the app-only tool, asked with the result's sha256 and the call's own image
    viewer.until(PICTURE_SHOWN)
    previews = [args for name, args in host.calls if name == PREVIEW_TOOL]
    assert previews == [{"sha256": report["grounding"]["image"]["sha256"], "image": arguments["image"]}]

    # boxes where the grounding puts them, coloured as render_findings colours them
    drawn = viewer.js(BOXES)
    width, height = drawn["size"]
    assert width > 300 and abs(width - height) < 1  # a square NIH film, shown whole
    by_label = {b["label"]: b for b in drawn["boxes"]}
    assert set(by_label) == set(KNOWN_BOXES)
    for name, (x0, y0, x1, y1) in KNOWN_BOXES.items():
        expected = [x0 * width, y0 * height, x1 * width, y1 * height]
        assert all(abs(a - b) <= 1.0 for a, b in zip(by_label[name]["edges"], expected, strict=True)), (
            name,
            by_label[name]["edges"],
            expected,
        )
    assert by_label["pneumothorax"]["kind"] == "k-URGENT"
    assert by_label["pneumothorax"]["colour"] == rgb(COLOURS["URGENT"])
    assert by_label["cardiomegaly"]["colour"] == rgb(COLOURS["AGREED"])

    # every flag listed, with its rule id, message, box and span
    listed = viewer.js(FLAGS)
    assert [(f["kind"], f["rule"], f["message"]) for f in listed] == [
        (f["kind"], f["rule_id"], f["message"]) for f in original
    ]
    assert "box: [0.55, 0.10, 0.90, 0.45]" in listed[0]["evidence"]
    assert "box: none on the image" in listed[2]["evidence"]

    # a click lights the flag's own box and phrase, and only those
    for index, flag in enumerate(original):
        lit = click_flag(viewer, index)
        assert lit["boxes"] == [f["label"] for f in flag["image_evidence"] if f.get("box")], flag
        assert "".join(lit["text"]) == "".join(m["span"] for m in flag["draft_evidence"]), flag
        click_flag(viewer, index)  # and a second click clears it
    lit = click_flag(viewer, 0)
    assert lit["boxes"] == ["pneumothorax"]
    screenshot(viewer, tmp_path / "viewer.png")
    click_flag(viewer, 0)

    # stages and notes
    stages = viewer.js("Array.from(document.querySelectorAll('#stages tbody tr')).map(r => r.textContent)")
    assert stages[0].startswith("imagereplay") and "clean" in stages[0]
    assert stages[1].startswith("draftrules") and "clean" in stages[1]
    assert "not a diagnosis" in viewer.js("document.getElementById('disclaimer').textContent")

    # layers toggle
    hide = "document.querySelector('#layers input[value=findings]').click()"
    viewer.js(hide)
    assert viewer.js("getComputedStyle(document.getElementById('boxes')).display") == "none"
    viewer.js(hide)
    assert viewer.js("document.querySelectorAll('#boxes .box').length") == 2
    viewer.js("document.querySelector('#layers input[value=flags]').click()")
    assert viewer.js("getComputedStyle(document.getElementById('flags-section')).display") == "none"
    assert {b["kind"] for b in viewer.js(BOXES)["boxes"]} == {"k-FINDING"}
    viewer.js("document.querySelector('#layers input[value=flags]').click()")

    # the host's theme, then its change
    assert viewer.js("document.documentElement.dataset.theme") == "light"
    assert viewer.js("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    browser.js(viewer.page, "host.setTheme('dark')")
    viewer.until("document.documentElement.dataset.theme === 'dark'")
    assert viewer.js("getComputedStyle(document.body).backgroundColor") == "rgb(23, 24, 26)"
    browser.js(viewer.page, "host.setTheme('light')")
    viewer.until("document.documentElement.dataset.theme === 'light'")

    # edit, and re-run compare through the host: a new comparison, the original kept
    flip_mention(viewer, "pneumothorax", "present")
    drop_finding(viewer, "cardiomegaly")
    assert "2 edit(s)" in viewer.js("document.getElementById('edits').textContent")
    viewer.js("document.getElementById('rerun').click()")
    viewer.until("document.querySelectorAll('#runs button').length === 2")
    name, sent = host.calls[-1]
    assert name == "compare"
    assert [f["label"] for f in sent["grounding"]["findings"]] == ["pneumothorax"]
    statuses = {m["label"]: m["status"] for m in sent["reading"]["mentions"]}
    assert statuses["pneumothorax"] == "present"
    rerun = host.call("compare", sent)["structuredContent"]
    assert [(f["kind"], f["label"]) for f in rerun["flags"]] == [
        ("URGENT", "pneumothorax"),
        ("UNSUPPORTED", "pleural_effusion"),
        ("UNSUPPORTED", "cardiomegaly"),
    ]
    assert [(f["kind"], f["rule"]) for f in viewer.js(FLAGS)] == [
        (f["kind"], f["rule_id"]) for f in rerun["flags"]
    ]
    notes = viewer.js("document.getElementById('notes').textContent")
    assert "grounding_edited" in notes and "reading_edited" in notes
    assert viewer.js("document.querySelector('#runs button[aria-pressed=true]').textContent") == "Re-run 1"
    assert [b["label"] for b in viewer.js(BOXES)["boxes"]] == ["pneumothorax"]
    viewer.js("document.querySelector('#runs button').click()")  # back to the original, unchanged
    assert [(f["kind"], f["rule"]) for f in viewer.js(FLAGS)] == [(f["kind"], f["rule_id"]) for f in original]
    assert len(viewer.js(BOXES)["boxes"]) == 2

    # narrow: one column, nothing wider than the frame
    browser.js(viewer.page, "host.setWidth(360)")
    viewer.until("window.innerWidth === 360")
    layout = viewer.js(
        "(() => { const a = document.getElementById('image-section').getBoundingClientRect();"
        " const b = document.getElementById('text-section').getBoundingClientRect();"
        " const overflow = document.documentElement.scrollWidth - document.documentElement.clientWidth;"
        " return {stacked: b.top >= a.bottom - 1, overflow}; })()"
    )
    assert layout == {"stacked": True, "overflow": 0}

    # clean: no console error, no request from the viewer, only the host's own files for the page
    errors, requests = browser.problems(viewer.frame, "about:srcdoc")
    assert errors == [] and requests == [], (errors, requests)
    errors, requests = browser.problems(viewer.page, host_page)
    assert errors == [], errors
    assert all(r.startswith(host_page.rsplit("/", 1)[0]) for r in requests), requests

    # the CSP holds: no outside image, no fetch, no injected script
    blocked = viewer.js(
        "new Promise(done => { const seen = [];"
        " document.addEventListener('securitypolicyviolation', e => seen.push(e.violatedDirective));"
        " const img = new Image(); img.src = 'http://127.0.0.1:9/x.png'; document.body.appendChild(img);"
        " const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
        " document.body.appendChild(s);"
        " fetch('http://127.0.0.1:9/y').then(() => 'fetched', () => 'refused')"
        ".then(r => setTimeout(() => done({fetch: r, seen: seen.sort(), injected: !!window.injected}), 200));"
        " })"
    )
    assert blocked == {
        "fetch": "refused",
        "seen": ["connect-src", "img-src", "script-src-elem"],
        "injected": False,
    }
    assert blocked_by_csp(browser, viewer.frame) == ["http://127.0.0.1:9/x.png"]


def test_viewer_opened_by_compare_finds_its_image(
    browser: Cdp, host_page: str, host: Host, nih_images: Path
) -> None:
    """A compare result names no image: the viewer asks with the sha256 alone, and the server finds the
    image it read for ground_image (and reads it again, checked)."""
    grounding = host.call("ground_image", {"image": str(nih_images / URGENT_PNG)})["structuredContent"]
    reading = host.call("parse_draft", {"draft": "Cardiomegaly. No pneumothorax."})["structuredContent"]
    viewer = open_viewer(browser, host_page, host, "compare", {"grounding": grounding, "reading": reading})
    viewer.until(PICTURE_SHOWN)
    assert host.calls[-1] == (PREVIEW_TOOL, {"sha256": grounding["image"]["sha256"]})
    assert {b["label"] for b in viewer.js(BOXES)["boxes"]} == set(KNOWN_BOXES)
    assert [f["kind"] for f in viewer.js(FLAGS)] == ["URGENT", "MISSING"]
    assert viewer.js("document.getElementById('draft').textContent") == "Cardiomegaly. No pneumothorax."
    errors, requests = browser.problems(viewer.frame, "about:srcdoc")
    assert errors == [] and requests == [], (errors, requests)


def test_viewer_says_when_the_image_stage_failed(
    browser: Cdp, host_page: str, host: Host, nih_images: Path
) -> None:
    """A failed grounding is shown as failed, never as an image with nothing on it."""
    viewer = open_viewer(browser, host_page, host, "ground_image", {"image": str(nih_images / GARBLED_PNG)})
    viewer.until(PICTURE_SHOWN)
    assert viewer.js(BOXES)["boxes"] == []
    assert "image stage failed" in viewer.js("document.getElementById('findings').textContent")
    assert viewer.js("document.querySelector('#stages tr[data-stage=image] .o-failed').textContent") == (
        "failed"
    )
    status = viewer.js("document.getElementById('status').textContent")
    assert status == "Image findings: findings only, not compared."
    assert viewer.js("document.getElementById('notes').textContent") != "No notes."
    errors, requests = browser.problems(viewer.frame, "about:srcdoc")
    assert errors == [] and requests == [], (errors, requests)
