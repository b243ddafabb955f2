"""The worklist report in a real headless Chromium (Debian `chromium`), driven over the Chrome DevTools
Protocol with a small stdlib websocket client: it loads with no console errors and no network
requests, every picture decodes, rows are in order, and the filters hide and show rows.

A screenshot is saved into the test's tmp folder and its path printed (pytest -s shows it)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from auditor.batch import REPORT, read_worklist, run_batch
from auditor.config import Settings
from tests.conftest import GARBLED_PNG, NORMAL_PNG, URGENT_PNG

CHROMIUM = Path("/usr/bin/chromium")
NIH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nih" / "images"
pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="headless Chromium not installed at /usr/bin/chromium (apt-get install -y chromium)",
    ),
    pytest.mark.skipif(not NIH.is_dir(), reason=f"shared NIH images not found at {NIH}"),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--mute-audio",
]
ODD_ID = "<i>image-only</i> & co"
TIMEOUT_S = 20.0


# ---- a minimal websocket client (RFC 6455, text frames, client-masked) -------------------------------


class WebSocket:
    """Just enough websocket for CDP on loopback: no extensions, no Origin header (which Chromium
    would refuse without --remote-allow-origins)."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT_S)
        self.reader = self.sock.makefile("rb")
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status = self.reader.readline()
        if b" 101 " not in status:
            raise ConnectionError(f"websocket handshake refused: {status!r}")
        while self.reader.readline() not in (b"\r\n", b""):
            pass

    def send(self, text: str, opcode: int = 0x1) -> None:
        data = text.encode()
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exact(self, n: int) -> bytes:
        data = self.reader.read(n)
        if len(data) != n:
            raise ConnectionError("websocket closed")
        return data

    def recv(self) -> str:
        """One whole message; control frames are answered or raise, fragments are joined."""
        parts: list[bytes] = []
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            mask = self._exact(4) if b1 & 0x80 else b""
            payload = self._exact(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if opcode == 0x9:
                self.send(payload.decode("latin-1"), opcode=0xA)
                continue
            if opcode == 0xA:
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self) -> None:
        self.sock.close()


class Cdp:
    """CDP over one browser websocket, with flattened page sessions; events are kept for checking."""

    def __init__(self, url: str) -> None:
        self.ws = WebSocket(url)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            for event in self.events:
                if event["method"] == method and event.get("sessionId") == session:
                    return event
            reply = json.loads(self.ws.recv())
            if "method" in reply:
                self.events.append(reply)
        raise TimeoutError(f"no {method} within {TIMEOUT_S:g} s")

    def open(self, url: str) -> str:
        """A fresh tab with console, log and network recorded from before the first request."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session: str = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=session)
        self.call("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return session

    def js(self, session: str, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self, session: str, page_url: str) -> tuple[list[str], list[str]]:
        """(console errors and uncaught exceptions, requests other than the page and data: URIs)."""
        errors, requests = [], []
        for e in (e for e in self.events if e.get("sessionId") == session):
            method, params = e["method"], e["params"]
            if method == "Runtime.exceptionThrown":
                errors.append(json.dumps(params["exceptionDetails"])[:300])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append(json.dumps(params["args"])[:300])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(params["entry"]["text"][:300])
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if url != page_url and not url.startswith("data:"):
                    requests.append(url)
        return errors, requests


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cdp]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = open(profile.parent / "chromium.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT_S
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start; see {profile.parent / 'chromium.log'}")
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        cdp = Cdp(f"ws://127.0.0.1:{port}{path}")
        yield cdp
        with contextlib.suppress(ConnectionError, OSError):
            cdp.call("Browser.close")
        cdp.ws.close()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


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
