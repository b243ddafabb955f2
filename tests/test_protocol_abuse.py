"""Protocol abuse against the running server: malformed JSON-RPC, unknown methods and tools, wrong
types, missing and oversized arguments, a client that disconnects mid-call, a call cancelled
mid-generation. The server answers each (or drops the connection it was given) and keeps serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from auditor.backends import BackendState
from auditor.config import Settings
from auditor.pipeline import Auditor
from auditor.schema import Grounding, ModelInfo, ParseOutcome
from mcp_server.app import build_server
from tests.conftest import URGENT_PNG
from tests.test_mcp_transports import free_port

CLI = str(Path(sys.executable).parent / "cxr-auditor")


class StdioPeer:
    """A hand-driven JSON-RPC peer over the server's stdin/stdout, one JSON document per line."""

    def __init__(self, replay: Path) -> None:
        self.proc = subprocess.Popen(
            [CLI, "serve", "--grounder", "replay", "--replay", str(replay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ),
        )
        self.next_id = 1

    def send_raw(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = 20.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        result: list[bytes] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        assert result and result[0], "no answer from the server"
        message: dict[str, Any] = json.loads(result[0])
        return message

    def request(self, method: str, params: Any = None) -> dict[str, Any]:
        ident = self.next_id
        self.next_id += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": ident, "method": method}
        if params is not None:
            body["params"] = params
        self.send_raw(json.dumps(body).encode())
        while True:
            message = self.read()
            if message.get("id") == ident:
                return message

    def handshake(self) -> None:
        init = self.request(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "abuse", "version": "0"},
            },
        )
        assert "result" in init, init
        self.send_raw(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def call(peer: StdioPeer, name: str, arguments: Any) -> dict[str, Any]:
    return peer.request("tools/call", {"name": name, "arguments": arguments})


def is_error(message: dict[str, Any]) -> bool:
    return "error" in message or bool(message.get("result", {}).get("isError"))


def test_stdio_survives_garbage(replay_file: Path, nih_images: Path) -> None:
    peer = StdioPeer(replay_file)
    try:
        peer.handshake()
        peer.send_raw(b"{this is not json")
        peer.send_raw(b'{"jsonrpc": "2.0", "id": 999, "method": 42}')
        peer.send_raw(b"[]")
        assert "error" in peer.request("no/such/method", {})
        assert is_error(call(peer, "no_such_tool", {}))
        assert is_error(call(peer, "parse_draft", {}))  # missing argument
        assert is_error(call(peer, "parse_draft", {"draft": ["a", "list"]}))  # wrong type
        assert is_error(call(peer, "parse_draft", {"draft": "x" * 1_000_000}))  # oversized
        assert is_error(call(peer, "compare", {"grounding": "not an object"}))
        assert is_error(call(peer, "ground_image", {"image": "\x00\x01garbage"}))
        assert is_error(call(peer, "audit", {"image": str(nih_images / URGENT_PNG), "draft": 7}))
        ok = call(peer, "parse_draft", {"draft": "No pneumothorax."})
        assert not is_error(ok), ok
        assert ok["result"]["structuredContent"]["mentions"]
        assert peer.proc.poll() is None
    finally:
        peer.close()


def test_stdio_client_vanishing_mid_session_ends_the_server_cleanly(
    replay_file: Path, nih_images: Path
) -> None:
    peer = StdioPeer(replay_file)
    peer.handshake()
    peer.send_raw(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 77,
                "method": "tools/call",
                "params": {
                    "name": "audit",
                    "arguments": {"image": str(nih_images / URGENT_PNG), "draft": "x"},
                },
            }
        ).encode()
    )
    assert peer.proc.stdin is not None
    peer.proc.stdin.close()  # the client goes away without waiting for the answer
    assert peer.proc.wait(timeout=20) is not None


@pytest.fixture()
def http_url(replay_file: Path) -> Any:
    port = free_port()
    proc = subprocess.Popen(
        [CLI, "serve", "--http", "--port", str(port), "--grounder", "replay", "--replay", str(replay_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    for _ in range(100):
        try:
            httpx.get(url, timeout=0.5)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_http_survives_malformed_bodies_and_dropped_connections(http_url: str) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    for body in (b"{not json", b"", b"[1, 2, 3]", b'{"jsonrpc": "2.0"}', b"\xff\xfe" * 100):
        response = httpx.post(http_url, content=body, headers=headers)
        assert 400 <= response.status_code < 500, (body, response.status_code)
    huge = httpx.post(http_url, content=b'{"a": "' + b"x" * 5_000_000 + b'"}', headers=headers)
    assert 400 <= huge.status_code < 500
    # a client that sends half a request and hangs up
    import socket

    host, port = http_url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{"jsonrpc"')

    async def main() -> None:
        async with Client(http_url) as client:
            result = await client.call_tool("parse_draft", {"draft": "No effusion."})
            assert not result.is_error

    anyio.run(main)


class SlowGrounder:
    """Takes ``delay`` seconds per image, like a model generating on a busy GPU."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0

    def load(self) -> None:
        return None

    def state(self) -> BackendState:
        return BackendState(role="grounder", backend="test", model_id="slow", loaded=True)

    def ground(self, image: Any) -> Grounding:
        self.calls += 1
        time.sleep(self.delay)
        return Grounding(
            findings=[],
            outcome=ParseOutcome.CLEAN,
            model=ModelInfo(backend="test", model_id="slow"),
            image=image.info,
        )


def test_cancelled_call_leaves_the_server_serving(nih_images: Path) -> None:
    slow = SlowGrounder(delay=1.5)
    server = build_server(Auditor(Settings(grounder="replay"), grounder=slow))

    async def main() -> None:
        async with Client(server) as client:
            with anyio.move_on_after(0.3) as scope:
                await client.call_tool("ground_image", {"image": str(nih_images / URGENT_PNG)})
            assert scope.cancelled_caught
            t0 = time.perf_counter()
            ok = await client.call_tool("parse_draft", {"draft": "No pneumothorax."})
            assert not ok.is_error
            assert time.perf_counter() - t0 < 1.0  # the reader is not blocked by the abandoned grounding
            again = await client.call_tool("ground_image", {"image": str(nih_images / URGENT_PNG)})
            assert not again.is_error  # waits for the model, then is served

    anyio.run(main)
    assert slow.calls == 2


def test_cancelling_call_after_call_cannot_stack_up_threads(nih_images: Path) -> None:
    slow = SlowGrounder(delay=0.4)
    server = build_server(Auditor(Settings(grounder="replay"), grounder=slow))

    async def main() -> None:
        async with Client(server) as client:
            for _ in range(20):
                with anyio.move_on_after(0.03):
                    await client.call_tool("ground_image", {"image": str(nih_images / URGENT_PNG)})
            assert threading.active_count() <= 8  # the four worker threads, not one per cancelled call
            ok = await client.call_tool("parse_draft", {"draft": "No effusion."})
            assert not ok.is_error

    anyio.run(main)


def test_threads_outliving_their_event_loop_give_their_slots_back(
    nih_images: Path, replay_file: Path
) -> None:
    """Cancelled calls whose threads are still running when their event loop ends must not keep
    worker slots forever: a later server (or loop) would otherwise hang on its first model call."""
    slow = SlowGrounder(delay=0.5)
    first = build_server(Auditor(Settings(grounder="replay"), grounder=slow))

    async def cancel_many() -> None:
        async with Client(first) as client:
            for _ in range(6):
                with anyio.move_on_after(0.02):
                    await client.call_tool("ground_image", {"image": str(nih_images / URGENT_PNG)})

    anyio.run(cancel_many)  # the loop ends while the slow threads still run
    second = build_server(Auditor(Settings(grounder="replay", replay=replay_file)))

    async def use_again() -> None:
        async with Client(second) as client:
            with anyio.fail_after(20):
                for _ in range(6):
                    result = await client.call_tool("ground_image", {"image": str(nih_images / URGENT_PNG)})
                    assert not result.is_error

    anyio.run(use_again)
