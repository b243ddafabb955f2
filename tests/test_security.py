"""Security through the tools: local paths cannot escape the configured roots (symlinks included),
URLs to loopback, link-local and metadata addresses are refused, and DICOM identifiers never reach
an output. (The HTTP transport's token and rebinding checks are in test_mcp_transports.)"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.types import TextContent

from auditor.config import Settings
from auditor.pipeline import Auditor
from mcp_server.app import build_server
from tests.conftest import URGENT_PNG


def error_of(result: Any) -> str:
    assert result.is_error, result
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def test_roots_confine_local_paths(tmp_path: Path, nih_images: Path, replay_file: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(nih_images / URGENT_PNG, allowed / "inside.png")
    shutil.copy(nih_images / URGENT_PNG, outside / "secret.png")
    (allowed / "link.png").symlink_to(outside / "secret.png")
    settings = Settings(grounder="replay", replay=replay_file, image_roots=(allowed.resolve(),))
    server = build_server(Auditor(settings))

    async def body(client: Client) -> None:
        ok = await client.call_tool("ground_image", {"image": str(allowed / "inside.png")})
        assert not ok.is_error, ok
        for sneaky in (
            outside / "secret.png",
            allowed / "link.png",
            allowed / ".." / "outside" / "secret.png",
        ):
            message = error_of(await client.call_tool("ground_image", {"image": str(sneaky)}))
            assert "path_refused" in message
            assert "secret" not in message or str(sneaky) in message

    async def main() -> None:
        async with Client(server) as client:
            await body(client)

    anyio.run(main)


def test_urls_to_internal_addresses_are_refused(replay_file: Path) -> None:
    server = build_server(Auditor(Settings(grounder="replay", replay=replay_file)))
    urls = [
        "http://127.0.0.1:9/x.png",
        "http://localhost/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.png",
        "http://10.0.0.1/x.png",
        "ftp://example.org/x.png",
        "gopher://127.0.0.1:70/",
    ]

    async def main() -> None:
        async with Client(server) as client:
            for url in urls:
                message = error_of(await client.call_tool("ground_image", {"image": url}))
                assert "url_refused" in message, (url, message)

    anyio.run(main)


def test_a_file_uri_is_a_local_path_and_stays_inside_the_image_roots(
    replay_file: Path, tmp_path: Path
) -> None:
    server = build_server(Auditor(Settings(grounder="replay", replay=replay_file, image_roots=(tmp_path,))))

    async def main() -> None:
        async with Client(server) as client:
            message = error_of(await client.call_tool("ground_image", {"image": "file:///etc/passwd"}))
            assert "path_refused" in message, message

    anyio.run(main)
