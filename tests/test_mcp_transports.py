"""`cxr-auditor serve` as a real process: stdio (what Claude Desktop spawns) and streamable HTTP on
127.0.0.1 with rebinding protection and the bearer token; start-up refusals name the bad value."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import LoggingMessageNotificationParams

from auditor.schema import Comparison, DraftReading
from tests.conftest import URGENT_PNG
from tests.test_mcp_server import TOOLS

CLI = str(Path(sys.executable).parent / "cxr-auditor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def exercise(client: Client, image: str) -> None:
    names = {t.name for t in (await client.list_tools()).tools}
    assert names == TOOLS
    r = await client.call_tool("parse_draft", {"draft": "Cardiomegaly is present. No pneumothorax."})
    reading = DraftReading.model_validate(r.structured_content)
    g = await client.call_tool("ground_image", {"image": image})
    assert not g.is_error, g
    c = await client.call_tool(
        "compare", {"grounding": g.structured_content, "reading": reading.model_dump()}
    )
    flags = Comparison.model_validate(c.structured_content).flags
    assert [(f.kind, f.label) for f in flags] == [("URGENT", "pneumothorax"), ("MISSING", "pneumothorax")]
    a = await client.call_tool("audit", {"image": image, "draft": "Cardiomegaly. No pneumothorax."})
    assert [f["kind"] for f in a.structured_content["comparison"]["flags"]] == ["URGENT", "MISSING"]  # type: ignore[index]
    picture = await client.call_tool("render_findings", {"image": image, "max_side": 256})
    assert [c.type for c in picture.content] == ["image"]
    uris = {str(r.uri) for r in (await client.list_resources()).resources}
    assert "cxr://models" in uris
    assert (await client.read_resource("cxr://vocabulary")).contents
    assert (await client.get_prompt("audit_draft", {"image": image, "draft": "x"})).messages
    bad = await client.call_tool("ground_image", {"image": "/no/such/file.png"})
    assert bad.is_error
    again = await client.call_tool("parse_draft", {"draft": "No effusion."})
    assert not again.is_error


def test_stdio_subprocess(replay_file: Path, nih_images: Path) -> None:
    params = StdioServerParameters(
        command=CLI,
        args=["serve", "--grounder", "replay", "--replay", str(replay_file)],
        env=dict(os.environ),
    )

    async def main() -> None:
        async with Client(params) as client:
            await exercise(client, str(nih_images / URGENT_PNG))

    anyio.run(main)


@pytest.fixture()
def http_server(replay_file: Path) -> Iterator[tuple[str, str]]:
    port, token = free_port(), "test-token-123"
    proc = subprocess.Popen(
        [
            CLI,
            "serve",
            "--http",
            "--port",
            str(port),
            "--token",
            token,
            "--grounder",
            "replay",
            "--replay",
            str(replay_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        for _ in range(100):
            try:
                httpx.get(url, timeout=0.5)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    raise AssertionError(
                        proc.stderr.read().decode() if proc.stderr else "server exited"
                    ) from None
                time.sleep(0.1)
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_http_with_token(http_server: tuple[str, str], nih_images: Path) -> None:
    url, token = http_server

    async def main() -> None:
        # mcp's HTTP transport takes its own httpx2 client: that is where the bearer header goes
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            await exercise(client, str(nih_images / URGENT_PNG))

    anyio.run(main)


def test_http_client_hears_the_activity(http_server: tuple[str, str], nih_images: Path) -> None:
    """HTTP answers in JSON mode, so log notifications come on the client's standing GET stream."""
    url, token = http_server
    seen: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        seen.append(params)

    async def main() -> None:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
            Client(
                streamable_http_client(url, http_client=http), mode="legacy", logging_callback=on_log
            ) as c,
        ):
            await c.set_logging_level("info")
            assert not (await c.call_tool("ground_image", {"image": str(nih_images / URGENT_PNG)})).is_error
            with anyio.fail_after(10):
                while not seen:
                    await anyio.sleep(0.02)

    anyio.run(main)
    assert seen[0].level == "info" and str(seen[0].data).startswith("image model (replay ")


def test_http_refuses_missing_or_wrong_token_and_foreign_hosts(http_server: tuple[str, str]) -> None:
    url, token = http_server
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    assert httpx.post(url, json=init, headers=headers).status_code == 401
    wrong = {**headers, "Authorization": "Bearer nope"}
    assert httpx.post(url, json=init, headers=wrong).status_code == 401
    rebind = {**headers, "Authorization": f"Bearer {token}", "Host": "evil.example:80"}
    assert httpx.post(url, json=init, headers=rebind).status_code in {400, 403, 421}
    origin = {**headers, "Authorization": f"Bearer {token}", "Origin": "http://evil.example"}
    assert httpx.post(url, json=init, headers=origin).status_code in {400, 403}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--http", "--host", "0.0.0.0"], "refusing to bind 0.0.0.0"),
        (["serve", "--grounder", "replay"], "needs a replay file"),
        (["serve", "--grounder", "replay", "--replay", "/no/such.jsonl"], "replay file not found"),
        (["serve", "--grounder", "magic"], "argument --grounder: invalid choice: 'magic'"),
        (["serve", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["serve", "--config", "/no/such.toml"], "config file not found"),
    ],
)
def test_bad_configuration_fails_at_start_with_one_line(
    args: list[str], message: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_AUDITOR_")}
    proc = subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_unknown_environment_variable_fails_at_start() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_AUDITOR_")}
    env["CXR_AUDITOR_IMAGE_ROOT"] = "/srv/images"  # a typo for IMAGE_ROOTS: must not switch the guard off
    proc = subprocess.run(
        [CLI, "serve"], capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 2 and "CXR_AUDITOR_IMAGE_ROOT" in proc.stderr, proc.stderr


def test_wildcard_bind_needs_the_names_clients_use(replay_file: Path) -> None:
    args = [
        "serve",
        "--http",
        "--host",
        "0.0.0.0",
        "--token",
        "t",
        "--grounder",
        "replay",
        "--replay",
        str(replay_file),
    ]
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "--allow-host" in proc.stderr, proc.stderr


def test_host_patterns_bracket_ipv6() -> None:
    from mcp_server.serve import _host_pattern

    assert _host_pattern("2001:db8::1") == "[2001:db8::1]:*"
    assert _host_pattern("[::1]") == "[::1]:*"
    assert _host_pattern("scanner.local") == "scanner.local:*"


def test_serve_fails_at_start_on_a_bad_reader_prompt_or_missing_gpu(
    replay_file: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "prompt.txt"
    bad.write_bytes(b"\xff\xfe not utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_AUDITOR_")}
    base = [CLI, "serve", "--grounder", "replay", "--replay", str(replay_file)]
    for extra, word in (
        (["--reader", "http", "--reader-url", "http://127.0.0.1:9"], "reader"),
        (["--device", "cuda"], "cuda"),
    ):
        run_env = {**env, "CXR_AUDITOR_READER_PROMPT": str(bad)} if word == "reader" else env
        proc = subprocess.run(
            [*base, *extra], capture_output=True, text=True, timeout=60, env=run_env, stdin=subprocess.DEVNULL
        )
        assert proc.returncode == 2 and word in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_replay_line_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image_sha256": "abc", "raw_output": "[]"}\n')
    proc = subprocess.run(
        [CLI, "serve", "--grounder", "replay", "--replay", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "bad.jsonl:1" in proc.stderr and "64 hex" in proc.stderr


def test_starting_the_server_does_not_import_torch(replay_file: Path) -> None:
    code = (
        "import sys; from auditor.config import Settings; from auditor.pipeline import Auditor; "
        "from mcp_server.app import build_server; "
        f"build_server(Auditor(Settings(grounder='replay', replay={str(replay_file)!r}))); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False False"
