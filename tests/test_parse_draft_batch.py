"""`parse-draft --batch` writes each reading through pydantic's compiled serialiser: the lines must be
the same JSON as before, UTF-8 whatever the locale, and survive text pydantic cannot encode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.cli import main
from auditor.draft_rules import read_draft
from auditor.schema import DraftReading

DRAFTS = [
    "No pneumothorax. Small left pleural effusion.",
    "Küçük sağ effusion; İ değil.",
    "effusion \ud800 x",
]


def _batch(tmp_path: Path) -> Path:
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps({"id": n, "text": t}) + "\n" for n, t in enumerate(DRAFTS)), encoding="utf-8"
    )
    return src


def test_lines_are_the_readings_behind_their_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse-draft", "--batch", str(_batch(tmp_path))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(DRAFTS)
    for n, (line, text) in enumerate(zip(lines, DRAFTS, strict=True)):
        got = json.loads(line)
        assert got.pop("id") == n
        expected = read_draft(text).model_dump(mode="json")
        got["timings_ms"] = expected["timings_ms"] = {}
        assert got == expected
        if "\ud800" not in text:  # the lone surrogate can only go the escaping way
            DraftReading.model_validate_json(json.dumps(got))


def test_utf8_lines_whatever_the_locale(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "LC_ALL": "C"}
    cmd = [sys.executable, "-m", "mcp_server.cli", "parse-draft", "--batch", str(_batch(tmp_path))]
    done = subprocess.run(cmd, capture_output=True, env=env, check=False, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode("utf-8").splitlines()
    assert [json.loads(line)["draft"] for line in lines] == DRAFTS
