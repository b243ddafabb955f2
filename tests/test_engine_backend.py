"""The OpenAI-compatible engine backend against a fake engine on 127.0.0.1 (http.server in a thread):
answers, narration, retries, rate limits, stalls, refusals, malformed bodies, the API key, the cap on
requests in flight, the request shape, and the MCP tools on top. No network beyond loopback."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import TextContent
from PIL import Image

from auditor.backends import BackendError
from auditor.backends.engine import (
    EngineClient,
    EngineGrounder,
    EngineReader,
    make_grounder,
    make_reader,
    normalize_base_url,
    parse_retry_after,
    raw_output,
    redact_url,
)
from auditor.config import Settings
from auditor.images import LoadedImage, load_image
from auditor.pipeline import Auditor
from auditor.recovery import BoxFormat
from auditor.schema import AuditReport, DraftReading, Grounding, ImageInfo, ParseOutcome
from mcp_server.app import build_server

SECRET = "sk-test-SECRET-do-not-leak-0123456789"
FINDINGS = json.dumps(
    [
        {"label": "pneumothorax", "box_2d": [0.10, 0.55, 0.45, 0.90]},
        {"label": "cardiomegaly", "box_2d": [0.45, 0.30, 0.80, 0.75]},
    ]
)
DRAFT = "Cardiomegaly is present. No pneumothorax."
MENTIONS = json.dumps(
    [
        {"label": "cardiomegaly", "status": "present", "span": "Cardiomegaly is present"},
        {"label": "pneumothorax", "status": "absent", "span": "No pneumothorax"},
    ]
)


# ---- the fake engine ---------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer: status, body (dict -> JSON, str/bytes as is), headers, delay before it."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def chat(content: Any, **message: Any) -> Reply:
    """A well-formed chat completion whose first choice says ``content``."""
    msg = {"role": "assistant", "content": content, **message}
    return Reply(body={"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": msg}]})


class FakeEngine:
    """An OpenAI-compatible engine that answers from a script (then from ``default``), records every
    request, and counts how many it is serving at once."""

    def __init__(
        self, port: int = 0, default: Reply | Callable[[dict[str, Any]], Reply] | None = None
    ) -> None:
        self.script: list[Reply] = []
        self.default = default or chat(FINDINGS)
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                return None

            def do_GET(self) -> None:
                engine._record(self, None)
                self._send(Reply(body={"object": "list", "data": [{"id": "fake-model", "object": "model"}]}))

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = json.loads(raw) if raw else None
                with engine._lock:
                    engine.in_flight += 1
                    engine.max_in_flight = max(engine.max_in_flight, engine.in_flight)
                try:
                    reply = engine._next(self, body)
                    time.sleep(reply.delay)
                finally:
                    with engine._lock:
                        engine.in_flight -= 1
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                data = reply.body
                if isinstance(data, dict | list):
                    data = json.dumps(data)
                payload = data.encode() if isinstance(data, str) else (data or b"")
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]

    def _record(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        with self._lock:
            self.requests.append(
                {
                    "method": handler.command,
                    "path": handler.path,
                    "headers": dict(handler.headers),
                    "json": body,
                }
            )

    def _next(self, handler: BaseHTTPRequestHandler, body: Any) -> Reply:
        self._record(handler, body)
        with self._lock:
            if self.script:
                return self.script.pop(0)
        return self.default(body) if callable(self.default) else self.default

    def __enter__(self) -> FakeEngine:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def engine() -> Iterator[FakeEngine]:
    with FakeEngine() as fake:
        yield fake


def free_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(url: str, **kw: Any) -> EngineClient:
    opts: dict[str, Any] = {"timeout_s": 5.0, "retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05}
    opts.update(kw)
    return EngineClient(url, opts.pop("model", "fake-model"), **opts)


def loaded(width: int = 1600, height: int = 1200) -> LoadedImage:
    img = Image.linear_gradient("L").resize((width, height))
    info = ImageInfo(sha256="a" * 64, width=width, height=height, source_format="PNG")
    return LoadedImage(image=img, info=info)


def grounder(url: str, **kw: Any) -> EngineGrounder:
    return EngineGrounder(client(url, **kw), BoxFormat("yxyx", 1.0))


def reader(url: str, *, reasoning: bool = True, **kw: Any) -> EngineReader:
    return EngineReader(client(url, **kw), max_new_tokens=100, reasoning=reasoning, reasoning_budget=50)


def raises(code: str, fn: Callable[[], object]) -> BackendError:
    with pytest.raises(BackendError) as info:
        fn()
    assert info.value.code == code, (info.value.code, str(info.value))
    return info.value


# ---- answers and recovery ----------------------------------------------------------------------


def test_good_answer_is_a_clean_grounding_with_provenance(engine: FakeEngine) -> None:
    g = grounder(engine.url + "/v1/")
    image = loaded()
    result = g.ground(image)
    assert isinstance(result, Grounding)
    assert result.outcome is ParseOutcome.CLEAN
    assert [f.label for f in result.findings] == ["pneumothorax", "cardiomegaly"]
    box = result.findings[0].box
    assert box is not None and (box.x0, box.y0, box.x1, box.y1) == (0.55, 0.10, 0.90, 0.45)  # yxyx -> xyxy
    assert result.model.backend == "http" and result.model.model_id == "fake-model"
    assert result.model.prompt_version and result.model.device is None
    assert result.image == image.info and result.raw_output == FINDINGS
    assert {"request", "encode", "recovery"} <= set(result.timings_ms)
    assert "image_resized" in [n.code for n in result.notes]
    assert engine.posts()[0]["path"] == "/v1/chat/completions"
    assert g.state().loaded is True and g.state().detail["base_url"] == engine.url + "/v1"


def test_narration_around_the_json_is_recovered(engine: FakeEngine) -> None:
    engine.default = chat(f"Looking at the film carefully.\n```json\n{FINDINGS}\n```\nHope this helps.")
    result = grounder(engine.url).ground(loaded())
    assert result.outcome is ParseOutcome.RECOVERED
    assert {f.label for f in result.findings} == {"pneumothorax", "cardiomegaly"}
    assert "output_recovered" in [n.code for n in result.notes]


def test_unusable_text_is_a_failed_generation_not_an_error(engine: FakeEngine) -> None:
    engine.default = chat("I cannot tell where anything is.")
    result = grounder(engine.url).ground(loaded())
    assert result.outcome is ParseOutcome.FAILED and result.findings == []
    assert result.raw_output == "I cannot tell where anything is."


def test_image_arrives_as_a_png_data_uri_downscaled_with_aspect(engine: FakeEngine) -> None:
    grounder(engine.url, model="medgemma").ground(loaded(1600, 1200))
    body = engine.posts()[0]["json"]
    assert body["model"] == "medgemma" and body["temperature"] == 0 and body["max_tokens"] == 512
    (message,) = body["messages"]
    assert message["role"] == "user"
    image_part, text_part = message["content"]
    assert image_part["type"] == "image_url" and text_part["type"] == "text"
    assert "no_finding" in text_part["text"]
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert png.format == "PNG" and png.mode == "RGB" and png.size == (1024, 768)


def test_small_image_is_sent_as_is(engine: FakeEngine) -> None:
    result = grounder(engine.url).ground(loaded(300, 200))
    url = engine.posts()[0]["json"]["messages"][0]["content"][0]["image_url"]["url"]
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (300, 200)
    assert "image_resized" not in [n.code for n in result.notes]


# ---- retries -----------------------------------------------------------------------------------


def test_500_then_200_succeeds_after_one_retry(engine: FakeEngine) -> None:
    engine.script = [Reply(status=500, body="boom")]
    result = grounder(engine.url).ground(loaded())
    assert result.outcome is ParseOutcome.CLEAN
    assert len(engine.posts()) == 2


def test_429_with_retry_after_zero_then_200_succeeds(engine: FakeEngine) -> None:
    engine.script = [Reply(status=429, body={"error": "slow down"}, headers={"Retry-After": "0"})]
    t0 = time.perf_counter()
    result = grounder(engine.url, backoff_base_s=5.0, backoff_max_s=5.0).ground(loaded())
    assert time.perf_counter() - t0 < 2.0  # Retry-After: 0 wins over a 5 s backoff
    assert result.outcome is ParseOutcome.CLEAN and len(engine.posts()) == 2


def test_persistent_429_is_rate_limited(engine: FakeEngine) -> None:
    engine.default = Reply(status=429, body="busy", headers={"Retry-After": "0"})
    error = raises("engine_rate_limited", lambda: grounder(engine.url, retries=1).ground(loaded()))
    assert "429" in str(error) and len(engine.posts()) == 2


def test_persistent_503_is_engine_error_after_exactly_one_plus_retries(engine: FakeEngine) -> None:
    engine.default = Reply(status=503, body="<html>" + "overloaded " * 500 + "</html>")
    g = grounder(engine.url, retries=3)
    error = raises("engine_error", lambda: g.ground(loaded()))
    assert len(engine.posts()) == 4
    assert "503" in str(error) and "overloaded" in str(error)
    assert len(str(error)) < 600  # the body is quoted, bounded
    assert g.state().loaded is False


def test_retries_stop_at_the_overall_deadline(engine: FakeEngine) -> None:
    """Retry-After asks for 10 s; with a 1 s deadline for the whole request the client gives up at
    once instead of sleeping past what an MCP client will wait."""
    engine.default = Reply(status=503, body="busy", headers={"Retry-After": "10"})
    t0 = time.perf_counter()
    raises("engine_error", lambda: grounder(engine.url, retries=5, deadline_s=1.0).ground(loaded()))
    assert time.perf_counter() - t0 < 2.0
    assert len(engine.posts()) == 1


def test_each_attempt_gets_only_the_time_left(engine: FakeEngine) -> None:
    engine.default = Reply(delay=3.0, body=chat(FINDINGS).body)
    t0 = time.perf_counter()
    raises("engine_timeout", lambda: grounder(engine.url, timeout_s=30, deadline_s=0.6).ground(loaded()))
    assert time.perf_counter() - t0 < 1.5


def test_4xx_is_not_retried(engine: FakeEngine) -> None:
    engine.default = Reply(status=404, body={"error": {"message": "The model `x` does not exist."}})
    error = raises("engine_error", lambda: grounder(engine.url, retries=3).ground(loaded()))
    assert len(engine.posts()) == 1 and "404" in str(error) and "does not exist" in str(error)


def test_stall_longer_than_the_timeout_is_engine_timeout_quickly(engine: FakeEngine) -> None:
    engine.default = Reply(delay=3.0, body=chat(FINDINGS).body)
    t0 = time.perf_counter()
    error = raises("engine_timeout", lambda: grounder(engine.url, timeout_s=0.5, retries=3).ground(loaded()))
    assert time.perf_counter() - t0 < 1.5  # one timeout, not four: a stalled generation is not re-queued
    assert engine.url in str(error)


def test_connection_refused_is_unreachable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    error = raises("engine_unreachable", lambda: grounder(url, retries=2).ground(loaded()))
    assert f"{url}/v1" in str(error)


def test_unreachable_engine_fails_load_and_state_says_not_loaded() -> None:
    g = grounder(f"http://127.0.0.1:{free_port()}")
    assert g.state().loaded is False
    raises("engine_unreachable", g.load)


def test_load_probes_models_and_marks_loaded(engine: FakeEngine) -> None:
    r = reader(engine.url)
    assert r.state().loaded is False  # unknown until the engine has answered once
    r.load()
    assert r.state().loaded is True
    assert engine.requests[-1]["method"] == "GET" and engine.requests[-1]["path"] == "/v1/models"
    assert engine.posts() == []


# ---- malformed answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "missing"),
    [
        (Reply(body="<html>gateway</html>"), "not JSON"),
        (Reply(body=""), "not JSON"),
        (Reply(body={"object": "chat.completion"}), "no choices"),
        (Reply(body={"choices": []}), "no choices"),
        (Reply(body={"choices": [{"index": 0}]}), "choices[0].message"),
        (chat(None), "choices[0].message.content"),
        (Reply(body=[1, 2]), "not a JSON object"),
    ],
)
def test_malformed_bodies_are_bad_responses_naming_what_is_missing(
    engine: FakeEngine, reply: Reply, missing: str
) -> None:
    engine.default = reply
    g = grounder(engine.url)
    error = raises("engine_bad_response", lambda: g.ground(loaded()))
    assert missing in str(error)
    assert len(engine.posts()) == 1  # a 200 with a bad body is not retried
    assert g.state().loaded is False


# ---- the API key -------------------------------------------------------------------------------


def test_api_key_is_sent_as_bearer_and_never_echoed(engine: FakeEngine) -> None:
    g = grounder(engine.url, api_key=SECRET, retries=0)
    g.ground(loaded())
    assert engine.posts()[0]["headers"]["Authorization"] == f"Bearer {SECRET}"

    engine.default = Reply(status=401, body={"error": f"bad key {SECRET}"})  # an engine that echoes it
    error = raises("engine_error", lambda: g.ground(loaded()))
    assert SECRET not in str(error) and "***" in str(error) and "API_KEY" in str(error)
    assert SECRET not in repr(g.state()) and SECRET not in json.dumps(g.state().detail)

    down = grounder(f"http://127.0.0.1:{free_port()}", api_key=SECRET, retries=0)
    assert SECRET not in str(raises("engine_unreachable", lambda: down.ground(loaded())))


def test_api_key_is_not_in_settings_repr() -> None:
    assert SECRET not in repr(Settings(api_key=SECRET))


def test_no_api_key_sends_no_authorization(engine: FakeEngine) -> None:
    grounder(engine.url).ground(loaded())
    assert "Authorization" not in engine.posts()[0]["headers"]


# ---- concurrency -------------------------------------------------------------------------------


def test_max_in_flight_is_respected() -> None:
    with FakeEngine(default=Reply(delay=0.25, body=chat(MENTIONS).body)) as slow:
        r = reader(slow.url, max_in_flight=2, timeout_s=10.0)
        results: list[DraftReading] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                results.append(r.read(DRAFT))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
    assert errors == [] and len(results) == 8
    assert len(slow.posts()) == 8
    assert slow.max_in_flight == 2  # never more than two at once, and the cap was actually reached


# ---- the reader --------------------------------------------------------------------------------


def test_reader_sends_system_prompt_draft_and_budget(engine: FakeEngine) -> None:
    engine.default = chat(MENTIONS)
    reading = reader(engine.url, reasoning=True).read(DRAFT)
    assert reading.outcome is ParseOutcome.CLEAN
    assert {(m.label, m.status) for m in reading.mentions} == {
        ("cardiomegaly", "present"),
        ("pneumothorax", "absent"),
    }
    assert reading.model.backend == "http" and reading.model.prompt_version
    body = engine.posts()[0]["json"]
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"] == DRAFT
    assert body["temperature"] == 0 and body["max_tokens"] == 150  # answer + reasoning budget
    assert "chat_template_kwargs" not in body


def test_reasoning_off_sends_enable_thinking_false(engine: FakeEngine) -> None:
    engine.default = chat(MENTIONS)
    reader(engine.url, reasoning=False).read(DRAFT)
    body = engine.posts()[0]["json"]
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["max_tokens"] == 100


def test_reasoning_in_content_is_stripped_and_kept_in_raw(engine: FakeEngine) -> None:
    content = f"<think>\nThe report says the heart is big.\n</think>\n{MENTIONS}"
    engine.default = chat(content)
    reading = reader(engine.url).read(DRAFT)
    assert reading.outcome is ParseOutcome.CLEAN and len(reading.mentions) == 2
    assert reading.raw_output == content


def test_separate_reasoning_content_is_kept_in_raw_output(engine: FakeEngine) -> None:
    engine.default = chat(MENTIONS, reasoning_content="Heart big; no air.")
    reading = reader(engine.url).read(DRAFT)
    assert reading.outcome is ParseOutcome.CLEAN and len(reading.mentions) == 2
    assert reading.raw_output is not None
    assert "Heart big; no air." in reading.raw_output and MENTIONS in reading.raw_output


def test_trace_only_answer_is_a_failed_generation_with_a_note(engine: FakeEngine) -> None:
    engine.default = Reply(
        body={
            "choices": [
                {
                    "message": {"content": None, "reasoning": "Still thinking about the"},
                    "finish_reason": "length",
                }
            ]
        }
    )
    reading = reader(engine.url).read(DRAFT)
    assert reading.outcome is ParseOutcome.FAILED
    assert "reasoning_unterminated" in [n.code for n in reading.notes]
    assert reading.raw_output is not None and "Still thinking" in reading.raw_output


def test_empty_draft_fails_without_a_request(engine: FakeEngine) -> None:
    reading = reader(engine.url).read("   ")
    assert reading.outcome is ParseOutcome.FAILED and reading.mentions == []
    assert [n.code for n in reading.notes] == ["draft_empty"]
    assert engine.requests == []


# ---- helpers and factory -----------------------------------------------------------------------


def test_base_url_forms() -> None:
    for url in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"):
        assert normalize_base_url(url) == "http://h:8000/v1"
    assert redact_url("https://user:pw@h:8000/v1?key=abc") == "https://h:8000/v1"
    with pytest.raises(BackendError):
        normalize_base_url("h:8000")


def test_retry_after_forms() -> None:
    assert parse_retry_after("0") == 0.0 and parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


def test_raw_output_joins_the_separated_trace() -> None:
    from auditor.backends.engine import ChatReply

    assert raw_output(ChatReply("[]", None, "stop")) == "[]"
    assert raw_output(ChatReply("[]", "hmm", "stop")) == "<think>\nhmm\n</think>\n[]"


def test_factory_hooks_use_settings(engine: FakeEngine) -> None:
    settings = Settings(
        grounder="http",
        grounder_url=engine.url + "/v1",
        grounder_api_model="served-medgemma",
        reader="http",
        reader_url=engine.url,
        api_key=SECRET,
        engine_timeout_s=7.0,
        engine_retries=1,
        engine_max_in_flight=3,
        reader_reasoning=False,
        box_order="xyxy",
        box_scale=1000.0,
    )
    g, r = make_grounder(settings), make_reader(settings)
    assert g.client.model == "served-medgemma" and r.client.model == settings.reader_model
    assert g.client.timeout_s == 7.0 and g.client.retries == 1 and g.client.max_in_flight == 3
    assert g.box_format == BoxFormat("xyxy", 1000.0) and "xyxy@1000" in g.prompt.version
    assert r.reasoning is False
    assert g.state().backend == "http" and g.state().role == "grounder" and r.state().role == "reader"
    from auditor.backends import factory

    assert isinstance(factory.make_grounder(settings), EngineGrounder)
    assert isinstance(factory.make_reader(settings), EngineReader)


# ---- through the MCP tools ---------------------------------------------------------------------


def run(server: Any, body: Callable[[Client], Any]) -> None:
    async def main() -> None:
        async with Client(server) as c:
            await body(c)

    anyio.run(main)


def error_text(result: Any) -> str:
    assert result.is_error, result
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def routed(body: dict[str, Any]) -> Reply:
    """The fake engine as two models: the grounder gets findings, the reader gets mentions."""
    return chat(FINDINGS if body["model"] == "medgemma" else MENTIONS)


@pytest.fixture()
def xray(tmp_path: Path) -> str:
    path = tmp_path / "cxr.png"
    Image.linear_gradient("L").resize((640, 512)).save(path)
    return str(path)


def test_mcp_tools_with_engine_down_then_up(xray: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auditor = Auditor(
        Settings(grounder="http", grounder_url=url, reader="http", reader_url=url),
        grounder=grounder(url, model="medgemma", retries=0),
        reader=reader(url, model="nemotron", retries=0),
    )
    server = build_server(auditor)

    async def down(c: Client) -> None:
        text = error_text(await c.call_tool("ground_image", {"image": xray}))
        assert "engine_unreachable" in text and f"{url}/v1" in text
        r = await c.call_tool("parse_draft", {"draft": DRAFT})
        assert not r.is_error, r
        reading = DraftReading.model_validate(r.structured_content)
        assert reading.notes[0].code == "reader_fallback_rules" and "engine" in reading.notes[0].message
        assert reading.model.backend == "rules"
        assert {(m.label, m.status) for m in reading.mentions} >= {("pneumothorax", "absent")}

    run(server, down)

    async def up(c: Client) -> None:
        g = await c.call_tool("ground_image", {"image": xray})
        assert not g.is_error, g
        grounding = Grounding.model_validate(g.structured_content)
        assert grounding.model.backend == "http" and grounding.model.model_id == "medgemma"
        assert {f.label for f in grounding.findings} == {"pneumothorax", "cardiomegaly"}
        a = await c.call_tool("audit", {"image": xray, "draft": DRAFT})
        report = AuditReport.model_validate(a.structured_content)
        assert report.reading is not None and report.reading.model.backend == "http"
        assert "reader_fallback_rules" not in [n.code for n in report.reading.notes]
        assert [(f.kind, f.label) for f in report.comparison.flags] == [
            ("URGENT", "pneumothorax"),
            ("MISSING", "pneumothorax"),
        ]

    with FakeEngine(port=port, default=routed):  # the engine comes up on the same address
        run(server, up)
        models = auditor.models()
    assert all(m.backend == "http" and m.loaded for m in models)


def test_mcp_audit_falls_back_to_rules_when_only_the_reader_is_down(engine: FakeEngine, xray: str) -> None:
    engine.default = routed
    down_url = f"http://127.0.0.1:{free_port()}"
    auditor = Auditor(
        Settings(grounder="http", grounder_url=engine.url, reader="http", reader_url=down_url),
        grounder=grounder(engine.url, model="medgemma"),
        reader=reader(down_url, model="nemotron", retries=0),
    )

    async def body(c: Client) -> None:
        a = await c.call_tool("audit", {"image": xray, "draft": DRAFT})
        assert not a.is_error, a
        report = AuditReport.model_validate(a.structured_content)
        assert report.grounding is not None and report.grounding.model.backend == "http"
        assert report.reading is not None and report.reading.model.backend == "rules"
        assert report.reading.notes[0].code == "reader_fallback_rules"
        assert f"{down_url}/v1" in report.reading.notes[0].message
        assert ("MISSING", "pneumothorax") in [(f.kind, f.label) for f in report.comparison.flags]

    run(build_server(auditor), body)


def test_real_image_loader_feeds_the_grounder(engine: FakeEngine, xray: str) -> None:
    image = load_image(xray)
    result = grounder(engine.url).ground(image)
    assert result.image is not None and result.image.width == 640 and result.image.height == 512
