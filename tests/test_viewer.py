"""The audit viewer's server side (MCP Apps): the `_meta.ui` links, the ui:// page (self-contained, a
CSP that matches its inline blocks, small), the app-only preview tool (sha256-checked, downscaled) and
that a client without the Apps extension gets exactly the results it got before.

The page itself runs in tests/test_viewer_browser.py (headless Chromium, the official host bridge)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.extension import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import CallToolResult, ImageContent
from PIL import Image

from auditor.config import Settings
from auditor.labels import HUMAN_NAMES
from auditor.overlay import COLOURS
from auditor.pipeline import Auditor
from mcp_server import descriptions
from mcp_server.app import build_server
from mcp_server.viewer import (
    MAX_SOURCE_CHARS,
    PREVIEW_TOOL,
    VIEWER_TOOLS,
    VIEWER_URI,
    SourceMemory,
    result_sha256,
    viewer_html,
)
from tests.conftest import NORMAL_PNG, URGENT_PNG

MAX_PAGE_BYTES = 150_000


@pytest.fixture()
def server(replay_file: Path) -> Any:
    return build_server(Auditor(Settings(grounder="replay", replay=replay_file)))


def apps_client(server: Any) -> Client:
    return Client(server, extensions=[advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})])


def run(client: Client, body: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with client:
            await body(client)

    anyio.run(main)


def test_tools_list_links_the_viewer(server: Any) -> None:
    async def body(client: Client) -> None:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        for name in VIEWER_TOOLS:
            assert tools[name].meta == {"ui": {"resourceUri": VIEWER_URI}}, name
        assert tools[PREVIEW_TOOL].meta == {"ui": {"resourceUri": VIEWER_URI, "visibility": ["app"]}}
        for name in set(tools) - VIEWER_TOOLS - {PREVIEW_TOOL}:
            assert "ui" not in (tools[name].meta or {}), name
        assert EXTENSION_ID in (client.server_capabilities.extensions or {})

    run(Client(server), body)


def test_the_page_is_small_self_contained_and_its_csp_matches(server: Any) -> None:
    async def body(client: Client) -> None:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        assert listed[VIEWER_URI].mime_type == APP_MIME_TYPE
        content = (await client.read_resource(VIEWER_URI)).contents[0]
        assert content.mime_type == APP_MIME_TYPE
        assert content.meta == {"ui": {"csp": {}, "prefersBorder": True}}  # asks for no outside domain
        page = content.text  # type: ignore[union-attr]
        assert page == viewer_html()
        assert len(page.encode("utf-8")) < MAX_PAGE_BYTES

        csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
        assert csp is not None
        policy = dict(d.strip().split(" ", 1) for d in csp.group(1).split(";"))
        assert policy["default-src"] == "'none'" and policy["connect-src"] == "'none'"
        assert policy["img-src"] == "data:"
        for kind in ("style", "script"):
            blocks = re.findall(rf"<{kind}>(.*?)</{kind}>", page, re.DOTALL)
            hashes = [hashlib.sha256(b.encode()).digest() for b in blocks]
            assert len(blocks) == 1, kind
            assert policy[f"{kind}-src"] == " ".join(
                f"'sha256-{base64.b64encode(h).decode()}'" for h in hashes
            )
        # nothing to fetch: no link, no src or url() pointing anywhere, no address at all
        assert not re.search(r"https?:|<link|\bsrc=|url\(|@import", page)
        assert "__" + "CSP__" not in page and "__DATA__" not in page and "__KIND_COLOURS__" not in page

    run(Client(server), body)


def test_the_page_speaks_the_projects_words_and_colours() -> None:
    page = viewer_html()
    data = json.loads(
        re.search(r'<script type="application/json" id="cxr-data">(.*?)</script>', page).group(1)
    )  # type: ignore[union-attr]
    assert data["labels"] == {label.value: name for label, name in HUMAN_NAMES.items()}
    assert data["preview_tool"] == PREVIEW_TOOL
    assert f'<p id="disclaimer" role="note">{descriptions.DISCLAIMER}</p>' in page
    for style, (r, g, b) in COLOURS.items():
        assert f"--k-{style.lower()}:rgb({r},{g},{b})" in page, style


def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k != "timings_ms"}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_a_client_without_apps_gets_the_same_results(
    server: Any, nih_images: Path, replay_file: Path
) -> None:
    """The extension adds links, a resource and a tool; the results themselves do not change."""
    image = str(nih_images / URGENT_PNG)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("ground_image", {"image": image}),
        ("audit", {"image": image, "draft": "Cardiomegaly. No pneumothorax."}),
        ("parse_draft", {"draft": "Small left pleural effusion."}),
    ]
    seen: dict[bool, list[Any]] = {}

    for apps in (False, True):

        async def body(client: Client, apps: bool = apps) -> None:
            results = []
            for name, args in calls:
                r = await client.call_tool(name, args)
                results.append((r.is_error, _without_timings(r.structured_content), len(r.content)))
            grounding = results[0][1]
            c = await client.call_tool("compare", {"grounding": grounding, "reading": results[2][1]})
            results.append((c.is_error, c.structured_content, [x.type for x in c.content]))
            seen[apps] = results

        run(apps_client(server) if apps else Client(server), body)
    assert seen[False] == seen[True]
    engine = Auditor(Settings(grounder="replay", replay=replay_file))
    direct = engine.audit(image, "Cardiomegaly. No pneumothorax.").model_dump(mode="json")
    assert seen[False][1][1] == _without_timings(direct)


def _jpeg(result: Any) -> Image.Image:
    assert not result.is_error, result
    (content,) = result.content
    assert isinstance(content, ImageContent) and content.mime_type == "image/jpeg"
    return Image.open(io.BytesIO(base64.b64decode(content.data)))


def test_preview_is_the_checked_image_downscaled(server: Any, nih_images: Path) -> None:
    urgent, normal = str(nih_images / URGENT_PNG), str(nih_images / NORMAL_PNG)

    async def body(client: Client) -> None:
        unknown = await client.call_tool(PREVIEW_TOOL, {"sha256": "0" * 64})
        assert unknown.is_error and "pass `image` or `study_uid`" in unknown.content[0].text  # type: ignore[union-attr]

        g = await client.call_tool("ground_image", {"image": urgent})
        sha = g.structured_content["image"]["sha256"]  # type: ignore[index]
        with _jpeg(await client.call_tool(PREVIEW_TOOL, {"sha256": sha, "image": urgent})) as im:
            assert im.size == (768, 768) and im.mode == "L"  # 1024 x 1024 grey film, longest side 768
        with _jpeg(await client.call_tool(PREVIEW_TOOL, {"sha256": sha, "max_side": 256})) as im:
            assert im.size == (256, 256)  # found by its sha256: the image ground_image read

        wrong = await client.call_tool(PREVIEW_TOOL, {"sha256": sha, "image": normal})
        assert wrong.is_error and "not the one the result was made from" in wrong.content[0].text  # type: ignore[union-attr]
        bad = await client.call_tool(PREVIEW_TOOL, {"sha256": "not-a-hash", "image": urgent})
        assert bad.is_error

    run(apps_client(server), body)


def test_source_memory_keeps_few_short_names() -> None:
    memory = SourceMemory(size=2)
    memory.remember("a" * 64, {"image": "/x/1.png"})
    memory.remember("b" * 64, {"study_uid": "1.2.3"})
    memory.remember(
        "c" * 64, {"image": "data:image/png;base64," + "A" * MAX_SOURCE_CHARS}
    )  # inline: not kept
    memory.remember("d" * 64, {"image": "/x/1.png", "study_uid": "1.2.3"})  # ambiguous: not kept
    assert memory.recall("a" * 64) == {"image": "/x/1.png"}
    assert memory.recall("c" * 64) is None and memory.recall("d" * 64) is None
    memory.remember("e" * 64, {"image": "/x/2.png"})
    assert memory.recall("a" * 64) is None  # the oldest went first
    assert memory.recall("b" * 64) == {"study_uid": "1.2.3"}


def test_only_a_successful_result_names_the_image() -> None:
    sha = "a" * 64
    grounding = {"findings": [], "image": {"sha256": sha}}
    assert result_sha256("ground_image", CallToolResult(content=[], structured_content=grounding)) == sha
    assert result_sha256("audit", {"structuredContent": {"grounding": grounding}}) == sha
    assert result_sha256("audit", {"structuredContent": {"grounding": None}}) is None  # no image stage
    failed = CallToolResult(content=[], structured_content=grounding, is_error=True)
    assert result_sha256("ground_image", failed) is None
    assert result_sha256("ground_image", None) is None
