#!/usr/bin/env python3
"""A scripted agent that edits a stage's output before the judge sees it: why the stages are separate.

The image model marked something the reader has looked at and rejected. Rather than re-run the
models, the agent removes that finding from ground_image's output (and says so in a note), then calls
compare again. compare is pure and cheap, so a person's corrections can be folded in at once and the
remaining flags re-judged. Research and educational QA only: not a medical device, not a diagnosis.

Offline, with recorded model outputs (the replay grounder):

    python examples/edit_before_compare.py --image ../shared/data/nih/images/00001369_000.png \
        --draft "Cardiomegaly is present. No pneumothorax." --reject pneumothorax \
        --grounder replay --replay recorded.jsonl
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
    """One tool call; a tool error (bad image, malformed edit) ends the script with its message."""
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise SystemExit(f"{tool} failed: {text}")
    content: dict[str, Any] = result.structured_content
    return content


def reject(grounding: dict[str, Any], labels: Sequence[str]) -> dict[str, Any]:
    """The grounding without the rejected findings, with a note so the edit stays visible."""
    kept = [f for f in grounding["findings"] if f["label"] not in labels]
    note = {
        "stage": "image",
        "code": "finding_rejected_by_reader",
        "message": f"Removed by the reader before comparison: {', '.join(labels)}.",
    }
    return {**grounding, "findings": kept, "notes": [*grounding.get("notes", []), note]}


async def audit(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(flags as the models saw it, flags after the reader's edit)."""
    async with Client(server_params(args)) as client:
        grounding = await call(client, "ground_image", {"image": image_argument(args.image)})
        reading = await call(client, "parse_draft", {"draft": args.draft})
        before = await call(client, "compare", {"grounding": grounding, "reading": reading})
        edited = reject(grounding, args.reject)
        after = await call(client, "compare", {"grounding": edited, "reading": reading})
    return before["flags"], after["flags"]


def print_flags(title: str, flags: Sequence[dict[str, Any]]) -> None:
    print(f"# {title}")
    for flag in flags:
        print(f"{flag['kind']} {flag['label']} ({flag['rule_id']}): {flag['message']}")
    if not flags:
        print("no flags")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--image", required=True, help="chest X-ray: path, http(s) URL or data: URI")
    p.add_argument("--draft", required=True, help="the draft impression, verbatim")
    p.add_argument(
        "--reject",
        action="append",
        required=True,
        metavar="LABEL",
        help="an image finding the reader rejected, e.g. pneumothorax (repeatable)",
    )
    p.add_argument("--server", help="command that starts the server (default: cxr-auditor)")
    for flag in BACKEND_FLAGS:
        p.add_argument(f"--{flag}", help=f"passed to `cxr-auditor serve --{flag}`")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    before, after = anyio.run(audit, args)
    print("Research only - not a diagnosis. Each flag asks for a second look.", file=sys.stderr)
    print_flags("flags from the models' outputs, unedited", before)
    print_flags(f"flags after the reader rejected: {', '.join(args.reject)}", after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
