"""The auditor's activity (auditor/activity.py: model loading, generation, fallbacks) relayed to the
calling client as MCP log notifications, with `logging/setLevel` honoured per connection.

A tool call's worker thread routes what it logs to its own client: a context variable holds the route,
so concurrent clients never see each other's lines, and a thread started in the caller's context (the
pipeline's reader thread) follows it. Handshake-era clients (protocol 2025-11-25 and before) choose a
threshold with `logging/setLevel`, `info` until they do; on 2026-07-28 and later the SDK applies each
request's own opt-in as well. auditor/ itself knows nothing of MCP: it logs to a stdlib logger.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, get_args

import anyio.from_thread
import anyio.lowlevel
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import EmptyResult, LoggingLevel, SetLevelRequestParams

from auditor.activity import log as activity

Relay = Callable[[logging.LogRecord], None]

LEVELS: tuple[LoggingLevel, ...] = get_args(LoggingLevel)
"""MCP's levels, least severe first (the SDK's literal is declared in that order)."""
DEFAULT_LEVEL: LoggingLevel = "info"
LOGGER = "cxr-auditor"
_LEVEL_KEY = "cxr_auditor.log_level"

# The 2026-07-28 protocol deprecates logging (SEP-2577), but it is how today's clients show a server's
# activity; we serve it on purpose, so the SDK's reminder need not repeat on stderr for every line.
warnings.filterwarnings("ignore", "The logging capability is deprecated", MCPDeprecationWarning)


_FLOORS: tuple[tuple[int, LoggingLevel], ...] = (
    (logging.CRITICAL, "critical"),
    (logging.ERROR, "error"),
    (logging.WARNING, "warning"),
    (logging.INFO, "info"),
)


def mcp_level(levelno: int) -> LoggingLevel:
    """A stdlib level as the MCP level of the same severity."""
    return next((level for floor, level in _FLOORS if levelno >= floor), "debug")


def _connection_state(session: Any) -> dict[str, Any] | None:
    """The SDK's per-connection scratch state (``Connection.state``); a request's session holds its
    connection privately in mcp 2.x. None if that changes: then every connection has the default."""
    state = getattr(getattr(session, "_connection", None), "state", None)
    return state if isinstance(state, dict) else None


def threshold(session: Any) -> LoggingLevel:
    """The least severe level this connection asked for with `logging/setLevel` (else the default)."""
    state = _connection_state(session)
    level = state.get(_LEVEL_KEY) if state is not None else None
    return level if level in LEVELS else DEFAULT_LEVEL


async def _set_level(ctx: ServerRequestContext[Any], params: SetLevelRequestParams) -> EmptyResult:
    state = _connection_state(ctx.session)
    if state is not None:
        state[_LEVEL_KEY] = params.level
    return EmptyResult()


_route: ContextVar[Relay | None] = ContextVar("cxr_auditor_client_log", default=None)


class _ToClient(logging.Handler):
    """Hands each activity record to the route of the thread (context) that logged it, if any."""

    def emit(self, record: logging.LogRecord) -> None:
        relay = _route.get()
        if relay is not None:
            relay(record)


_HANDLER = _ToClient()


def serve_logging(server: MCPServer) -> None:
    """Declare the logging capability (the SDK declares it for a `logging/setLevel` handler, which
    MCPServer has no public hook for) and start relaying the auditor's activity."""
    server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_level)
    if _HANDLER not in activity.handlers:
        activity.addHandler(_HANDLER)


def relay_to(ctx: Context | None) -> Relay | None:
    """Made on the event loop, called from worker threads: each record at or above the connection's
    threshold becomes one log notification to this call's client (best effort, as progress is).
    None outside a request: there is no client to tell."""
    try:
        session = ctx.request_context.session if ctx is not None else None
    except ValueError:
        session = None
    if ctx is None or session is None:
        return None
    token = anyio.lowlevel.current_token()

    def relay(record: logging.LogRecord) -> None:
        level = mcp_level(record.levelno)
        if LEVELS.index(level) < LEVELS.index(threshold(session)):
            return
        with contextlib.suppress(Exception):  # a client gone, or a call from the loop thread itself
            anyio.from_thread.run(_log, session, level, record.getMessage(), token=token)

    return relay


async def _log(session: Any, level: LoggingLevel, message: str) -> None:
    """On the connection's channel, not the request's: HTTP answers in JSON mode (a call's response
    carries no notifications), so an HTTP client hears the activity on its standing GET stream; on
    stdio both are one pipe. From 2026-07-28 the SDK scopes it to the request and its opt-in."""
    await session.send_log_message(level=level, data=message, logger=LOGGER)


@contextlib.contextmanager
def routed(relay: Relay | None) -> Iterator[None]:
    """Within the block, this context's activity goes to ``relay`` (nowhere when None)."""
    reset = _route.set(relay)
    try:
        yield
    finally:
        _route.reset(reset)
