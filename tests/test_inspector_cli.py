"""An outside client: the official MCP Inspector CLI against `cxr-auditor serve` over stdio.

Needs Node.js and the npm package @modelcontextprotocol/inspector installed in the folder named by
MCP_INSPECTOR_DIR (.ci/run installs it there); skipped with that reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.draft_rules import read_draft
from mcp_server.viewer import PREVIEW_TOOL, VIEWER_TOOLS, VIEWER_URI
from tests.conftest import URGENT_PNG
from tests.test_mcp_server import TOOLS

INSPECTOR_DIR = os.environ.get("MCP_INSPECTOR_DIR", "")
CLI = str(Path(sys.executable).parent / "cxr-auditor")

pytestmark = pytest.mark.skipif(
    not (INSPECTOR_DIR and shutil.which("npx") and (Path(INSPECTOR_DIR) / "node_modules").is_dir()),
    reason="set MCP_INSPECTOR_DIR to a folder holding @modelcontextprotocol/inspector (.ci/run does)",
)


def inspector(replay: Path, *args: str) -> dict[str, object]:
    cmd = [
        "npx",
        "--no-install",
        "@modelcontextprotocol/inspector",
        "--cli",
        CLI,
        "serve",
        "--grounder",
        "replay",
    ]
    cmd += ["--replay", str(replay), *args]
    out = subprocess.run(cmd, cwd=INSPECTOR_DIR, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_inspector_lists_the_tools(replay_file: Path) -> None:
    listed = inspector(replay_file, "--method", "tools/list")
    tools = {t["name"]: t for t in listed["tools"]}  # type: ignore[union-attr, index]
    assert set(tools) == TOOLS
    assert "outputSchema" in tools["compare"]
    # the MCP Apps links: what a host that renders the audit viewer reads
    for name in VIEWER_TOOLS:
        assert tools[name]["_meta"]["ui"] == {"resourceUri": VIEWER_URI}, name  # type: ignore[index]
    assert tools[PREVIEW_TOOL]["_meta"]["ui"]["visibility"] == ["app"]  # type: ignore[index]


def test_inspector_calls_parse_draft_and_compare(replay_file: Path, nih_images: Path) -> None:
    parsed = inspector(
        replay_file,
        "--method",
        "tools/call",
        "--tool-name",
        "parse_draft",
        "--tool-arg",
        "draft=No pneumothorax.",
    )
    reading = parsed["structuredContent"]
    assert {(m["label"], m["status"]) for m in reading["mentions"]} >= {("pneumothorax", "absent")}  # type: ignore[index]

    grounded = inspector(
        replay_file,
        "--method",
        "tools/call",
        "--tool-name",
        "ground_image",
        "--tool-arg",
        f"image={nih_images / URGENT_PNG}",
    )
    grounding = grounded["structuredContent"]
    compared = inspector(
        replay_file,
        "--method",
        "tools/call",
        "--tool-name",
        "compare",
        "--tool-arg",
        f"grounding={json.dumps(grounding)}",
        "--tool-arg",
        f"reading={read_draft('Cardiomegaly. No pneumothorax.').model_dump_json()}",
    )
    flags = compared["structuredContent"]["flags"]  # type: ignore[index]
    assert [(f["kind"], f["label"]) for f in flags] == [
        ("URGENT", "pneumothorax"),
        ("MISSING", "pneumothorax"),
    ]
