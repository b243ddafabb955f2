"""The scripted-agent examples, run as a user would (`python examples/x.py ...`), each driving a real
`cxr-auditor serve --grounder replay --replay FILE` over stdio, offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import URGENT_PNG

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DRAFT = "Cardiomegaly is present. No pneumothorax."


def run_example(script: str, *args: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert "not a diagnosis" in proc.stderr
    return proc.stdout.splitlines()


def kinds_and_labels(lines: list[str]) -> list[tuple[str, str]]:
    """(kind, label) of each printed flag line: 'KIND label (rule): message'."""
    words = [line.split(" ", 2) for line in lines if not line.startswith("#")]
    return [(w[0], w[1]) for w in words]


def test_three_stages_prints_the_judges_flags(replay_file: Path, nih_images: Path) -> None:
    backend = ["--grounder", "replay", "--replay", str(replay_file), "--reader", "rules"]
    lines = run_example(
        "three_stages.py", "--image", str(nih_images / URGENT_PNG), "--draft", DRAFT, *backend
    )
    assert kinds_and_labels(lines) == [("URGENT", "pneumothorax"), ("MISSING", "pneumothorax")]
    assert lines[0].startswith("URGENT pneumothorax (URGENT.on_image): ")
    assert "second look" in lines[1]

    agreed = run_example(
        "three_stages.py",
        "--image",
        str(nih_images / URGENT_PNG),
        "--draft",
        "Cardiomegaly. Pneumothorax.",
        *backend,
    )
    assert agreed == [line for line in agreed if line.startswith("URGENT")] and len(agreed) == 1


def test_edit_before_compare_drops_the_rejected_finding(replay_file: Path, nih_images: Path) -> None:
    lines = run_example(
        "edit_before_compare.py",
        "--image",
        str(nih_images / URGENT_PNG),
        "--draft",
        DRAFT,
        "--reject",
        "pneumothorax",
        "--grounder",
        "replay",
        "--replay",
        str(replay_file),
    )
    split = lines.index("# flags after the reader rejected: pneumothorax")
    before, after = lines[:split], lines[split + 1 :]
    assert before[0] == "# flags from the models' outputs, unedited"
    assert kinds_and_labels(before) == [("URGENT", "pneumothorax"), ("MISSING", "pneumothorax")]
    assert after == ["no flags"]


def test_a_tool_error_ends_the_script_with_its_message(replay_file: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "three_stages.py"),
            "--image",
            str(tmp_path / "none.png"),
            "--draft",
            DRAFT,
            "--grounder",
            "replay",
            "--replay",
            str(replay_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert "ground_image failed" in proc.stderr and "not_found" in proc.stderr
