"""The MCP Bundle (manifest.json, .mcpbignore): one-click install in Claude Desktop.

The manifest is checked against the code (version, settings, tools) without Node; `mcpb validate`
and `mcpb pack` (npm @anthropic-ai/mcpb, Node 22) run where .ci/run installed them, and the packed
bundle must hold the packages and what builds them, and nothing else (no .venv, .git, caches, data).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from auditor.config import ConfigError, from_env, load_settings
from tests.node_tools import ROOT, missing, node, package_bin
from tests.test_mcp_server import TOOLS

MANIFEST = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
MCPB = "@anthropic-ai/mcpb"
MCPB_DIR = Path(os.environ.get("MCPB_DIR", ROOT / ".ci" / ".mcpb"))
APP_ONLY_TOOLS = {"preview_image"}
"""Tools only the audit viewer calls (MCP Apps visibility "app"): not offered to the model."""
BUNDLED = {"manifest.json", "pyproject.toml", "README.md", "auditor", "mcp_server"}
needs_mcpb = pytest.mark.skipif(missing(MCPB_DIR, MCPB) is not None, reason=str(missing(MCPB_DIR, MCPB)))


def substituted(values: dict[str, Any]) -> dict[str, str]:
    """mcp_config.env as a host fills it in: the defaults, then ``values``; booleans as true/false."""
    config = {k: v.get("default") for k, v in MANIFEST["user_config"].items()} | values

    def text(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    env = MANIFEST["server"]["mcp_config"]["env"]
    return {
        name: re.sub(r"\$\{user_config\.(\w+)\}", lambda m: text(config[m.group(1)]), raw)
        for name, raw in env.items()
    }


def test_manifest_matches_the_package() -> None:
    assert MANIFEST["manifest_version"] == "0.4" and MANIFEST["server"]["type"] == "uv"
    assert MANIFEST["name"] == PYPROJECT["project"]["name"]
    assert MANIFEST["version"] == PYPROJECT["project"]["version"]
    assert MANIFEST["description"] == PYPROJECT["project"]["description"]
    assert MANIFEST["license"] == PYPROJECT["project"]["license"]
    args = MANIFEST["server"]["mcp_config"]["args"]
    assert MANIFEST["server"]["mcp_config"]["command"] == "uv"
    assert args[:3] == ["run", "--directory", "${__dirname}"] and args[-2:] == ["cxr-auditor", "serve"]
    extras = [args[i + 1] for i, a in enumerate(args) if a == "--extra"]
    assert extras and set(extras) <= set(PYPROJECT["project"]["optional-dependencies"])
    assert (ROOT / MANIFEST["server"]["entry_point"]).is_file()
    assert {t["name"] for t in MANIFEST["tools"]} == TOOLS - APP_ONLY_TOOLS


def test_user_config_is_wired_to_known_settings() -> None:
    env = MANIFEST["server"]["mcp_config"]["env"]
    from_env(env)  # raises on a CXR_AUDITOR_* name that is no setting
    used = {m for raw in env.values() for m in re.findall(r"\$\{user_config\.(\w+)\}", raw)}
    assert used == set(MANIFEST["user_config"]), "every option reaches the server, and only those"
    for key, option in MANIFEST["user_config"].items():
        secret = key.endswith(("token", "api_key", "password"))
        assert option.get("sensitive", False) == secret, key
        assert option.get("required") or "default" in option, f"{key}: a host leaves ${{...}} unfilled"


def test_defaults_and_choices_give_valid_settings(tmp_path: Path) -> None:
    settings = load_settings(env=substituted({"image_root": str(tmp_path)}))
    assert (settings.grounder, settings.reader, settings.image_roots) == ("hf", "auto", (tmp_path.resolve(),))
    assert settings.api_key is None and settings.dicomweb_url is None and not settings.allow_download
    engines = {
        "grounder": "http",
        "grounder_url": "http://127.0.0.1:8000/v1",
        "reader": "http",
        "reader_url": "http://127.0.0.1:8001/v1",
        "api_key": "sk-test",
        "dicomweb_url": "https://pacs.example.org/dicom-web",
        "dicomweb_token": "t0k",
        "allow_download": True,
        "image_root": str(tmp_path),
    }
    settings = load_settings(env=substituted(engines))
    assert (settings.grounder_url, settings.reader_url) == (engines["grounder_url"], engines["reader_url"])
    assert settings.dicomweb_token == "t0k" and settings.allow_download
    with pytest.raises(ConfigError, match="grounder 'http' needs a base URL"):
        load_settings(env=substituted({"grounder": "http", "image_root": str(tmp_path)}))


def run_mcpb(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    runner, cli = node(), package_bin(MCPB_DIR, MCPB)
    assert runner is not None and cli is not None
    return subprocess.run(
        [runner, str(cli), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


@needs_mcpb
def test_mcpb_validates_and_packs_only_the_package(tmp_path: Path) -> None:
    checked = run_mcpb("validate", str(ROOT / "manifest.json"), cwd=tmp_path)
    assert checked.returncode == 0 and "passes" in checked.stdout, checked.stdout + checked.stderr
    bundle = tmp_path / "cxr-draft-auditor.mcpb"
    packed = run_mcpb("pack", str(ROOT), str(bundle), cwd=tmp_path)
    assert packed.returncode == 0, packed.stdout + packed.stderr
    names = zipfile.ZipFile(bundle).namelist()
    assert {n.split("/")[0] for n in names} == BUNDLED
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or ".egg-info" in n]
    assert {"auditor/__init__.py", "mcp_server/cli.py", "mcp_server/ui/viewer.html"} <= set(names)
    assert bundle.stat().st_size < 2_000_000, "the large stuff stays out"

    # what the host's `uv run` does first: build the package from the bundle alone
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(bundle).extractall(unpacked)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(unpacked)]
    offline = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    built = subprocess.run([*pip, *offline], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("cxr_draft_auditor-*.whl")
    assert "mcp_server/ui/viewer.html" in zipfile.ZipFile(wheel).namelist()
    shutil.rmtree(unpacked)
