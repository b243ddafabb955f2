"""A disk that cannot be written: every command that writes says so in one line (exit 2), never a
traceback, and keeps what it had already written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).parent / "cxr-auditor")
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def one_error_line(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cxr-auditor: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture()
def blocked(tmp_path: Path) -> Path:
    """A path under a regular file: no folder can be made there, even by root."""
    (tmp_path / "a-file").write_text("x")
    return tmp_path / "a-file" / "out"


def test_parse_draft_batch_to_a_full_disk(tmp_path: Path) -> None:
    batch = tmp_path / "in.jsonl"
    batch.write_text(json.dumps({"id": "a", "text": "No effusion."}) + "\n")
    one_error_line(run("parse-draft", "--batch", str(batch), "--out", "/dev/full"), "/dev/full", "No space")


def test_parse_draft_batch_to_an_impossible_path(tmp_path: Path, blocked: Path) -> None:
    batch = tmp_path / "in.jsonl"
    batch.write_text(json.dumps({"id": "a", "text": "No effusion."}) + "\n")
    one_error_line(run("parse-draft", "--batch", str(batch), "--out", str(blocked)), str(blocked))


def test_schema_write_to_an_impossible_folder(blocked: Path) -> None:
    one_error_line(run("schema", "--write", "--dir", str(blocked)), str(blocked))


@pytest.mark.skipif(not (SHARED / "openi" / "openi_dev.csv").is_file(), reason="shared Open-i data absent")
def test_eval_reader_to_an_impossible_folder(blocked: Path) -> None:
    one_error_line(
        run(
            "eval",
            "reader",
            "--dataset",
            f"openi:{SHARED / 'openi' / 'openi_dev.csv'}",
            "--out",
            str(blocked),
        )
    )


@pytest.mark.skipif(not (SHARED / "nih" / "BBox_List_2017.csv").is_file(), reason="shared NIH data absent")
def test_eval_audit_to_an_impossible_folder(blocked: Path) -> None:
    dataset = f"nih-bbox:{SHARED / 'nih' / 'BBox_List_2017.csv'}"
    proc = run("eval", "audit", "--dataset", dataset, "--grounder", "oracle", "--out", str(blocked))
    one_error_line(proc, str(blocked))


def test_audit_batch_to_an_impossible_folder(
    tmp_path: Path, blocked: Path, replay_file: Path, nih_images: Path
) -> None:
    worklist = tmp_path / "w.csv"
    worklist.write_text(f"id,image,draft\na,{nih_images / '00001369_000.png'},No effusion.\n")
    proc = run(
        "audit-batch",
        str(worklist),
        "--out",
        str(blocked),
        "--grounder",
        "replay",
        "--replay",
        str(replay_file),
    )
    one_error_line(proc, str(blocked))
