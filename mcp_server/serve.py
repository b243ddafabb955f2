"""Transports: stdio (Claude Desktop, Claude Code) and streamable HTTP on 127.0.0.1.

HTTP binds to loopback by default. Binding anywhere else needs a bearer token, which every request
must then carry; DNS-rebinding protection (Host and Origin checks) is on either way.
"""

from __future__ import annotations

import hmac
import ipaddress
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
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


_WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", ""})


def _host_pattern(name: str) -> str:
    """``name:*`` as the Host header spells it: IPv6 addresses in brackets."""
    bare = name.strip("[]")
    try:
        if ipaddress.ip_address(bare).version == 6:
            return f"[{bare}]:*"
    except ValueError:
        pass
    return f"{bare}:*"


def check_bind(host: str, token: str | None, allow_hosts: Sequence[str] = ()) -> None:
    """Loopback needs nothing; any other address needs a bearer token, and a wildcard bind needs the
    names clients will use (the Host check cannot guess them)."""
    if is_loopback(host):
        return
    if not token:
        raise ConfigError(
            f"refusing to bind {host}: not a loopback address and no bearer token "
            "(pass --token or set CXR_AUDITOR_HTTP_TOKEN)"
        )
    if host in _WILDCARDS and not allow_hosts:
        raise ConfigError(
            f"binding {host or 'every address'} needs --allow-host NAME for each name or address clients "
            "use to reach this machine (DNS-rebinding protection checks the Host header)"
        )


def http_app(server: Any, host: str, token: str | None, allow_hosts: Sequence[str] = ()) -> ASGIApp:
    """The streamable-HTTP ASGI app with rebinding protection and, when given, the token check."""
    from mcp.server.transport_security import TransportSecuritySettings

    check_bind(host, token, allow_hosts)
    names = ["127.0.0.1", "localhost", "::1", *allow_hosts]
    if not is_loopback(host) and host not in _WILDCARDS:
        names.append(host)
    hosts = list(dict.fromkeys(_host_pattern(n) for n in names))
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts],
    )
    app: ASGIApp = server.streamable_http_app(transport_security=security, host=host, json_response=True)
    return BearerAuth(app, token) if token else app


def run_http(server: Any, host: str, port: int, token: str | None, allow_hosts: Sequence[str] = ()) -> None:
    import uvicorn

    app = http_app(server, host, token, allow_hosts)
    print(f"cxr-auditor: serving MCP over streamable HTTP at http://{host}:{port}/mcp", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
