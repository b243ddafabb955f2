"""`cxr-auditor audit-batch` on a worklist of real NIH radiographs (replay grounder, rule reader): a
missing image, a DICOM with fake PHI, an empty draft, bad fields, an interrupted run resumed, and the
totals adding up. Worklist errors are one line naming file:line."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import auditor.backends.factory as factory
from auditor.backends.replay import ReplayGrounder
from auditor.batch import (
    PICTURE_BYTES,
    PICTURES,
    REPORT,
    RESULTS,
    SUMMARY,
    backend_fingerprint,
    in_flight,
    read_worklist,
    run_batch,
)
from auditor.cli import CliError, main
from auditor.config import Settings
from auditor.images import LoadedImage
from auditor.schema import AuditReport, Grounding
from auditor.tool_io import MAX_DRAFT_CHARS
from tests.conftest import GARBLED_PNG, NORMAL_PNG, RECORDED_OUTPUTS, UNRECORDED_PNG, URGENT_PNG, sha256_of

NIH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nih" / "images"
needs_nih = pytest.mark.skipif(not NIH.is_dir(), reason=f"shared NIH images not found at {NIH}")
SCRIPT = Path(sys.executable).parent / "cxr-auditor"
FIELDS = ["id", "image", "draft", "age_years", "view"]
DICOM_OUTPUT = json.dumps([{"label": "nodule_mass", "box_2d": [0.30, 0.20, 0.45, 0.35]}])
PHI_VALUES = ["Doe^Jane", "Doe", "MRN-123456", "19510704", "St Elsewhere", "ACC-998877", "House^Gregory"]


# ---- helpers --------------------------------------------------------------------------------------


def empty_replay(path: Path) -> Path:
    """A valid replay file with no records: enough for settings to validate (nothing is grounded)."""
    path.write_text("", encoding="utf-8")
    return path


def write_replay(path: Path, extra: dict[str, str] | None = None) -> Path:
    """Recorded outputs for the conftest images (those present: a test that needs them is needs_nih) plus
    ``extra`` ({sha256: raw_output})."""
    recorded = {name: raw for name, raw in RECORDED_OUTPUTS.items() if (NIH / name).is_file()}
    records = {sha256_of(NIH / name): raw for name, raw in recorded.items()} | (extra or {})
    lines = [json.dumps({"image_sha256": sha, "raw_output": raw}) for sha, raw in records.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rel(folder: Path, name: str) -> str:
    """An NIH image as a path relative to the worklist's folder (the worklist resolves it)."""
    return os.path.relpath(NIH / name, folder)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def result_lines(out: Path) -> list[dict[str, Any]]:
    text = (out / RESULTS).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def settings(replay: Path, **kw: Any) -> Settings:
    return Settings(grounder="replay", replay=replay, reader="rules", **kw)


def batch_cli(worklist: Path, out: Path, replay: Path, *extra: str) -> list[str]:
    return [
        "audit-batch",
        str(worklist),
        "--out",
        str(out),
        "--grounder",
        "replay",
        "--replay",
        str(replay),
        "--reader",
        "rules",
        *extra,
    ]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_adds_up(lines: list[dict[str, Any]], summary: dict[str, Any], ids: list[str]) -> None:
    """One line per study, each a report or an error, and every summary count recomputed from them."""
    assert sorted(line["id"] for line in lines) == sorted(ids), "one line per study, no duplicates"
    for line in lines:
        assert ("report" in line) != ("error" in line), line
    reports = [AuditReport.model_validate(line["report"]) for line in lines if "report" in line]
    errors = [line["error"] for line in lines if "error" in line]
    assert summary["studies"] == len(ids) == len(lines)
    assert summary["audited"] + summary["failed"] == summary["studies"]
    assert summary["audited"] == len(reports) and summary["failed"] == len(errors)
    assert sum(summary["failures"].values()) == len(errors)
    assert summary["failures"] == dict(Counter(e["code"] for e in errors))
    kinds = Counter(f.kind for r in reports for f in r.comparison.flags)
    assert summary["flags"] == {
        k: kinds.get(k, 0) for k in ("URGENT", "LATERALITY", "MISSING", "UNSUPPORTED")
    }
    urgent = sum(1 for r in reports if any(f.kind == "URGENT" for f in r.comparison.flags))
    assert summary["studies_with_urgent"] == urgent
    assert sum(summary["modes"].values()) == len(reports)


class CountingGrounder:
    """The replay grounder, counting calls and raising KeyboardInterrupt on call ``interrupt_at``."""

    def __init__(self, replay: Path, interrupt_at: int | None = None, delay_s: float = 0.0) -> None:
        self.inner = ReplayGrounder(replay)
        self.interrupt_at = interrupt_at
        self.delay_s = delay_s
        self.calls = 0
        self.threads: set[str] = set()

    def ground(self, image: LoadedImage) -> Grounding:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        time.sleep(self.delay_s)
        return self.inner.ground(image)

    def state(self) -> Any:
        return self.inner.state()

    def load(self) -> None:
        return None


# ---- the end-to-end worklist -------------------------------------------------------------------------


@pytest.fixture()
def dicom_study(tmp_path: Path) -> Path:
    """A DICOM written from a real radiograph with fake PHI in its header."""
    from tests.test_images_dicom import make_dicom

    with Image.open(NIH / "00000002_000.png") as im:
        import numpy as np

        stored = np.asarray(im.convert("L").resize((256, 256), Image.Resampling.BILINEAR))
    return make_dicom(tmp_path, stored, bits_stored=8, name="study.dcm", seed="audit-batch")


def full_worklist(folder: Path) -> list[dict[str, Any]]:
    return [
        {
            "id": "urgent",
            "image": rel(folder, URGENT_PNG),
            "draft": "Cardiomegaly is present. No pneumothorax.",
        },
        {
            "id": "unsupported",
            "image": rel(folder, NORMAL_PNG),
            "draft": "Small right pleural effusion.",
            "age_years": "7",
            "view": "ap",
        },
        {
            "id": "garbled",
            "image": rel(folder, GARBLED_PNG),
            "draft": "No acute cardiopulmonary abnormality.",
        },
        {"id": "image-only", "image": rel(folder, URGENT_PNG), "draft": ""},
        {"id": "dicom", "image": "study.dcm", "draft": "No nodule or mass.", "age_years": 45, "view": "PA"},
        {"id": "missing", "image": "no/such/file.png", "draft": "No effusion."},
        {"id": "unrecorded", "image": rel(folder, UNRECORDED_PNG), "draft": "Normal chest."},
        {"id": "bad-age", "image": rel(folder, URGENT_PNG), "draft": "x", "age_years": "seven"},
        {"id": "bad-view", "image": rel(folder, URGENT_PNG), "draft": "x", "view": "oblique"},
    ]


def flags_of(line: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["kind"], f["label"]) for f in line["report"]["comparison"]["flags"]]


@needs_nih
def test_worklist_end_to_end_through_the_command(
    tmp_path: Path, dicom_study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replay = write_replay(tmp_path / "replay.jsonl", {sha256_of(dicom_study): DICOM_OUTPUT})
    rows = full_worklist(tmp_path)
    worklist = write_csv(tmp_path / "worklist.csv", rows)
    out = tmp_path / "out"
    code, stdout, err = run_main(batch_cli(worklist, out, replay), capsys)
    assert code == 1, "studies failed, so the exit status says so"
    assert err.startswith("cxr-auditor: ") and "could not be audited" in err
    assert "audit-batch [" not in err, "no progress bar off a terminal unless asked"
    summary = json.loads(stdout)
    assert summary == {**json.loads((out / SUMMARY).read_text()), "files": summary["files"]}
    lines = result_lines(out)
    assert_adds_up(lines, summary, [r["id"] for r in rows])
    by_id = {line["id"]: line for line in lines}

    assert flags_of(by_id["urgent"]) == [("URGENT", "pneumothorax"), ("MISSING", "pneumothorax")]
    assert flags_of(by_id["unsupported"]) == [("UNSUPPORTED", "pleural_effusion")]
    notes = {n["code"] for n in by_id["unsupported"]["report"]["comparison"]["notes"]}
    assert {"pediatric_caution", "ap_view_heart_size"} <= notes
    assert by_id["garbled"]["report"]["comparison"]["mode"] == "no_image"
    assert by_id["image-only"]["report"]["comparison"]["mode"] == "image_only"
    assert flags_of(by_id["image-only"]) == [("URGENT", "pneumothorax")]
    assert flags_of(by_id["dicom"]) == [("URGENT", "nodule_mass"), ("MISSING", "nodule_mass")]
    assert by_id["dicom"]["report"]["grounding"]["image"]["source_format"] == "DICOM"
    assert {k: by_id[k]["error"]["code"] for k in ("missing", "unrecorded", "bad-age", "bad-view")} == {
        "missing": "not_found",
        "unrecorded": "no_recorded_output",
        "bad-age": "invalid_age_years",
        "bad-view": "invalid_view",
    }
    assert set(by_id["missing"]) == {"id", "input", "error"}
    assert set(by_id["missing"]["error"]) == {"code", "message"}

    assert summary["flags"] == {"URGENT": 3, "LATERALITY": 0, "MISSING": 2, "UNSUPPORTED": 1}
    assert summary["studies_with_urgent"] == 3
    assert summary["modes"] == {"full": 3, "image_only": 1, "no_image": 1}
    assert summary["resumed"] == 0
    pictures = sorted((out / PICTURES).glob("*.jpg"))
    assert len(pictures) == 5 and all(p.stat().st_size <= PICTURE_BYTES for p in pictures)

    page = (out / REPORT).read_text(encoding="utf-8")
    for row in rows:
        assert f">{row['id']}<" in page
    for name in (REPORT, RESULTS, SUMMARY):
        # pictures are pixels, not text: leave their base64 out, where "Doe" could occur by chance
        text = re.sub(r"data:[^\"]*", "", (out / name).read_text(encoding="utf-8"))
        leaked = [v for v in PHI_VALUES if v in text]
        assert not leaked, f"{name} carries DICOM header values {leaked}"


@needs_nih
def test_jsonl_worklist_gives_the_same_results(tmp_path: Path, dicom_study: Path) -> None:
    replay = write_replay(tmp_path / "replay.jsonl", {sha256_of(dicom_study): DICOM_OUTPUT})
    rows = full_worklist(tmp_path)
    csv_studies = read_worklist(write_csv(tmp_path / "w.csv", rows))
    jsonl_studies = read_worklist(write_jsonl(tmp_path / "w.jsonl", rows))
    assert [s.fingerprint for s in csv_studies] == [s.fingerprint for s in jsonl_studies]
    a = run_batch(csv_studies, tmp_path / "a", settings(replay))
    b = run_batch(jsonl_studies, tmp_path / "b", settings(replay))
    assert {k: v for k, v in a.items() if k != "files"} == {k: v for k, v in b.items() if k != "files"}


@needs_nih
def test_interrupted_run_resumes_and_redoes_failures(tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "replay.jsonl")
    late = tmp_path / "later" / "arrives.png"
    rows = [
        {"id": "s1", "image": rel(tmp_path, URGENT_PNG), "draft": "No pneumothorax."},
        {"id": "s2", "image": rel(tmp_path, NORMAL_PNG), "draft": "Normal chest."},
        {"id": "s3", "image": rel(tmp_path, GARBLED_PNG), "draft": "Small effusion."},
        {"id": "s4", "image": "later/arrives.png", "draft": "Cardiomegaly."},
        {"id": "s5", "image": rel(tmp_path, NORMAL_PNG), "draft": ""},
        {"id": "s6", "image": rel(tmp_path, URGENT_PNG), "draft": "Right pneumothorax."},
    ]
    worklist = write_csv(tmp_path / "day.csv", rows)
    ids = [r["id"] for r in rows]
    out = tmp_path / "out"

    # 1: interrupted while grounding the third study; the two finished lines are on disk
    first = CountingGrounder(replay, interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_batch(read_worklist(worklist), out, settings(replay), grounder=first)
    assert [line["id"] for line in result_lines(out)] == ["s1", "s2"]
    assert not (out / SUMMARY).exists() and not (out / REPORT).exists()

    # 2: a kill mid-write leaves a torn last line; the rerun ignores it and skips s1, s2
    with open(out / RESULTS, "a", encoding="utf-8") as fh:
        fh.write('{"id": "s3", "input": "abc", "rep')
    second = CountingGrounder(replay)
    summary = run_batch(read_worklist(worklist), out, settings(replay), grounder=second)
    assert second.calls == 3, "s3, s5, s6 grounded; s1, s2 skipped; s4 fails before grounding"
    assert summary["resumed"] == 2
    lines = result_lines(out)
    assert_adds_up(lines, summary, ids)
    assert {line["id"]: line.get("error", {}).get("code") for line in lines}["s4"] == "not_found"

    # 3: the missing image arrives: only the failed study is redone
    late.parent.mkdir()
    shutil.copy(NIH / URGENT_PNG, late)
    third = CountingGrounder(replay)
    summary = run_batch(read_worklist(worklist), out, settings(replay), grounder=third)
    assert third.calls == 1 and summary["resumed"] == 5 and summary["failed"] == 0
    assert_adds_up(result_lines(out), summary, ids)

    # 4: a corrected draft changes that study's inputs, so it alone is redone
    rows[1]["draft"] = "Small left pleural effusion."
    write_csv(worklist, rows)
    fourth = CountingGrounder(replay)
    summary = run_batch(read_worklist(worklist), out, settings(replay), grounder=fourth)
    assert fourth.calls == 1
    lines = result_lines(out)
    assert_adds_up(lines, summary, ids)
    assert flags_of(next(line for line in lines if line["id"] == "s2")) == [
        ("UNSUPPORTED", "pleural_effusion")
    ]
    # pictures of redone studies are replaced, not piled up
    assert len(list((out / PICTURES).glob("*.jpg"))) == 6


@needs_nih
def test_interrupt_through_the_command_says_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    replay = write_replay(tmp_path / "replay.jsonl")
    rows = [
        {"id": f"s{i}", "image": rel(tmp_path, URGENT_PNG), "draft": "No pneumothorax."} for i in range(4)
    ]
    worklist = write_csv(tmp_path / "w.csv", rows)
    grounder = CountingGrounder(replay, interrupt_at=2)
    monkeypatch.setattr(factory, "make_grounder", lambda _settings: grounder)
    code, stdout, err = run_main(batch_cli(worklist, tmp_path / "out", replay), capsys)
    assert code == 130 and stdout == ""
    assert "interrupted" in err and "again to resume" in err
    assert len(result_lines(tmp_path / "out")) == 1


@needs_nih
def test_remote_engines_get_a_bounded_pool(tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "replay.jsonl")
    remote = Settings(
        grounder="http", grounder_url="http://127.0.0.1:9/v1", reader="rules", engine_max_in_flight=3
    )
    assert in_flight(remote) == 3
    assert in_flight(settings(replay, engine_max_in_flight=3)) == 1
    assert in_flight(Settings(grounder="replay", replay=replay, reader="http", reader_url="http://x")) == 4
    names = [URGENT_PNG, NORMAL_PNG, GARBLED_PNG]
    rows = [
        {"id": f"s{i:02d}", "image": rel(tmp_path, names[i % 3]), "draft": "No effusion."} for i in range(12)
    ]
    studies = read_worklist(write_csv(tmp_path / "w.csv", rows))
    grounder = CountingGrounder(replay, delay_s=0.02)
    summary = run_batch(studies, tmp_path / "out", remote, grounder=grounder)
    assert grounder.calls == 12
    assert len(grounder.threads) > 1 and all(t.startswith("audit-batch") for t in grounder.threads)
    assert_adds_up(result_lines(tmp_path / "out"), summary, [r["id"] for r in rows])


@needs_nih
def test_progress_bar_only_when_asked_off_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replay = write_replay(tmp_path / "replay.jsonl")
    rows = [{"id": f"s{i}", "image": rel(tmp_path, NORMAL_PNG), "draft": ""} for i in range(3)]
    worklist = write_csv(tmp_path / "w.csv", rows)
    code, _, err = run_main(batch_cli(worklist, tmp_path / "a", replay, "--progress"), capsys)
    assert code == 0 and "audit-batch [" in err and "3/3 100%" in err
    code, _, err = run_main(batch_cli(worklist, tmp_path / "b", replay, "--no-progress"), capsys)
    assert code == 0 and err == ""


@needs_nih
def test_installed_script_runs_a_worklist(tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "replay.jsonl")
    rows = [
        {"id": "a", "image": rel(tmp_path, URGENT_PNG), "draft": "No pneumothorax."},
        {"id": "b", "image": "gone.png", "draft": ""},
    ]
    worklist = write_jsonl(tmp_path / "w.jsonl", rows)
    proc = subprocess.run(
        [str(SCRIPT), *batch_cli(worklist, tmp_path / "out", replay, "--progress")],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1, proc.stderr  # a study failed
    summary = json.loads(proc.stdout)
    assert (summary["studies"], summary["audited"], summary["failed"]) == (2, 1, 1)
    assert summary["failures"] == {"not_found": 1}
    assert "2/2" in proc.stderr


def test_importing_the_batch_modules_pulls_in_neither_mcp_nor_torch() -> None:
    code = (
        "import sys, auditor.batch, auditor.report_html; "
        "print(sorted(m for m in ('mcp', 'mcp_server', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@needs_nih
def test_an_edited_results_file_cannot_pull_other_files_into_the_report(tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "replay.jsonl")
    worklist = write_csv(tmp_path / "w.csv", [{"id": "a", "image": rel(tmp_path, NORMAL_PNG), "draft": ""}])
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"\xff\xd8\xff" + b"SECRET" * 100)
    run_batch(read_worklist(worklist), tmp_path / "out", settings(replay))
    [line] = result_lines(tmp_path / "out")
    line["picture"]["file"] = "../secret.jpg"
    (tmp_path / "out" / RESULTS).write_text(json.dumps(line) + "\n", encoding="utf-8")
    summary = run_batch(read_worklist(worklist), tmp_path / "out", settings(replay))
    assert summary["resumed"] == 1
    page = (tmp_path / "out" / REPORT).read_text(encoding="utf-8")
    assert base64.b64encode(b"SECRET" * 4).decode()[:16] not in page
    assert page.count("data:image/jpeg;base64,") == 1


# ---- the worklist reader ---------------------------------------------------------------------------------


def test_fields_are_checked_per_study(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"id": "ok", "image": "img/a.png", "draft": "No effusion.", "age_years": " 7.5 ", "view": "pa"},
        {"id": "url", "image": "https://example.org/a.png", "draft": ""},
        {"id": "abs", "image": str(NIH / URGENT_PNG)},
        {"id": "no-image", "image": " ", "draft": "x"},
        {"id": "old", "image": "a.png", "age_years": "200"},
        {"id": "nan", "image": "a.png", "age_years": "nan"},
        {"id": "side", "image": "a.png", "view": "LL"},
        {"id": 7, "image": "a.png"},
    ]
    studies = {s.id: s for s in read_worklist(write_jsonl(tmp_path / "w.jsonl", rows))}
    ok = studies["ok"]
    assert ok.problem is None and ok.image == str(tmp_path / "img" / "a.png")
    assert ok.context is not None and (ok.context.age_years, ok.context.view) == (7.5, "PA")
    assert studies["url"].image == "https://example.org/a.png" and studies["url"].context is None
    assert studies["abs"].image == str(NIH / URGENT_PNG)
    problems = {k: s.problem.code for k, s in studies.items() if s.problem}
    assert problems == {
        "no-image": "missing_image",
        "old": "invalid_age_years",
        "nan": "invalid_age_years",
        "side": "invalid_view",
    }
    assert "7" in studies and studies["7"].line == 8


def test_json_typed_fields(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"id": "a", "image": "a.png", "age_years": True},
        {"id": "b", "image": "a.png", "draft": 12},
        {"id": "c", "image": "a.png", "draft": "x" * (MAX_DRAFT_CHARS + 1)},
        {"id": "d", "image": ["a.png"]},
        {"id": "e", "image": "a.png", "age_years": 64, "draft": None, "view": None},
    ]
    studies = read_worklist(write_jsonl(tmp_path / "w.jsonl", rows))
    assert [s.problem.code if s.problem else None for s in studies] == [
        "invalid_age_years",
        "invalid_draft",
        "draft_too_long",
        "invalid_image",
        None,
    ]


def test_a_studys_bad_field_is_its_error_line(tmp_path: Path) -> None:
    replay = empty_replay(tmp_path / "replay.jsonl")
    worklist = write_jsonl(tmp_path / "w.jsonl", [{"id": "x", "image": "a.png", "view": "oblique"}])
    [study] = read_worklist(worklist)
    run_batch([study], tmp_path / "out", settings(replay))
    message = "unknown view 'oblique' (expected PA, AP or lateral)"
    error = {"code": "invalid_view", "message": message}
    key = study.input_key(backend_fingerprint(settings(replay)))
    assert result_lines(tmp_path / "out") == [{"id": "x", "input": key, "error": error}]


BAD_WORKLISTS = [
    ("w.csv", "id,draft\na,x\n", "{path}:1: CSV header lacks 'image'"),
    ("w.csv", "id,image,patient_name\na,b,c\n", "{path}:1: CSV header has unknown column(s) 'patient_name'"),
    ("w.csv", "id,image,id\na,b,c\n", "{path}:1: CSV header repeats"),
    ("w.csv", "id,image\na,b\nc,d,e\n", "{path}:3: 3 fields, but the header has 2"),
    ("w.csv", "id,image\na,b\n,d\n", "{path}:3: empty 'id'"),
    ("w.csv", 'id,image,draft\na,b,"unterminated\n', "{path}:2: bad CSV"),
    ("w.csv", "", "{path}: empty worklist"),
    (
        "w.csv",
        "id,image\na,x.png\nb,y.png\na,z.png\nb,w.png\n",
        "duplicate id(s): 'a' (lines 2, 4); 'b' (lines 3, 5)",
    ),
    ("w.jsonl", '{"id": "a", "image": "x"}\n\n{"id": "b", "image": \n', "{path}:3: invalid JSON"),
    ("w.jsonl", '{"id": "a", "image": "x"}\n["b", "y"]\n', "{path}:2: expected a JSON object"),
    ("w.jsonl", '{"id": "a", "image": "x", "mrn": "123"}\n', "{path}:1: unknown field(s) 'mrn'"),
    ("w.jsonl", '{"image": "x"}\n', "{path}:1: 'id' must be a string"),
    ("w.jsonl", '{"id": "a\\ud800", "image": "x"}\n', "{path}:1: a string holds an unpaired surrogate"),
    (
        "w.jsonl",
        '{"id": "a", "image": "x"}\n{"id": "a", "image": "y"}\n',
        "duplicate id(s): 'a' (lines 1, 2)",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD_WORKLISTS)
def test_bad_worklist_is_one_line_naming_file_and_line(
    name: str, text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replay = empty_replay(tmp_path / "replay.jsonl")
    worklist = tmp_path / name
    worklist.write_text(text, encoding="utf-8")
    code, out, err = run_main(batch_cli(worklist, tmp_path / "out", replay), capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cxr-auditor: error:"), err
    assert message.format(path=worklist) in lines[0]
    assert not (tmp_path / "out").exists(), "nothing is written for a bad worklist"


def test_unreadable_worklists(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="no such file"):
        read_worklist(tmp_path / "nope.csv")
    with pytest.raises(CliError, match="is a directory"):
        read_worklist(tmp_path)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"id,image,draft\na,b.png,caf\xe9\n")
    with pytest.raises(CliError, match=f"{latin}:2: not UTF-8"):
        read_worklist(latin)
    bom = tmp_path / "excel.csv"
    bom.write_bytes("\ufeffid,image\r\na,b.png\r\n".encode())
    assert [(s.id, s.line) for s in read_worklist(bom)] == [("a", 2)]


def test_bad_configuration_and_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    worklist = write_csv(tmp_path / "w.csv", [{"id": "a", "image": "a.png"}])
    code, _, err = run_main(batch_cli(worklist, tmp_path / "out", tmp_path / "none.jsonl"), capsys)
    assert code == 2 and "replay file not found" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_main(batch_cli(worklist, blocker, empty_replay(tmp_path / "r.jsonl")), capsys)
    assert code == 2 and "not a folder" in err


def test_empty_worklist_gives_an_empty_report(tmp_path: Path) -> None:
    replay = empty_replay(tmp_path / "replay.jsonl")
    studies = read_worklist(write_csv(tmp_path / "w.csv", []))
    summary = run_batch(studies, tmp_path / "out", settings(replay))
    assert (summary["studies"], summary["audited"], summary["failed"]) == (0, 0, 0)
    assert "No study was audited" in (tmp_path / "out" / REPORT).read_text()


# ---- a model that cannot load stops the run ----------------------------------------------------------


class NeverLoads(CountingGrounder):
    """A grounder whose model cannot load: every call fails the same way."""

    def ground(self, image: LoadedImage) -> Grounding:
        from auditor.backends import BackendError

        self.calls += 1
        raise BackendError("load_failed", "could not load the grounder model 'x': its weights are missing")


@needs_nih
def test_the_first_load_failure_stops_the_run(tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "replay.jsonl")
    rows = [{"id": f"s{i}", "image": rel(tmp_path, URGENT_PNG), "draft": ""} for i in range(5)]
    studies = read_worklist(write_csv(tmp_path / "w.csv", rows))
    grounder = NeverLoads(replay)
    with pytest.raises(CliError) as err:
        run_batch(studies, tmp_path / "out", settings(replay), grounder=grounder)
    assert grounder.calls == 1, "not one load attempt per study"
    assert err.value.exit_status == 3 and err.value.code == "model_unavailable" and "\n" not in str(err.value)
    assert str(err.value).startswith("stopped at study 's0' after 0 finished")
    assert "model backend (load_failed)" in str(err.value) and "rerun to resume" in str(err.value)


def test_audit_batch_without_the_image_model_stops_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worklist = write_jsonl(tmp_path / "w.jsonl", [{"id": "a", "image": "a.png"}])
    missing = tmp_path / "no-model-here"
    out = tmp_path / "out"
    code, stdout, err = run_main(
        [
            "audit-batch",
            str(worklist),
            "--out",
            str(out),
            "--grounder-model",
            str(missing),
            "--reader",
            "rules",
        ],
        capsys,
    )
    assert code == 3 and stdout == "" and not out.exists()
    assert err.count("\n") == 1 and f"the folder {missing} does not exist" in err


def test_summary_counts_urgent_not_in_the_draft_apart() -> None:
    from auditor.batch import ResultLine, summarize
    from auditor.schema import Comparison, Flag

    def line(ident: str, *statuses: str) -> ResultLine:
        """Only what the totals read, built without validation (as the old dict lines were)."""
        flags = [Flag.model_construct(kind="URGENT", draft_status=s) for s in statuses]
        comparison = Comparison.model_construct(flags=flags, mode="full")
        return ResultLine(id=ident, report=AuditReport.model_construct(comparison=comparison))

    summary = summarize(
        [line("a", "present"), line("b", "denied", "present"), line("c", "not_mentioned"), line("d")]
    )
    assert (summary["studies_with_urgent"], summary["flags"]["URGENT"]) == (3, 4)
    assert (summary["studies_with_urgent_not_in_draft"], summary["urgent_not_in_draft"]) == (2, 2)
