"""Transports: stdio (Claude Desktop, Claude Code) and streamable HTTP on 127.0.0.1.

HTTP binds to loopback by default. Binding anywhere else needs a bearer token, which every request
must then carry; DNS-rebinding protection (Host and Origin checks) is on either way.
"""

from __future__ import annotations

import hmac
import ipaddress
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from auditor.config import ConfigError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerAuth:
    """Pure ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": b"missing or wrong bearer token\n"})
                return
        await self.app(scope, receive, send)


def check_bind(host: str, token: str | None) -> None:
    """Loopback needs nothing; any other address needs a bearer token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to bind {host}: not a loopback address and no bearer token "
            "(pass --token or set CXR_AUDITOR_HTTP_TOKEN)"
        )


def http_app(server: Any, host: str, token: str | None) -> ASGIApp:
    """The streamable-HTTP ASGI app with rebinding protection and, when given, the token check."""
    from mcp.server.transport_security import TransportSecuritySettings

    check_bind(host, token)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    if not is_loopback(host):
        hosts.append(f"{host}:*")
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[f"http://{h}" for h in hosts],
    )
    app: ASGIApp = server.streamable_http_app(transport_security=security, host=host, json_response=True)
    return BearerAuth(app, token) if token else app


def run_http(server: Any, host: str, port: int, token: str | None) -> None:
    import uvicorn

    app = http_app(server, host, token)
    print(f"cxr-auditor: serving MCP over streamable HTTP at http://{host}:{port}/mcp", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
