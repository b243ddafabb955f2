"""The scripted-agent examples, run as a user would (`python examples/x.py ...`), each driving a real
`cxr-auditor serve --grounder replay --replay FILE` over stdio, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import URGENT_PNG, sha256_of

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


KINDS = ("URGENT", "MISSING", "UNSUPPORTED")


def flag_lines(lines: list[str]) -> list[str]:
    """The printed flag lines: 'KIND label (rule): message'."""
    return [line for line in lines if line.split(" ", 1)[0] in KINDS]


def kinds_and_labels(lines: list[str]) -> list[tuple[str, str]]:
    """(kind, label) of each printed flag line."""
    words = [line.split(" ", 2) for line in flag_lines(lines)]
    return [(w[0], w[1]) for w in words]


def test_three_stages_prints_the_judges_flags(replay_file: Path, nih_images: Path) -> None:
    backend = ["--grounder", "replay", "--replay", str(replay_file), "--reader", "rules"]
    lines = run_example(
        "three_stages.py", "--image", str(nih_images / URGENT_PNG), "--draft", DRAFT, *backend
    )
    assert lines[0] == "mode: full"
    assert kinds_and_labels(lines) == [("URGENT", "pneumothorax"), ("MISSING", "pneumothorax")]
    assert lines[1].startswith("URGENT pneumothorax (URGENT.on_image): ")
    assert "second look" in lines[2]
    assert lines[-1] == "notes: image_converted" and "no flags" not in lines

    agreed = run_example(
        "three_stages.py",
        "--image",
        str(nih_images / URGENT_PNG),
        "--draft",
        "Cardiomegaly. Pneumothorax.",
        *backend,
    )
    assert kinds_and_labels(agreed) == [("URGENT", "pneumothorax")]


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
    assert before[:2] == ["# flags from the models' outputs, unedited", "mode: full"]
    assert kinds_and_labels(before) == [("URGENT", "pneumothorax"), ("MISSING", "pneumothorax")]
    # the judge's own note says the grounding it judged was edited (item: edits leave a trace)
    assert after == [
        "mode: full",
        "no flags",
        "notes: image_converted, finding_rejected_by_reader, grounding_edited",
    ]


def garbage_replay(tmp_path: Path, image: Path) -> Path:
    """A recorded generation that is no answer at all: the image stage fails."""
    path = tmp_path / "refusal.jsonl"
    record = {"image_sha256": sha256_of(image), "raw_output": "I cannot help with that."}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return path


def test_a_failed_image_stage_is_not_printed_as_no_flags(tmp_path: Path, nih_images: Path) -> None:
    image = nih_images / URGENT_PNG
    replay = ["--grounder", "replay", "--replay", str(garbage_replay(tmp_path, image)), "--reader", "rules"]
    lines = run_example("three_stages.py", "--image", str(image), "--draft", DRAFT, *replay)
    assert "no flags" not in lines and flag_lines(lines) == []
    assert lines[0] == "mode: no_image"
    assert lines[1].startswith("image_stage_failed: ") and "not a clean result" in lines[1]
    assert lines[-1] == "notes: image_converted, output_unparseable, image_stage_failed"

    edited = run_example(
        "edit_before_compare.py", "--image", str(image), "--draft", DRAFT, "--reject", "nodule_mass", *replay
    )
    assert "no flags" not in edited
    assert edited.count("mode: no_image") == 2
    assert sum(line.startswith("image_stage_failed: ") for line in edited) == 2
    assert (
        edited[-1]
        == "notes: image_converted, output_unparseable, finding_rejected_by_reader, image_stage_failed"
    )


def test_an_image_only_pass_says_what_was_not_checked(replay_file: Path, nih_images: Path) -> None:
    backend = ["--grounder", "replay", "--replay", str(replay_file), "--reader", "rules"]
    lines = run_example("three_stages.py", "--image", str(nih_images / URGENT_PNG), "--draft", "", *backend)
    assert lines[0] == "mode: image_only"
    assert any(line.endswith("MISSING and UNSUPPORTED were not checked.") for line in lines[1:2])
    assert kinds_and_labels(lines) == [("URGENT", "pneumothorax")]
    assert "no flags" not in lines


def test_the_scripts_run_from_any_folder_with_a_safe_path(
    replay_file: Path, nih_images: Path, tmp_path: Path
) -> None:
    """`python -P` (no script folder on sys.path) from another cwd still finds _mcp.py beside them."""
    proc = subprocess.run(
        [
            sys.executable,
            "-P",
            str(EXAMPLES / "three_stages.py"),
            "--image",
            str(nih_images / URGENT_PNG),
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
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "mode: full"


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


def test_the_server_gets_the_hugging_face_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without HF_HOME / HF_HUB_CACHE / HF_TOKEN the server would miss the weights fetched beforehand."""
    import argparse

    monkeypatch.syspath_prepend(str(EXAMPLES))
    import _mcp

    for name, value in {
        "HF_HOME": str(tmp_path),
        "HF_TOKEN": "hf_x",
        "HF_HUB_OFFLINE": "1",
        "CXR_AUDITOR_DEVICE": "cpu",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("UNRELATED_SECRET", "no")
    args = argparse.Namespace(server=None, **{f.replace("-", "_"): None for f in _mcp.BACKEND_FLAGS})
    env = _mcp.server_params(args).env or {}
    assert {"HF_HOME", "HF_TOKEN", "HF_HUB_OFFLINE", "CXR_AUDITOR_DEVICE"} <= set(env)
    assert "UNRELATED_SECRET" not in env
