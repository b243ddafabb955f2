"""One study from the command line (`ground`, `audit`), every reader kind in `parse-draft`, and the same
flags meaning the same thing in `serve`, `audit-batch`, `audit`, `ground` and the eval runners."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from auditor.cli_flags import settings_from
from auditor.schema import AuditReport, Grounding
from mcp_server.cli import build_parser
from tests.conftest import URGENT_PNG
from tests.test_cli import run_main

SHARED_FLAGS = [
    "--box-order",
    "xyxy",
    "--box-scale",
    "1000",
    "--device",
    "cpu",
    "--dtype",
    "bfloat16",
    "--grounder-dtype",
    "float32",
    "--grounder-max-new-tokens",
    "64",
    "--no-progress",
]
READER_FLAGS = [
    "--reader-dtype",
    "float16",
    "--reader-max-new-tokens",
    "32",
    "--reader-reasoning-budget",
    "8",
    "--no-reader-reasoning",
]


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["audit-batch", "w.csv", "--out", "o"],
        ["audit", "x.png"],
        ["eval", "audit", "--dataset", "nih-bbox:x.csv", "--out", "o", "--reader", "hf"],
    ],
)
def test_the_same_flags_set_the_same_settings(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in __import__("os").environ if n.startswith("CXR_AUDITOR_")]:
        monkeypatch.delenv(name)
    args = parse([*command, *SHARED_FLAGS, *READER_FLAGS])
    s = settings_from(args, {"grounder": None} if command[0] == "eval" else None)  # as eval does for oracle
    assert (s.box_order, s.box_scale, s.device, s.dtype, s.grounder_dtype) == (
        "xyxy",
        1000.0,
        "cpu",
        "bfloat16",
        "float32",
    )
    assert (s.grounder_max_new_tokens, s.reader_dtype, s.reader_max_new_tokens) == (64, "float16", 32)
    assert (s.reader_reasoning_budget, s.reader_reasoning) == (8, False)
    assert args.progress is False


def test_ground_takes_the_image_model_flags() -> None:
    args = parse(["ground", "x.png", "--grounder-dtype", "float16", "--grounder-max-new-tokens", "9"])
    s = settings_from(args)
    assert (s.grounder_dtype, s.grounder_max_new_tokens) == ("float16", 9)


def test_device_and_dtype_choices_are_checked_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["serve"], ["audit", "x.png"], ["eval", "grounding", "--dataset", "d", "--out", "o"]):
        code, _, err = run_main([*command, "--device", "tpu"], capsys)
        assert code == 2 and "invalid choice: 'tpu'" in err and err.count("\n") == 1


def test_bare_command_prints_help_without_developer_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main([], capsys)
    assert code == 0 and "usage: cxr-auditor" in out
    for command in ("audit", "ground", "parse-draft", "fetch-models", "audit-batch"):
        assert f"    {command}" in out, command
    assert "schema" not in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import auditor

    code, out, _ = run_main(["--version"], capsys)
    assert code == 0 and out.strip() == f"cxr-auditor {auditor.__version__}"


def test_age_years_and_any_case_view_in_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grounding = tmp_path / "g.json"
    grounding.write_text(
        json.dumps({"findings": [], "outcome": "clean", "model": {"backend": "test", "model_id": "t"}}),
        encoding="utf-8",
    )
    code, out, err = run_main(
        ["compare", "--grounding", str(grounding), "--age-years", "7", "--view", "ap"], capsys
    )
    assert code == 0, err
    codes = {n["code"] for n in json.loads(out)["notes"]}
    assert {"pediatric_caution", "ap_view_heart_size"} <= codes
    code, out, err = run_main(["compare", "--grounding", str(grounding), "--age", "7"], capsys)
    assert code == 0, err


# --- one study: ground and audit ---------------------------------------------------------------------


def test_ground_one_image(replay_file: Path, nih_images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = str(nih_images / URGENT_PNG)
    code, out, err = run_main(["ground", image, "--grounder", "replay", "--replay", str(replay_file)], capsys)
    assert code == 0, err
    grounding = Grounding.model_validate_json(out)
    assert {f.label.value for f in grounding.findings} == {"pneumothorax", "cardiomegaly"}


def test_audit_one_image_and_draft(
    replay_file: Path, nih_images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "audit",
        str(nih_images / URGENT_PNG),
        "--draft",
        "Cardiomegaly. No pneumothorax.",
        "--view",
        "AP",
        "--age-years",
        "70",
        "--grounder",
        "replay",
        "--replay",
        str(replay_file),
        "--reader",
        "rules",
        "--progress",
    ]
    code, out, err = run_main(argv, capsys)
    assert code == 0, err
    report = AuditReport.model_validate_json(out)
    assert report.context is not None and report.context.view == "AP"
    assert [(f.kind, f.label.value) for f in report.comparison.flags][:2] == [
        ("URGENT", "pneumothorax"),
        ("MISSING", "pneumothorax"),
    ]
    assert "cxr-auditor: grounding the image" in err


def test_audit_of_a_missing_image_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    replay = tmp_path / "r.jsonl"
    replay.write_text("", encoding="utf-8")
    missing = tmp_path / "none.png"
    code, out, err = run_main(
        ["audit", str(missing), "--grounder", "replay", "--replay", str(replay)], capsys
    )
    assert code == 2 and out == "" and err.count("\n") == 1 and str(missing) in err


# --- parse-draft takes every reader kind -------------------------------------------------------------


def test_parse_draft_rules_and_auto_agree(capsys: pytest.CaptureFixture[str]) -> None:
    outs = []
    for kind in ("rules", "auto"):
        code, out, err = run_main(
            ["parse-draft", "--reader", kind, "--device", "cpu", "No effusion."], capsys
        )
        assert code == 0, err
        outs.append(json.loads(out)["mentions"])
    assert outs[0] == outs[1]


def test_parse_draft_hf_without_weights_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-reader-here"
    argv = ["parse-draft", "--reader", "hf", "--reader-model", str(missing), "No effusion."]
    code, out, err = run_main(argv, capsys)
    assert code == 3 and out == "" and err.count("\n") == 1
    assert "model backend (load_failed)" in err and "does not exist" in err and "--reader rules" in err


def test_parse_draft_http_reader_is_built_and_used(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("httpx")
    monkeypatch.setenv("CXR_AUDITOR_ENGINE_RETRIES", "0")
    monkeypatch.setenv("CXR_AUDITOR_ENGINE_TIMEOUT_S", "2")
    argv = ["parse-draft", "--reader", "http", "--reader-url", "http://127.0.0.1:9/v1", "No effusion."]
    code, out, err = run_main(argv, capsys)
    assert code == 3 and out == "" and err.count("\n") == 1
    assert "model backend (engine_" in err


def test_replay_record_builds_a_file_the_replay_grounder_reads(
    tmp_path: Path, nih_images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = nih_images / URGENT_PNG
    replay = tmp_path / "recorded.jsonl"
    raw = '[{"label": "pneumothorax", "box_2d": [0.1, 0.55, 0.45, 0.9]}]'
    code, _, err = run_main(["replay-record", str(replay), "--image", str(image), "--raw", raw], capsys)
    assert code == 0, err
    assert "clean, findings: pneumothorax" in err
    code, _, err = run_main(["replay-record", str(replay), "--image", str(image), "--raw", "[]"], capsys)
    assert code == 2 and "--replace" in err
    code, out, err = run_main(["ground", str(image), "--grounder", "replay", "--replay", str(replay)], capsys)
    assert code == 0, err
    assert [f.label.value for f in Grounding.model_validate_json(out).findings] == ["pneumothorax"]
