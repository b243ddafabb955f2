#!/usr/bin/env python3
"""A scripted agent: the three stages over MCP, in sequence, untouched, then the judge's flags.

It starts `cxr-auditor serve` as a subprocess and speaks MCP to it over stdio with the official
client, exactly as Claude Desktop would: ground_image -> parse_draft -> compare. Research and
educational QA only: not a medical device, not a diagnosis; a flag asks a person to look again.

Offline, with recorded model outputs (the replay grounder):

    python examples/three_stages.py --image ../shared/data/nih/images/00001369_000.png \
        --draft "Cardiomegaly is present. No pneumothorax." --grounder replay --replay recorded.jsonl
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment

BACKEND_FLAGS = (
    "config",
    "grounder",
    "grounder-model",
    "grounder-url",
    "replay",
    "reader",
    "reader-model",
    "reader-url",
    "device",
)


def server_command() -> list[str]:
    """The `cxr-auditor` installed beside this Python, else on PATH, else the module itself."""
    beside = Path(sys.executable).with_name("cxr-auditor")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("cxr-auditor")
    return [found] if found else [sys.executable, "-m", "mcp_server.cli"]


def server_params(args: argparse.Namespace) -> StdioServerParameters:
    """`cxr-auditor serve` with the backend flags given here; CXR_AUDITOR_* variables pass through."""
    command = shlex.split(args.server) if args.server else server_command()
    argv = [*command[1:], "serve"]
    for flag in BACKEND_FLAGS:
        value = getattr(args, flag.replace("-", "_"))
        if value:
            argv += [f"--{flag}", value]
    env = get_default_environment() | {k: v for k, v in os.environ.items() if k.startswith("CXR_AUDITOR_")}
    return StdioServerParameters(command=command[0], args=argv, env=env)


def image_argument(image: str) -> str:
    """A local file as an absolute path (the server may run elsewhere); URLs and data: as given."""
    path = Path(image).expanduser()
    return str(path.resolve()) if path.is_file() else image


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One tool call; a tool error (bad image, backend down) ends the script with its message."""
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise SystemExit(f"{tool} failed: {text}")
    content: dict[str, Any] = result.structured_content
    return content


async def audit(args: argparse.Namespace) -> list[dict[str, Any]]:
    async with Client(server_params(args)) as client:
        grounding = await call(client, "ground_image", {"image": image_argument(args.image)})
        reading = await call(client, "parse_draft", {"draft": args.draft})
        comparison = await call(client, "compare", {"grounding": grounding, "reading": reading})
    flags: list[dict[str, Any]] = comparison["flags"]
    return flags


def flag_line(flag: dict[str, Any]) -> str:
    return f"{flag['kind']} {flag['label']} ({flag['rule_id']}): {flag['message']}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--image", required=True, help="chest X-ray: path, http(s) URL or data: URI")
    p.add_argument("--draft", required=True, help="the draft impression, verbatim")
    p.add_argument("--server", help="command that starts the server (default: cxr-auditor)")
    for flag in BACKEND_FLAGS:
        p.add_argument(f"--{flag}", help=f"passed to `cxr-auditor serve --{flag}`")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    flags = anyio.run(audit, args)
    print("Research only - not a diagnosis. Each flag asks for a second look.", file=sys.stderr)
    for flag in flags:
        print(flag_line(flag))
    if not flags:
        print("no flags")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
