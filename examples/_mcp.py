"""What the example agents share: starting `cxr-auditor serve` over stdio, calling a tool, and printing
a comparison honestly (its mode and notes, so a check that did not happen never reads as "no flags").

Not a script: `three_stages.py` and `edit_before_compare.py` import it from beside themselves.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment

DISCLAIMER: Final = "Research only - not a diagnosis. Each flag asks for a second look."
BACKEND_FLAGS: Final = (
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
DEGRADED: Final = frozenset(
    {"image_stage_failed", "no_draft_image_only", "draft_unparsed_image_only", "draft_empty_image_only"}
)
"""The note codes that say why a comparison was partial (mode ``no_image`` or ``image_only``)."""
PASSED_ENV: Final = ("CXR_AUDITOR_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_")
"""The server's own settings and the Hugging Face ones (HF_HOME, HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE):
the MCP client passes only a minimal environment on, and without these the server would look for the
model weights in another cache, or without the token a gated model needs."""


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """--image, --draft, --server and the server's backend flags."""
    p.add_argument("--image", required=True, help="chest X-ray: path, http(s) URL or data: URI")
    p.add_argument("--draft", required=True, help="the draft impression, verbatim")
    p.add_argument("--server", help="command that starts the server (default: cxr-auditor)")
    for flag in BACKEND_FLAGS:
        p.add_argument(f"--{flag}", help=f"passed to `cxr-auditor serve --{flag}`")


def server_command() -> list[str]:
    """The `cxr-auditor` installed beside this Python, else on PATH, else the module itself."""
    beside = Path(sys.executable).with_name("cxr-auditor")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("cxr-auditor")
    return [found] if found else [sys.executable, "-m", "mcp_server.cli"]


def server_params(args: argparse.Namespace) -> StdioServerParameters:
    """`cxr-auditor serve` with the backend flags given here; CXR_AUDITOR_* and the Hugging Face
    variables pass through."""
    command = shlex.split(args.server) if args.server else server_command()
    argv = [*command[1:], "serve"]
    for flag in BACKEND_FLAGS:
        value = getattr(args, flag.replace("-", "_"))
        if value:
            argv += [f"--{flag}", value]
    env = get_default_environment() | {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)}
    return StdioServerParameters(command=command[0], args=argv, env=env)


def image_argument(image: str) -> str:
    """A local file as an absolute path (the server may run elsewhere); URLs and data: as given."""
    path = Path(image).expanduser()
    return str(path.resolve()) if path.is_file() else image


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One tool call; a tool error (bad image, backend down, malformed edit) ends the script with
    its message."""
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise SystemExit(f"{tool} failed: {text}")
    content: dict[str, Any] = result.structured_content
    return content


def flag_line(flag: Mapping[str, Any]) -> str:
    return f"{flag['kind']} {flag['label']} ({flag['rule_id']}): {flag['message']}"


def comparison_lines(comparison: Mapping[str, Any], *inputs: Mapping[str, Any]) -> list[str]:
    """``mode: ...``; for a partial check, the notes that say what was not checked; one line per
    flag ("no flags" only after a full comparison); then the code of every note of the comparison
    and of ``inputs`` (the ground_image / parse_draft outputs it was made from)."""
    mode = comparison["mode"]
    lines = [f"mode: {mode}"]
    if mode != "full":
        why = [n for n in comparison["notes"] if n["code"] in DEGRADED]
        lines += [f"{n['code']}: {n['message']}" for n in why] or [
            f"partial check ({mode}): not a clean result; review the study without the tool."
        ]
    lines += [flag_line(f) for f in comparison["flags"]]
    if mode == "full" and not comparison["flags"]:
        lines.append("no flags")
    codes = [n["code"] for part in (*inputs, comparison) for n in part.get("notes", [])]
    if codes:
        lines.append(f"notes: {', '.join(codes)}")
    return lines
