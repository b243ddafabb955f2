"""Node.js 22 and the official npm tools the tests drive (the MCP conformance suite, mcpb), found where
.ci/run installs them (git-ignored folders under .ci/) or where environment variables say; when one is
missing the test skips and the reason says how to install it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE_MAJOR = 22
NODE_HOME = ROOT / ".ci" / ".node"
"""`npm install --prefix .ci/.node node@22`: the npm package ships the binary."""


def _major(node: str) -> int:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    found = re.match(r"v(\d+)\.", out.strip())
    return int(found.group(1)) if found else 0


def node() -> str | None:
    """A Node.js of at least version 22: $MCP_NODE, then .ci/.node, then the one on PATH."""
    local = NODE_HOME / "node_modules" / ".bin" / "node"
    for candidate in (os.environ.get("MCP_NODE"), str(local), shutil.which("node")):
        if candidate and _major(candidate) >= NODE_MAJOR:
            return candidate
    return None


def package_bin(folder: Path, package: str) -> Path | None:
    """The JavaScript file behind ``package``'s command, installed under ``folder`` (None if absent)."""
    home = folder / "node_modules" / package
    try:
        bins = json.loads((home / "package.json").read_text(encoding="utf-8"))["bin"]
    except (OSError, ValueError, KeyError):
        return None
    entry = bins if isinstance(bins, str) else next(iter(bins.values()), None)
    return home / entry if entry and (home / entry).is_file() else None


def missing(folder: Path, package: str) -> str | None:
    """Why a test of ``package`` cannot run here (None when Node 22 and the package are installed)."""
    if node() is None:
        return (
            f"no Node.js >= {NODE_MAJOR} (set MCP_NODE, or `npm install --prefix .ci/.node node@22`; "
            ".ci/run does)"
        )
    if package_bin(folder, package) is None:
        how = f"npm install --prefix {folder} {package}"
        return f"{package} is not installed under {folder} ({how}; .ci/run does)"
    return None
