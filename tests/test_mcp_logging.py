"""MCP logging: the capability is declared, `logging/setLevel` filters per connection, and the
auditor's activity (generation, fallbacks) reaches the calling client as log notifications, never an
image's identifiers or path, the draft's text or a token."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import LoggingMessageNotificationParams

from auditor.activity import log as activity
from auditor.backends import BackendError
from auditor.config import Settings
from auditor.pipeline import Auditor
from auditor.schema import DraftReading
from mcp_server.app import build_server
from mcp_server.client_log import LEVELS, mcp_level, relay_to, routed
from tests.conftest import GARBLED_PNG, URGENT_PNG

DRAFT = "Cardiomegaly is present. No pneumothorax."
TOKEN = "tok-do-not-log-0123456789"


class BrokenReader:
    """A model reader whose engine is down: the pipeline falls back to the rule reader."""

    def read(self, draft: str) -> DraftReading:
        raise BackendError("engine_unreachable", "the engine at http://127.0.0.1:9 did not answer")

    def load(self) -> None:
        return None

    def state(self) -> Any:
        raise AssertionError("not needed")


def serve(replay_file: Path, **kwargs: Any) -> Any:
    settings = Settings(grounder="replay", replay=replay_file, http_token=TOKEN)
    return build_server(Auditor(settings, **kwargs))


def logs_of(
    server: Any, body: Callable[[Client], Awaitable[None]], mode: str = "legacy", **client: Any
) -> list[LoggingMessageNotificationParams]:
    seen: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        seen.append(params)

    async def main() -> None:
        async with Client(server, mode=mode, logging_callback=on_log, **client) as c:
            await body(c)

    anyio.run(main)
    return seen


def test_logging_is_declared_and_set_level_answers_empty(replay_file: Path) -> None:
    async def body(client: Client) -> None:
        assert client.server_capabilities.logging is not None
        assert (await client.set_logging_level("debug")).model_dump(exclude_none=True) == {}

    logs_of(serve(replay_file), body)


def test_generation_is_logged_to_the_caller(replay_file: Path, nih_images: Path) -> None:
    image = str(nih_images / URGENT_PNG)

    async def body(client: Client) -> None:
        result = await client.call_tool("audit", {"image": image, "draft": DRAFT})
        assert not result.is_error, result

    seen = logs_of(serve(replay_file), body)
    lines = [(p.level, str(p.data)) for p in seen]
    assert [level for level, _ in lines] == ["info", "info"], lines
    assert lines[0][1].startswith("image model (replay ") and ": 2 findings, outcome clean, " in lines[0][1]
    assert lines[1][1].startswith("draft reader (rules ") and "2 mentions" in lines[1][1]
    assert all(p.logger == "cxr-auditor" for p in seen)
    for _, text in lines:
        assert image not in text and URGENT_PNG not in text and DRAFT not in text and TOKEN not in text


def test_set_level_filters_and_fallbacks_are_warnings(replay_file: Path, nih_images: Path) -> None:
    async def body(client: Client) -> None:
        await client.set_logging_level("warning")
        parsed = await client.call_tool("parse_draft", {"draft": DRAFT})
        assert not parsed.is_error, parsed
        garbled = await client.call_tool("ground_image", {"image": str(nih_images / GARBLED_PNG)})
        assert not garbled.is_error, garbled
        await client.set_logging_level("error")
        await client.call_tool("parse_draft", {"draft": DRAFT})

    seen = logs_of(serve(replay_file, reader=BrokenReader()), body)
    lines = [(p.level, str(p.data)) for p in seen]
    assert lines == [
        (
            "warning",
            "draft reader: the draft reader failed (the engine at http://127.0.0.1:9 did not answer); "
            "the rule reader read it instead",
        ),
        ("warning", lines[1][1]),
    ], "no info line below the threshold, nothing below error after the second setLevel"
    assert lines[1][1].startswith("image model (replay ") and "outcome failed" in lines[1][1]


def test_the_reader_thread_logs_to_the_caller(replay_file: Path, nih_images: Path) -> None:
    """With a model reader, audit reads in a thread of its own beside grounding: its fallback still
    reaches the client that called."""

    async def body(client: Client) -> None:
        result = await client.call_tool("audit", {"image": str(nih_images / URGENT_PNG), "draft": DRAFT})
        assert not result.is_error, result

    seen = logs_of(serve(replay_file, reader=BrokenReader()), body)
    assert sorted((p.level, str(p.data).split(" (")[0].split(":")[0]) for p in seen) == [
        ("info", "image model"),
        ("warning", "draft reader"),
    ]


def test_each_connection_keeps_its_own_level(replay_file: Path, nih_images: Path) -> None:
    server = serve(replay_file)
    image = str(nih_images / URGENT_PNG)

    async def quiet(client: Client) -> None:
        await client.set_logging_level("error")
        await client.call_tool("ground_image", {"image": image})

    async def default(client: Client) -> None:
        await client.call_tool("ground_image", {"image": image})

    assert logs_of(server, quiet) == []
    assert [p.level for p in logs_of(server, default)] == ["info"], "info until a client asks otherwise"


def test_modern_protocol_clients_opt_in_per_request(replay_file: Path, nih_images: Path) -> None:
    """On 2026-07-28 and later the request's own `_meta` opt-in decides (the SDK's gate)."""
    image = str(nih_images / URGENT_PNG)

    async def body(client: Client) -> None:
        await client.call_tool("ground_image", {"image": image})

    server = serve(replay_file)
    assert logs_of(server, body, mode="auto") == [], "no opt-in, no log lines"
    assert [p.level for p in logs_of(server, body, mode="auto", log_level="info")] == ["info"]


def test_levels_map_onto_mcp_severities() -> None:
    assert [mcp_level(n) for n in (5, 10, 20, 25, 30, 40, 50, 60)] == [
        "debug",
        "debug",
        "info",
        "info",
        "warning",
        "error",
        "critical",
        "critical",
    ]
    assert LEVELS[0] == "debug" and LEVELS[-1] == "emergency"


def test_activity_goes_nowhere_outside_a_tool_call(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI and the library stay quiet: the logger does not propagate, and no route is set."""
    assert relay_to(None) is None
    with routed(None):
        activity.warning("draft reader: a fallback the CLI reports as a note")
    assert capsys.readouterr() == ("", "")
    assert not activity.propagate and activity.getEffectiveLevel() == logging.INFO
