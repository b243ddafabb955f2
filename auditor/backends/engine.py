"""Both model roles against any OpenAI-compatible engine (vLLM, SGLang, ``transformers serve``).

Why an engine at all: one GPU process can serve many MCP clients and evaluation workers, batch their
requests, and live on another machine. Why a plain ``/v1/chat/completions`` over httpx rather than an
SDK: it is the one endpoint all three engines share, and a sync client suits our worker threads.

Failure is always loud and specific. The engine being down, slow, rate limiting, erroring or answering
nonsense each raise a ``BackendError`` with its own stable code (the pipeline turns a reader failure
into the rule reader with a note, and a grounder failure into a tool error); a model that answered
with unusable text is not an error but a FAILED/RECOVERED outcome, counted like any generation. The
API key is sent only in the ``Authorization`` header and never appears in a message or a log line.
"""

from __future__ import annotations

import base64
import io
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx

from auditor.backends import BackendError, BackendState
from auditor.config import Settings
from auditor.prompts import grounding_prompt, reader_prompt
from auditor.recovery import BoxFormat, recover_findings, recover_mentions
from auditor.schema import DraftReading, Grounding, ModelInfo, Note, ParseOutcome

if TYPE_CHECKING:
    from PIL import Image

    from auditor.images import LoadedImage

log = logging.getLogger(__name__)

MAX_IMAGE_SIDE: Final = 1024
"""Longest side sent to the engine. Engines resize to the vision tower's input (896 px for MedGemma)
anyway; sending more only costs bandwidth and base64 decode time."""

BODY_EXCERPT_CHARS: Final = 300
"""An error body is quoted this far: enough for the engine's reason, never a whole HTML page."""

CONNECT_TIMEOUT_S: Final = 5.0
"""A reachable engine accepts a TCP connection in milliseconds; waiting longer only delays the error."""

RETRY_AFTER_CAP_S: Final = 20.0
"""A Retry-After longer than this is not honoured in full: an MCP client gives up after about 60 s."""

_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_SPACE: Final = re.compile(r"\s+")


@dataclass(frozen=True)
class ChatReply:
    """What one chat completion produced: the answer and, when the engine splits it out, the trace."""

    content: str
    reasoning: str | None
    finish_reason: str | None


class EngineClient:
    """A small, thread-safe client for ``/v1/chat/completions`` with retries and a cap on requests
    in flight, mapping every failure to a ``BackendError`` whose code says what to do about it."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 3,
        max_in_flight: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        deadline_s: float | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        # One logical request (all attempts, waits and Retry-After pauses) never outlives this, so a
        # client such as Claude Desktop (which abandons a call after ~60 s) gets an answer in time.
        self.deadline_s = deadline_s if deadline_s is not None else timeout_s
        self.model = model
        self.retries = retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.last_ok = False
        self._api_key = api_key
        self._slots = threading.BoundedSemaphore(max_in_flight)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
            limits=httpx.Limits(max_connections=max_in_flight + 1, max_keepalive_connections=max_in_flight),
        )

    @property
    def safe_url(self) -> str:
        """The ``/v1`` base as shown to people: no credentials, query or fragment."""
        return redact_url(self.base_url)

    def close(self) -> None:
        self._http.close()

    def chat(self, body: dict[str, Any]) -> ChatReply:
        """POST one chat completion (``model`` filled in) and return its first choice."""
        response = self._request("POST", "/chat/completions", {"model": self.model, **body}, self.retries)
        try:
            reply = parse_chat_reply(response, self._excerpt)
        except BackendError:
            self.last_ok = False
            raise
        self.last_ok = True
        return reply

    def probe(self) -> list[str]:
        """GET ``/v1/models`` once, without retries: a cheap "is the engine there" for ``load()``.
        Returns the model ids it serves (``transformers serve`` lists only models already loaded)."""
        response = self._request("GET", "/models", None, 0)
        self.last_ok = True
        try:
            data = response.json().get("data", [])
            return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
        except (ValueError, AttributeError, TypeError):
            return []

    # ---- transport -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None, retries: int) -> httpx.Response:
        """One logical request: up to ``1 + retries`` attempts, each holding a slot only while on the wire."""
        attempts = 1 + retries
        deadline = time.monotonic() + self.deadline_s
        for attempt in range(1, attempts + 1):
            remaining = deadline - time.monotonic()
            timeout = httpx.Timeout(min(self.timeout_s, remaining), connect=min(CONNECT_TIMEOUT_S, remaining))
            try:
                with self._slots:
                    response = self._http.request(method, self.base_url + path, json=body, timeout=timeout)
            except httpx.HTTPError as exc:
                error = self._transport_error(exc, attempt)
                delay = self._backoff(attempt)
                if error.code == "engine_timeout" or attempt == attempts or not self._fits(delay, deadline):
                    self.last_ok = False
                    raise error from None
                self._sleep(delay, f"{error.code} ({type(exc).__name__})", attempt, attempts)
                continue
            if response.status_code < 400:
                return response
            delay = self._retry_delay(response, attempt)
            if (
                response.status_code not in _RETRY_STATUSES
                or attempt == attempts
                or not self._fits(delay, deadline)
            ):
                self.last_ok = False
                raise self._status_error(response, attempt)
            self._sleep(delay, f"HTTP {response.status_code}", attempt, attempts)
        raise AssertionError("unreachable")  # the loop always returns or raises

    @staticmethod
    def _fits(delay: float, deadline: float) -> bool:
        """Whether waiting ``delay`` still leaves time for another attempt before the deadline."""
        return time.monotonic() + delay + 0.05 < deadline

    def _transport_error(self, exc: httpx.HTTPError, attempt: int) -> BackendError:
        """Connection refused / DNS / connect timeout -> unreachable (retried); a read or write timeout
        -> engine_timeout, not retried: the engine accepted the work and may still be generating it,
        so a retry would queue a second copy behind the first and double the wait."""
        url = self.safe_url
        if isinstance(exc, httpx.ConnectTimeout):
            return BackendError("engine_unreachable", f"timed out connecting to the engine at {url}")
        if isinstance(exc, httpx.ConnectError):
            reason = self._excerpt(str(exc)) or type(exc).__name__
            return BackendError("engine_unreachable", f"cannot connect to the engine at {url} ({reason})")
        if isinstance(exc, httpx.TimeoutException):
            return BackendError(
                "engine_timeout",
                f"the engine at {url} did not answer within {self.timeout_s:g} s ({type(exc).__name__}); "
                "it may be overloaded or generating too long (engine_timeout_s)",
            )
        return BackendError(
            "engine_error",
            f"the connection to the engine at {url} failed ({type(exc).__name__}) after {attempt} attempt(s)",
        )

    def _status_error(self, response: httpx.Response, attempt: int) -> BackendError:
        status = response.status_code
        body = self._excerpt(response.text)
        tries = f" after {attempt} attempt(s)" if attempt > 1 else ""
        if status == 429:
            return BackendError(
                "engine_rate_limited",
                f"the engine at {self.safe_url} is rate limiting (HTTP 429){tries}: {body}",
            )
        hint = " (check CXR_AUDITOR_API_KEY)" if status in (401, 403) else ""
        if status == 404:
            hint = f" (is the engine serving the model {self.model!r}?)"
        return BackendError(
            "engine_error", f"the engine at {self.safe_url} answered HTTP {status}{tries}{hint}: {body}"
        )

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float:
        """Honour Retry-After (seconds or an HTTP date; sent with 429 and sometimes 503), capped;
        otherwise back off exponentially."""
        after = parse_retry_after(response.headers.get("Retry-After"))
        if after is not None:
            return min(after, RETRY_AFTER_CAP_S)
        return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        """Exponential with jitter, so clients that failed together do not retry together."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + random.random() / 2)

    def _sleep(self, delay: float, why: str, attempt: int, attempts: int) -> None:
        log.warning("engine %s: %s; retry %d/%d in %.2f s", self.safe_url, why, attempt, attempts - 1, delay)
        time.sleep(delay)

    def _excerpt(self, text: str) -> str:
        """A short one-line quote of engine text with the API key masked, should an engine echo it."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        text = _SPACE.sub(" ", text).strip()
        return text if len(text) <= BODY_EXCERPT_CHARS else text[:BODY_EXCERPT_CHARS] + "..."


# ---- response parsing -----------------------------------------------------------------------------


def _clip(text: str) -> str:
    return text[:BODY_EXCERPT_CHARS]


def parse_chat_reply(response: httpx.Response, excerpt: Callable[[str], str] = _clip) -> ChatReply:
    """``choices[0].message`` -> ChatReply, naming exactly what is missing when the shape is wrong.

    ``content`` may be null when a reasoning engine spent the whole budget thinking; that still is a
    generation (the trace is kept and recovery counts it FAILED), so only a reply with neither an
    answer nor a trace is a bad response.
    """
    try:
        payload = response.json()
    except ValueError:
        raise BackendError(
            "engine_bad_response",
            f"the engine's answer is not JSON: {excerpt(response.text) or '(empty body)'}",
        ) from None
    if not isinstance(payload, dict):
        raise BackendError("engine_bad_response", "the engine's answer is not a JSON object")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices:
        raise BackendError("engine_bad_response", "the engine's answer has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise BackendError("engine_bad_response", "the engine's answer has no choices[0].message")
    content = _text_of(message.get("content"))
    reasoning = _text_of(message.get("reasoning_content")) or _text_of(message.get("reasoning"))
    finish = choice.get("finish_reason")
    finish_reason = finish if isinstance(finish, str) else None
    if content is None and not reasoning:
        raise BackendError(
            "engine_bad_response",
            f"the engine's answer has no choices[0].message.content (finish_reason={finish_reason})",
        )
    return ChatReply(content=content or "", reasoning=reasoning or None, finish_reason=finish_reason)


def _text_of(value: object) -> str | None:
    """A string, or the joined text parts of a content list (some engines answer in parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [str(p["text"]) for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "".join(parts) if parts else None
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (``"2"``, ``"0.5"``) or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def normalize_base_url(url: str) -> str:
    """Accept ``http://host:8000``, ``.../`` or ``.../v1``; return the ``/v1`` base every path hangs off."""
    base = url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise BackendError(
            "not_configured", f"engine URL must start with http:// or https://, got {redact_url(base)!r}"
        )
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    try:
        httpx.URL(base)
    except httpx.InvalidURL:
        raise BackendError("not_configured", f"engine URL is not a valid URL: {redact_url(base)!r}") from None
    return base + "/v1"


def redact_url(url: str) -> str:
    """Drop user:password, query and fragment: a URL may carry a token, and messages are shown."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# ---- the two roles --------------------------------------------------------------------------------


def encode_png_data_uri(image: Image.Image, max_side: int = MAX_IMAGE_SIDE) -> tuple[str, tuple[int, int]]:
    """RGB PNG as a ``data:`` URI, longest side at most ``max_side`` (aspect kept). PNG, because it is
    lossless and every engine decodes it; returns the size actually sent."""
    from PIL import Image as PILImage

    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), image.size


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


def _state(role: str, client: EngineClient, extra: dict[str, object]) -> BackendState:
    return BackendState(
        role=role,
        backend="http",
        model_id=client.model,
        loaded=client.last_ok,
        device=None,
        detail={"base_url": client.safe_url, "max_in_flight": client.max_in_flight, **extra},
    )


def _probe(client: EngineClient) -> None:
    """``load()`` for an engine: it owns the weights, so "loading" is checking that it answers."""
    served = client.probe()
    if served and client.model not in served:
        log.warning("engine %s lists %s but not %r", client.safe_url, served, client.model)


class EngineGrounder:
    """Grounds an image with a vision-language model served by an engine."""

    def __init__(
        self,
        client: EngineClient,
        box_format: BoxFormat,
        *,
        prompt_file: str | Path | None = None,
        max_new_tokens: int = 512,
    ) -> None:
        self.client = client
        self.box_format = box_format
        self.prompt = grounding_prompt(box_format, prompt_file)
        self.max_new_tokens = max_new_tokens

    def load(self) -> None:
        _probe(self.client)

    def state(self) -> BackendState:
        return _state(
            "grounder",
            self.client,
            {
                "prompt_version": self.prompt.version,
                "box_format": f"{self.box_format.order}@{self.box_format.scale:g}",
            },
        )

    def ground(self, image: LoadedImage) -> Grounding:
        t0 = time.perf_counter()
        uri, sent = encode_png_data_uri(image.rgb())
        timings = {"encode": _ms(t0)}
        notes = list(image.notes)
        if sent != (image.info.width, image.info.height):
            notes.append(
                Note(
                    stage="image",
                    code="image_resized",
                    message=f"sent to the engine at {sent[0]}x{sent[1]} (longest side {MAX_IMAGE_SIDE})",
                )
            )
        t1 = time.perf_counter()
        reply = self.client.chat(self._body(uri))
        timings["request"] = _ms(t1)
        t2 = time.perf_counter()
        recovered = recover_findings(reply.content, self.box_format)
        timings["recovery"] = _ms(t2)
        timings["total"] = _ms(t0)
        return Grounding(
            findings=recovered.findings,
            outcome=recovered.outcome,
            model=ModelInfo(backend="http", model_id=self.client.model, prompt_version=self.prompt.version),
            image=image.info,
            raw_output=raw_output(reply),
            notes=[*notes, *recovered.notes],
            timings_ms=timings,
        )

    def _body(self, data_uri: str) -> dict[str, Any]:
        content = [
            {"type": "image_url", "image_url": {"url": data_uri}},
            {"type": "text", "text": self.prompt.text},
        ]
        return {
            "messages": [{"role": "user", "content": content}],
            "temperature": 0,
            "max_tokens": self.max_new_tokens,
            "stream": False,
        }


class EngineReader:
    """Reads a draft with a text model served by an engine; the draft is the user turn, verbatim."""

    def __init__(
        self,
        client: EngineClient,
        *,
        prompt_file: str | Path | None = None,
        max_new_tokens: int = 512,
        reasoning: bool = True,
        reasoning_budget: int = 256,
    ) -> None:
        self.client = client
        self.prompt = reader_prompt(prompt_file)
        self.max_new_tokens = max_new_tokens
        self.reasoning = reasoning
        self.reasoning_budget = reasoning_budget

    def load(self) -> None:
        _probe(self.client)

    def state(self) -> BackendState:
        return _state(
            "reader", self.client, {"prompt_version": self.prompt.version, "reasoning": self.reasoning}
        )

    def read(self, draft: str) -> DraftReading:
        model = ModelInfo(backend="http", model_id=self.client.model, prompt_version=self.prompt.version)
        if not draft.strip():
            note = Note(
                stage="draft",
                code="draft_empty",
                message="the draft is empty; nothing was sent to the engine",
            )
            return DraftReading(
                draft=draft, mentions=[], outcome=ParseOutcome.FAILED, model=model, notes=[note]
            )
        t0 = time.perf_counter()
        reply = self.client.chat(self._body(draft))
        timings = {"request": _ms(t0)}
        t1 = time.perf_counter()
        recovered = recover_mentions(reply.content, draft)
        timings["recovery"] = _ms(t1)
        timings["total"] = _ms(t0)
        return DraftReading(
            draft=draft,
            mentions=recovered.mentions,
            outcome=recovered.outcome,
            model=model,
            raw_output=raw_output(reply),
            notes=[*_trace_only_note(reply), *recovered.notes],
            timings_ms=timings,
        )

    def _body(self, draft: str) -> dict[str, Any]:
        """The OpenAI API has one ``max_tokens`` for trace and answer together, so the cap is the answer's
        budget plus the reasoning budget; unlike the in-process reader, a trace longer than its budget
        can still eat the answer's tokens, and a trace-only reply then says so in a note.
        ``enable_thinking: false`` is honoured by vLLM/SGLang chat templates, ignored elsewhere."""
        body: dict[str, Any] = {
            "messages": [{"role": "system", "content": self.prompt.text}, {"role": "user", "content": draft}],
            "temperature": 0,
            "max_tokens": self.max_new_tokens + (self.reasoning_budget if self.reasoning else 0),
            "stream": False,
        }
        if not self.reasoning:
            body["chat_template_kwargs"] = {"enable_thinking": False}
        return body


def _trace_only_note(reply: ChatReply) -> list[Note]:
    """An engine with a reasoning parser returns no answer when the trace used every token: say so,
    since "no JSON found" alone would hide that the fix is a larger budget."""
    if reply.content.strip() or reply.reasoning is None:
        return []
    message = (
        f"the engine returned only a reasoning trace (finish_reason={reply.finish_reason}); "
        "raise reader_reasoning_budget or turn reader_reasoning off"
    )
    return [Note(stage="draft", code="reasoning_unterminated", message=message)]


def raw_output(reply: ChatReply) -> str:
    """The generation as the model wrote it: an engine-separated trace goes back inside think tags,
    so that the raw output, sent through recovery again, gives the same answer."""
    if reply.reasoning is None:
        return reply.content
    return f"<think>\n{reply.reasoning}\n</think>\n{reply.content}"


# ---- factory hooks (auditor.backends.factory) -----------------------------------------------------


def _client(settings: Settings, url: str | None, model: str, role: str) -> EngineClient:
    if not url:
        raise BackendError(
            "not_configured", f"the {role} engine has no base URL (CXR_AUDITOR_{role.upper()}_URL)"
        )
    return EngineClient(
        url,
        model,
        api_key=settings.api_key,
        timeout_s=settings.engine_timeout_s,
        retries=settings.engine_retries,
        max_in_flight=settings.engine_max_in_flight,
        deadline_s=settings.engine_deadline_s,
    )


def make_grounder(settings: Settings) -> EngineGrounder:
    model = settings.grounder_api_model or settings.grounder_model
    return EngineGrounder(
        _client(settings, settings.grounder_url, model, "grounder"),
        BoxFormat(settings.box_order, settings.box_scale),
        prompt_file=settings.grounder_prompt,
        max_new_tokens=settings.grounder_max_new_tokens,
    )


def make_reader(settings: Settings) -> EngineReader:
    model = settings.reader_api_model or settings.reader_model
    return EngineReader(
        _client(settings, settings.reader_url, model, "reader"),
        prompt_file=settings.reader_prompt,
        max_new_tokens=settings.reader_max_new_tokens,
        reasoning=settings.reader_reasoning,
        reasoning_budget=settings.reader_reasoning_budget,
    )
