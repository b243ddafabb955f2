"""The `cxr-auditor` entry point: the library's commands plus `serve`, which lives here so that nothing
under `auditor/` imports the MCP stack. mcp itself is imported only when `serve` runs."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from typing import Any

from auditor import cli
from auditor import cli_common as core
from auditor import cli_flags as flags
from auditor.config import ConfigError


def _build_backends(engine: Any) -> None:
    """Build (not load) both backends now, so a bad replay file, prompt file or device fails before the
    transport opens, with one line, instead of at the first call."""
    settings = engine.settings
    try:
        engine.grounder  # noqa: B018
    except Exception as exc:
        raise core.CliError(f"grounder {settings.grounder!r}: {exc}") from None
    try:
        engine.reader  # noqa: B018
    except Exception as exc:
        raise core.CliError(f"reader {settings.reader!r}: {exc}") from None
    if settings.device == "cuda":
        from auditor.backends.factory import cuda_available

        if not cuda_available():
            raise core.CliError(
                "device 'cuda' was asked for, but torch sees no CUDA device (use auto or cpu)"
            )


def _say_what_cannot_work(engine: Any) -> None:
    """At start, on stderr (the client's log): each configured model missing from this machine, the
    tools it stops and the ways out. The server still starts: other tools, and other clients, work."""
    from auditor.backends.availability import state_problems

    for _, problem in state_problems(engine.models()):
        print(f"cxr-auditor: warning: {problem}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = core.cli_settings(args, {"http_token": args.token} if args.token else None)
    if args.http:
        from mcp_server.serve import check_bind

        try:
            check_bind(args.host, settings.http_token, args.allow_hosts)
        except ConfigError as exc:
            raise core.CliError(str(exc)) from None
    from auditor.pipeline import Auditor
    from mcp_server.app import build_server

    engine = Auditor(settings)
    _build_backends(engine)
    if not args.preload:  # --preload says it itself, as its one error line
        _say_what_cannot_work(engine)
    server = build_server(engine)
    if args.preload:
        from auditor.backends import BackendError

        show = args.progress is not False

        def progress(message: str) -> None:
            if show:
                print(f"cxr-auditor: {message}", file=sys.stderr, flush=True)

        try:
            engine.preload(progress)
        except BackendError as exc:
            raise core.CliError(f"--preload: model backend ({exc.code}): {exc}", core.EXIT_MODEL) from None
    # Everything built so far lives as long as the process: keep it out of the cyclic collector's
    # full passes, which otherwise stall every request in flight for tens to hundreds of ms.
    gc.collect()
    gc.freeze()
    if args.http:
        from mcp_server.serve import run_http

        try:
            run_http(server, args.host, args.port, settings.http_token, args.allow_hosts)
        except ConfigError as exc:
            raise core.CliError(str(exc)) from None
    else:
        server.run("stdio")
    return 0


def register(sub: Any) -> None:
    """Add `serve` to the top-level subparsers, through the same hook as every command module."""
    p = sub.add_parser("serve", help="run the MCP server (stdio by default, --http for streamable HTTP)")
    flags.add_backend_flags(p)
    p.add_argument("--http", action="store_true", help="speak streamable HTTP instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    p.add_argument("--token", help="bearer token required on every HTTP request (env CXR_AUDITOR_HTTP_TOKEN)")
    p.add_argument(
        "--allow-host",
        action="append",
        dest="allow_hosts",
        default=[],
        metavar="NAME",
        help="a host name or address clients use to reach a non-loopback bind (repeatable); the Host and "
        "Origin checks accept loopback and these only",
    )
    p.add_argument("--preload", action="store_true", help="load the models before serving")
    flags.add_progress_flag(p)
    p.set_defaults(func=cmd_serve)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The library's commands and `serve`; with ``argv``, only the named command's module is imported."""
    return cli.build_parser(argv, {"serve": "mcp_server.cli"})


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return core.run(build_parser(argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
