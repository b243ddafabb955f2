"""The `cxr-auditor` command: in-process through main(), and once or twice as the installed script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.labels import Label
from auditor.schema import Box, Comparison, DraftReading, Grounding, ImageFinding, ModelInfo, ParseOutcome
from auditor.tool_io import MAX_DRAFT_CHARS, tool_schemas
from mcp_server.cli import main  # the installed entry point: every command, `serve` included

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "cxr-auditor"
DRAFT = "Cardiomegaly is present. No pneumothorax."
MODEL = ModelInfo(backend="test", model_id="test-model")


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The installed main() in-process: (exit code, stdout, stderr); a SystemExit becomes its code."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_bad_input(code: int, err: str, *names: str) -> None:
    assert code == 2, f"expected exit 2, got {code}; stderr={err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines}"
    assert lines[0].startswith("cxr-auditor: error:"), lines[0]
    for name in names:
        assert name in lines[0], f"{name!r} not named in {lines[0]!r}"


def mentions(reading: dict[str, object]) -> list[tuple[str, str, str, int, int]]:
    return [(m["label"], m["status"], m["span"], m["start"], m["end"]) for m in reading["mentions"]]  # type: ignore[index,union-attr]


# --- parse-draft ------------------------------------------------------------------------------------------

EXPECTED_MENTIONS = [
    ("cardiomegaly", "present", "Cardiomegaly", 0, 12),
    ("pneumothorax", "absent", "pneumothorax", 28, 40),
]


def test_parse_draft_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["parse-draft", DRAFT], capsys)
    assert code == 0, err
    reading = DraftReading.model_validate_json(out)  # also re-checks every span against the draft
    assert reading.draft == DRAFT
    assert mentions(json.loads(out)) == EXPECTED_MENTIONS


def test_parse_draft_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "draft.txt"
    path.write_text(DRAFT, encoding="utf-8")
    code, out, err = run_main(["parse-draft", "--file", str(path)], capsys)
    assert code == 0, err
    assert mentions(json.loads(out)) == EXPECTED_MENTIONS


def test_parse_draft_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.txt"
    code, _, err = run_main(["parse-draft", "--file", str(path)], capsys)
    assert_bad_input(code, err, str(path))


def test_parse_draft_nothing_given(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["parse-draft"], capsys)
    assert_bad_input(code, err)


@pytest.mark.parametrize("via_file", [False, True], ids=["text", "file"])
def test_parse_draft_too_long(via_file: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "No pneumothorax. " * (MAX_DRAFT_CHARS // 17 + 2)
    assert len(text) > MAX_DRAFT_CHARS
    argv = ["parse-draft", text]
    if via_file:
        path = tmp_path / "long.txt"
        path.write_text(text, encoding="utf-8")
        argv = ["parse-draft", "--file", str(path)]
    code, out, err = run_main(argv, capsys)
    assert_bad_input(code, err, "too long")
    assert out == ""


def test_parse_draft_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        json.dumps({"id": "good", "text": DRAFT}),
        '{"id": "broken", "text": ',
        json.dumps({"id": "no-text"}),
        "",
        json.dumps(["not", "an", "object"]),
        json.dumps({"id": 7, "text": "Possible small left effusion."}),
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = run_main(["parse-draft", "--batch", str(path)], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(lines), "exactly one output line per input line"

    good, broken, no_text, blank, not_object, last = rows
    assert good["id"] == "good"
    assert "error" not in good
    assert mentions(good) == EXPECTED_MENTIONS
    assert isinstance(good["notes"], list)
    assert good["draft"] == DRAFT

    assert set(broken) == {"id", "error"} and broken["id"] is None
    assert "line 2" in broken["error"] and "JSON" in broken["error"]
    assert no_text == {"id": "no-text", "error": no_text["error"]}
    assert "line 3" in no_text["error"] and "text" in no_text["error"]
    assert set(blank) == {"id", "error"} and "line 4" in blank["error"]
    assert set(not_object) == {"id", "error"} and "line 5" in not_object["error"]

    assert last["id"] == 7
    assert [(m["label"], m["status"]) for m in last["mentions"]] == [("pleural_effusion", "uncertain")]
    assert "notes" in last


def test_parse_draft_batch_to_out_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "text": DRAFT}) + "\n" + "oops\n", encoding="utf-8")
    dest = tmp_path / "out.jsonl"
    code, out, err = run_main(["parse-draft", "--batch", str(src), "--out", str(dest)], capsys)
    assert code == 0, err
    assert out == ""
    rows = [json.loads(line) for line in dest.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a", None]
    assert "error" in rows[1]


def test_parse_draft_batch_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "none.jsonl"
    code, _, err = run_main(["parse-draft", "--batch", str(path)], capsys)
    assert_bad_input(code, err, str(path))


def test_parse_draft_unknown_reader(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["parse-draft", "--reader", "crystal-ball", DRAFT], capsys)
    assert_bad_input(code, err, "crystal-ball")


# --- compare ----------------------------------------------------------------------------------------------


@pytest.fixture
def stage_files(tmp_path: Path) -> tuple[Path, Path]:
    grounding = Grounding(
        findings=[
            ImageFinding(label=Label.PNEUMOTHORAX, box=Box(x0=0.1, y0=0.05, x1=0.45, y1=0.5)),
            ImageFinding(label=Label.CARDIOMEGALY, box=Box(x0=0.3, y0=0.4, x1=0.75, y1=0.85)),
        ],
        outcome=ParseOutcome.CLEAN,
        model=MODEL,
    )
    from auditor.draft_rules import read_draft

    reading = DraftReading.model_validate(read_draft(DRAFT).model_dump())
    g, r = tmp_path / "grounding.json", tmp_path / "reading.json"
    g.write_text(grounding.model_dump_json(indent=2), encoding="utf-8")
    r.write_text(reading.model_dump_json(indent=2), encoding="utf-8")
    return g, r


def test_compare_prints_a_comparison(
    stage_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    g, r = stage_files
    code, out, err = run_main(["compare", "--grounding", str(g), "--reading", str(r)], capsys)
    assert code == 0, err
    c = Comparison.model_validate_json(out)
    assert c.mode == "full"
    assert [(f.kind, f.label.value) for f in c.flags] == [
        ("URGENT", "pneumothorax"),
        ("MISSING", "pneumothorax"),
    ]
    assert c.flags[1].draft_status == "denied"


def test_compare_image_only_with_age(
    stage_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    g, _ = stage_files
    code, out, err = run_main(["compare", "--grounding", str(g), "--age", "7"], capsys)
    assert code == 0, err
    c = Comparison.model_validate_json(out)
    assert c.mode == "image_only"
    codes = [n.code for n in c.notes]
    assert "pediatric_caution" in codes and "no_draft_image_only" in codes
    assert [f.kind for f in c.flags] == ["URGENT"]


def test_compare_ap_view(stage_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    g, r = stage_files
    code, out, err = run_main(["compare", "--grounding", str(g), "--reading", str(r), "--view", "AP"], capsys)
    assert code == 0, err
    assert [n.code for n in Comparison.model_validate_json(out).notes] == ["ap_view_heart_size"]


def test_compare_bad_age(stage_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    g, _ = stage_files
    code, _, err = run_main(["compare", "--grounding", str(g), "--age", "200"], capsys)
    assert_bad_input(code, err, "study context")


def test_compare_missing_file(stage_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, r = stage_files
    missing = r.parent / "missing.json"
    code, out, err = run_main(["compare", "--grounding", str(missing), "--reading", str(r)], capsys)
    assert_bad_input(code, err, str(missing))
    assert out == ""


@pytest.mark.parametrize("which", ["grounding", "reading"])
def test_compare_invalid_json(
    which: str, stage_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    g, r = stage_files
    bad = g if which == "grounding" else r
    bad.write_text('{"findings": [', encoding="utf-8")
    code, _, err = run_main(["compare", "--grounding", str(g), "--reading", str(r)], capsys)
    assert_bad_input(code, err, str(bad), "invalid JSON")


@pytest.mark.parametrize(
    ("which", "payload", "what"),
    [
        ("grounding", {"findings": "none", "outcome": "clean"}, "Grounding"),
        ("grounding", [1, 2, 3], "Grounding"),
        (
            "grounding",
            {"findings": [], "outcome": "clean", "model": {"backend": "x", "model_id": "y"}, "z": 1},
            "",
        ),
        ("reading", {"draft": "abc", "mentions": [], "outcome": "clean"}, "DraftReading"),
        (
            "reading",
            {
                "draft": "No effusion.",
                "mentions": [
                    {
                        "label": "pleural_effusion",
                        "status": "absent",
                        "span": "effusion",
                        "start": 0,
                        "end": 8,
                    }
                ],
                "outcome": "clean",
                "model": {"backend": "x", "model_id": "y"},
            },
            "DraftReading",
        ),
    ],
    ids=["findings-not-list", "not-object", "extra-field", "reading-no-model", "reading-span-not-verbatim"],
)
def test_compare_wrong_shape(
    which: str, payload: object, what: str, stage_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    g, r = stage_files
    bad = g if which == "grounding" else r
    bad.write_text(json.dumps(payload), encoding="utf-8")
    code, _, err = run_main(["compare", "--grounding", str(g), "--reading", str(r)], capsys)
    assert_bad_input(code, err, str(bad), what)


# --- schema -----------------------------------------------------------------------------------------------


@pytest.fixture
def schema_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = tmp_path / "tools_schema"
    code, _, err = run_main(["schema", "--write", "--dir", str(folder)], capsys)
    assert code == 0, err
    return folder


def test_schema_write_then_check(schema_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sorted(p.name for p in schema_dir.glob("*.json")) == sorted(tool_schemas())
    code, _, err = run_main(["schema", "--check", "--dir", str(schema_dir)], capsys)
    assert code == 0, err


def test_schema_check_repo_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The checked-in tools_schema/ matches the contracts (generated in a tmp dir until it is checked in)."""
    folder = REPO / "tools_schema"
    if not any(folder.glob("*.json")):
        folder = tmp_path / "generated"
        assert run_main(["schema", "--write", "--dir", str(folder)], capsys)[0] == 0
    code, _, err = run_main(["schema", "--check", "--dir", str(folder)], capsys)
    assert code == 0, f"tools_schema drifted from the contracts:\n{err}"


def test_schema_check_modified_file(schema_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = schema_dir / "compare.output.json"
    data = json.loads(target.read_text(encoding="utf-8"))
    data["title"] = "Tampered"
    target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    code, _, err = run_main(["schema", "--check", "--dir", str(schema_dir)], capsys)
    assert code == 1
    drift = [line for line in err.splitlines() if "schema drift" in line]
    assert len(drift) == 1 and "compare.output.json" in drift[0], err


def test_schema_check_extra_file(schema_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (schema_dir / "stale_tool.input.json").write_text("{}\n", encoding="utf-8")
    code, _, err = run_main(["schema", "--check", "--dir", str(schema_dir)], capsys)
    assert code == 1
    assert "stale_tool.input.json" in err


def test_schema_check_missing_file(schema_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (schema_dir / "audit.input.json").unlink()
    code, _, err = run_main(["schema", "--check", "--dir", str(schema_dir)], capsys)
    assert code == 1
    assert "audit.input.json" in err


# --- eval reader ------------------------------------------------------------------------------------------

CSV_HEADER = (
    "uid,text,pleural_effusion,pneumothorax,lung_opacity_consolidation,nodule_mass,cardiomegaly,no_finding\n"
)
CSV_ROWS = [
    '1,"Cardiomegaly is present. No pneumothorax.",0,0,0,0,1,0\n',
    '2,"No acute cardiopulmonary abnormality.",0,0,0,0,0,1\n',
    '3,"Small left pleural effusion.",1,,0,0,0,0\n',  # blank pneumothorax cell: ambiguous, excluded
    '4,"",0,0,0,0,0,1\n',  # empty report: the reader fails, and it is counted, not skipped
]


def test_eval_reader_writes_metrics_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = tmp_path / "openi.csv"
    csv_path.write_text(CSV_HEADER + "".join(CSV_ROWS), encoding="utf-8")
    out_dir = tmp_path / "run"
    code, out, err = run_main(
        ["eval", "reader", "--dataset", f"openi:{csv_path}", "--out", str(out_dir)], capsys
    )
    assert code == 0, err
    metrics = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    integrity = metrics["integrity"]
    assert integrity["total"] == len(CSV_ROWS)
    assert integrity["clean"] + integrity["recovered"] + integrity["failed"] == integrity["total"]
    assert integrity["failed"] == 1
    assert [f["id"] for f in metrics["failures"]] == ["4"]
    assert metrics["labels"]["pneumothorax"]["excluded"] == 1
    assert metrics["labels"]["cardiomegaly"]["tp"] == 1
    assert set(metrics["labels"]) == {lb.value for lb in Label}
    report = (out_dir / "report.md").read_text(encoding="utf-8")
    assert "macro-F1" in report and f"{len(CSV_ROWS)} reports" in report
    assert json.loads(out)["integrity"] == integrity


def test_eval_reader_bad_gold_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = tmp_path / "openi.csv"
    rows = [*CSV_ROWS[:2], '3,"Small left pleural effusion.",x,0,0,0,0,0\n']
    csv_path.write_text(CSV_HEADER + "".join(rows), encoding="utf-8")
    out_dir = tmp_path / "run"
    code, _, err = run_main(
        ["eval", "reader", "--dataset", f"openi:{csv_path}", "--out", str(out_dir)], capsys
    )
    assert_bad_input(code, err, f"{csv_path}:4", "'x'")
    assert not (out_dir / "metrics.json").exists()


@pytest.mark.parametrize("dataset", ["vindr:/tmp/x.csv", "openi:", "openi"])
def test_eval_reader_bad_dataset_spec(dataset: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["eval", "reader", "--dataset", dataset], capsys)
    assert_bad_input(code, err, "--dataset")


def test_eval_reader_missing_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.csv"
    code, _, err = run_main(["eval", "reader", "--dataset", f"openi:{path}"], capsys)
    assert_bad_input(code, err, str(path))


# --- the installed console script -------------------------------------------------------------------------


def script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}"
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_script_parse_draft(tmp_path: Path) -> None:
    proc = script("parse-draft", DRAFT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert mentions(json.loads(proc.stdout)) == EXPECTED_MENTIONS


def test_script_compare_error_and_schema_check(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    proc = script("compare", "--grounding", str(missing), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("cxr-auditor: error:") and str(missing) in proc.stderr

    assert script("schema", "--write", "--dir", "schemas", cwd=tmp_path).returncode == 0
    proc = script("schema", "--check", "--dir", "schemas", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_batch_non_utf8_line_is_its_own_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "mixed.jsonl"
    batch.write_bytes(
        b'{"id": "a", "text": "No effusion."}\n\xff\xfe broken\n{"id": "c", "text": "Cardiomegaly."}\n'
    )
    assert main(["parse-draft", "--batch", str(batch)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x.get("id") for x in lines] == ["a", None, "c"]
    assert "not UTF-8" in lines[1]["error"]
