"""The command line's seam: command modules register themselves through one hook, import the shared
helpers and never each other, and only the module of the command asked for is imported."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.cli import COMMANDS
from mcp_server.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMMAND_MODULES = sorted({*COMMANDS.values(), "mcp_server.cli"})
HEAVY = (
    "auditor.batch",
    "auditor.eval.cli",
    "auditor.report_html",
    "auditor.fetch_models",
    "auditor.train.cli",
)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def source(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_command_modules_never_import_each_other(module: str) -> None:
    others = set(COMMAND_MODULES) - {module} - {"auditor.cli"}  # mcp_server.cli builds on auditor.cli
    assert not imported_modules(source(module)) & others
    assert "auditor.cli" not in imported_modules(source(module)) or module == "mcp_server.cli"


def test_the_shared_helpers_import_no_command_module() -> None:
    assert not imported_modules(ROOT / "auditor" / "cli_common.py") & set(COMMAND_MODULES)


def test_every_command_is_registered_through_its_hook() -> None:
    parser = build_parser()
    names = {name for action in parser._subparsers._group_actions for name in action.choices}  # type: ignore[union-attr]
    assert names == {*COMMANDS, "serve"}
    assert "_SubParsersAction" not in (ROOT / "mcp_server" / "cli.py").read_text(encoding="utf-8")


def modules_after(argv: list[str]) -> list[str]:
    """The auditor and mcp_server modules a fresh interpreter has loaded after running ``argv``."""
    code = (
        "import sys; from mcp_server.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(__import__('json').dumps(sorted(m for m in sys.modules if m.startswith(('auditor', 'mcp')))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True, cwd=ROOT
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_parse_draft_imports_no_other_command_module() -> None:
    loaded = modules_after(["parse-draft", "No pleural effusion."])
    assert not [m for m in loaded if m.startswith(HEAVY)], loaded
    assert "mcp" not in loaded and "mcp_server.app" not in loaded


def test_the_help_lists_every_command() -> None:
    loaded = modules_after(["--help"])
    assert {"auditor.batch.command", "auditor.eval.cli", "auditor.fetch_models"} <= set(loaded)
