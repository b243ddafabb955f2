"""The evaluation harness measures what it says it measures: the configured reader (never the rule
reader standing in for it), under a configuration hash that covers every generation setting, with one
writer per run folder, atomic result files, and `eval reader` output that names its code."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import auditor
from auditor.backends import BackendError, BackendState
from auditor.backends.rules import RulesReader
from auditor.cli import main
from auditor.compare import draft_status
from auditor.config import Settings
from auditor.draft_rules import read_draft
from auditor.eval import runs as runs_module
from auditor.eval.datasets import load_all, parse_spec
from auditor.eval.grounders import OracleItemGrounder
from auditor.eval.runs import RunPlan, execute, generation_settings
from auditor.eval.runstore import ITEMS_FILE, RunError, RunStore, write_text_atomic
from auditor.eval.steps import audit_step
from auditor.eval.synthetic import make_draft
from auditor.labels import Label
from auditor.pipeline import Auditor
from auditor.schema import DraftMention, DraftReading, ModelInfo, ParseOutcome

# A ChestX-Det style dataset built here: every edit kind occurs, and URGENT labels too.
RECORDS = [
    {"file_name": f"{n}.png", "syms": syms, "boxes": boxes}
    for n, (syms, boxes) in enumerate(
        [
            ([], []),
            (["Effusion"], [[600, 600, 900, 900]]),
            (["Pneumothorax", "Effusion"], [[100, 50, 400, 300], [650, 700, 950, 950]]),
            (["Nodule"], [[200, 200, 260, 260]]),
            (["Mass", "Consolidation"], [[600, 200, 800, 400], [100, 600, 400, 900]]),
            (["Cardiomegaly"], [[300, 500, 750, 800]]),
        ]
        * 4
    )
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CXR_AUDITOR_* setting of the developer's shell leaks into these runs."""
    for name in list(os.environ):
        if name.startswith("CXR_AUDITOR_"):
            monkeypatch.delenv(name)


@pytest.fixture()
def cx_json(tmp_path: Path) -> Path:
    path = tmp_path / "cx.json"
    path.write_text(json.dumps(RECORDS), encoding="utf-8")
    return path


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


# --- fake configured readers ------------------------------------------------------------------------------


class FakeModelReader:
    """Stands in for the hf/http reader: ``read`` is whatever the test gives it."""

    def __init__(self, read: Callable[[str], DraftReading]) -> None:
        self._read = read

    def read(self, draft: str) -> DraftReading:
        return self._read(draft)

    def load(self) -> None:
        return None

    def state(self) -> BackendState:
        return BackendState(
            role="reader",
            backend="hf",
            model_id="fake/nemotron",
            loaded=True,
            detail={"prompt_version": "t1"},
        )


def out_of_memory(draft: str) -> DraftReading:
    raise BackendError("out_of_memory", "CUDA out of memory while generating")


def unusable(draft: str) -> DraftReading:
    return DraftReading(
        draft=draft,
        mentions=[],
        outcome=ParseOutcome.FAILED,
        model=ModelInfo(backend="hf", model_id="fake/nemotron"),
        raw_output="<think>hmm</think> I am not sure",
    )


def as_model(draft: str) -> DraftReading:
    """A working 'model' reader (the rule reader's reading under the model's name)."""
    reading = read_draft(draft)
    return reading.model_copy(update={"model": ModelInfo(backend="hf", model_id="fake/nemotron")})


@pytest.fixture()
def model_reader(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[str], DraftReading]], None]:
    """Make ``--reader hf`` build a FakeModelReader with the given read (the rule reader stays real)."""
    from auditor.backends import factory

    real = factory.make_reader

    def install(read: Callable[[str], DraftReading]) -> None:
        def fake(settings: Settings, kind: str | None = None) -> Any:
            if (kind or settings.reader) == "rules":
                return real(settings, "rules")
            return FakeModelReader(read)

        monkeypatch.setattr(factory, "make_reader", fake)

    return install


def audit_argv(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "audit", "--dataset", f"chestx-det:{dataset}", "--out", str(out), *extra]


# --- 1. the configured reader is what gets scored ----------------------------------------------------------


@pytest.mark.parametrize("read", [out_of_memory, unusable], ids=["raises", "failed_outcome"])
def test_a_reader_that_fails_every_item_predicts_nothing(
    read: Callable[[str], DraftReading],
    model_reader: Callable[[Callable[[str], DraftReading]], None],
    cx_json: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not the rule reader's 1.000: a reader that never produced a reading cannot have found anything."""
    model_reader(read)
    out = tmp_path / "run"
    code, _, err = run_cli(audit_argv(cx_json, out, "--reader", "hf"), capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    n = len(RECORDS)
    assert m["integrity"]["failed"] == m["integrity"]["total"] == n
    assert m["integrity_by_stage"]["reading"]["failed"] == n
    for kind in ("MISSING", "UNSUPPORTED"):
        flag = m["flags"][kind]
        assert flag["n"] > 0
        assert flag["recall"] == 0.0, (kind, flag)
        assert flag["tp"] == 0 and flag["fp"] == 0
    assert m["flags"]["URGENT"]["recall"] == 1.0  # the image-only pass still raises URGENT
    assert m["run"]["config"]["reader"]["backend"] == "hf"
    failures = m["failures"]
    assert [f["id"] for f in failures] == [r["file_name"] for r in RECORDS]
    assert {f["stage"] for f in failures} == {"reading"}
    if read is out_of_memory:
        assert all("out_of_memory" in f["reason"] for f in failures)
    records = [json.loads(line) for line in (out / ITEMS_FILE).read_text(encoding="utf-8").splitlines()]
    assert all(r["reading_outcome"] == "failed" for r in records)
    assert not any(f["kind"] in {"MISSING", "UNSUPPORTED"} for r in records for f in r.get("flags", []))
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| 0.png | reading |" in report
    assert "a failed reading is judged as no draft" in report


def test_a_reading_the_rule_reader_stood_in_for_is_a_failure(cx_json: Path, tmp_path: Path) -> None:
    """Even when handed `Auditor.read` (which falls back to the rule reader), the harness scores the
    fallback's reading as nothing."""
    items, loaded = load_all([parse_spec(f"chestx-det:{cx_json}")])
    engine = Auditor(Settings(reader="rules"), reader=FakeModelReader(out_of_memory))
    plan = RunPlan(
        command="audit",
        items=items,
        datasets=loaded,
        grounder=OracleItemGrounder(items),
        out=tmp_path / "run",
        reader=engine.read,
        reader_info={"backend": "hf", "model_id": "fake/nemotron"},
        progress=False,
    )
    m = execute(plan)
    assert m["integrity"]["failed"] == len(RECORDS)
    assert m["flags"]["MISSING"]["recall"] == 0.0 and m["flags"]["UNSUPPORTED"]["recall"] == 0.0
    assert all("rule reader read it instead" in f["reason"] for f in m["failures"])


def test_a_working_model_reader_is_scored_as_itself(
    model_reader: Callable[[Callable[[str], DraftReading]], None],
    cx_json: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_reader(as_model)
    out = tmp_path / "run"
    code, _, err = run_cli(audit_argv(cx_json, out, "--reader", "hf"), capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["integrity"]["failed"] == 0
    assert m["flags"]["MISSING"]["recall"] == 1.0


# --- 3. the configuration hash covers the generation settings ----------------------------------------------


def test_changing_the_reasoning_budget_refuses_to_resume(
    model_reader: Callable[[Callable[[str], DraftReading]], None],
    cx_json: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model_reader(as_model)
    out = tmp_path / "run"
    monkeypatch.setenv("CXR_AUDITOR_READER_REASONING_BUDGET", "256")
    monkeypatch.setenv("CXR_AUDITOR_API_KEY", "sk-very-secret")
    code, _, err = run_cli(audit_argv(cx_json, out, "--reader", "hf"), capsys)
    assert code == 0, err
    run_json = (out / "run.json").read_text(encoding="utf-8")
    assert "sk-very-secret" not in run_json and "api_key" not in run_json
    settings = json.loads(run_json)["config"]["settings"]
    assert settings["reader_reasoning_budget"] == 256 and settings["reader_reasoning"] is True
    assert settings["reader_max_new_tokens"] == 512 and settings["dtype"] == "auto"
    monkeypatch.setenv("CXR_AUDITOR_READER_REASONING_BUDGET", "64")
    code, _, err = run_cli(audit_argv(cx_json, out, "--reader", "hf"), capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "settings.reader_reasoning_budget" in err
    monkeypatch.setenv("CXR_AUDITOR_READER_REASONING_BUDGET", "256")
    monkeypatch.setenv("CXR_AUDITOR_API_KEY", "another-secret")  # a secret changes no generation
    code, _, err = run_cli(audit_argv(cx_json, out, "--reader", "hf"), capsys)
    assert code == 0, err


@pytest.mark.parametrize(
    ("variable", "first", "second", "named"),
    [
        ("CXR_AUDITOR_READER_REASONING", "true", "false", "settings.reader_reasoning"),
        ("CXR_AUDITOR_READER_MAX_NEW_TOKENS", "512", "128", "settings.reader_max_new_tokens"),
        ("CXR_AUDITOR_DTYPE", "bfloat16", "float32", "settings.dtype"),
        ("CXR_AUDITOR_DEVICE", "cpu", "cuda", "settings.device"),
        ("CXR_AUDITOR_READER_MODEL", "a/model", "b/model", "settings.reader_model"),
    ],
)
def test_each_generation_setting_is_in_the_hash(
    variable: str,
    first: str,
    second: str,
    named: str,
    model_reader: Callable[[Callable[[str], DraftReading]], None],
    cx_json: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model_reader(as_model)
    out = tmp_path / "run"
    monkeypatch.setenv(variable, first)
    assert run_cli(audit_argv(cx_json, out, "--reader", "hf"), capsys)[0] == 0
    monkeypatch.setenv(variable, second)
    code, _, err = run_cli(audit_argv(cx_json, out, "--reader", "hf"), capsys)
    assert code == 2 and named in err


def test_the_prompt_file_is_hashed_by_content_and_the_revision_is_forwarded(
    model_reader: Callable[[Callable[[str], DraftReading]], None],
    cx_json: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model_reader(as_model)
    prompt = tmp_path / "reader_prompt.txt"
    prompt.write_text("Read the draft. {draft}", encoding="utf-8")
    monkeypatch.setenv("CXR_AUDITOR_READER_PROMPT", str(prompt))
    out = tmp_path / "run"
    argv = audit_argv(cx_json, out, "--reader", "hf", "--reader-revision", "r1")
    assert run_cli(argv, capsys)[0] == 0
    config = json.loads((out / "run.json").read_text(encoding="utf-8"))["config"]
    want = hashlib.sha256(prompt.read_bytes()).hexdigest()
    assert config["settings"]["reader_prompt_sha256"] == want
    assert config["settings"]["reader_revision"] == "r1" and config["reader"]["revision"] == "r1"
    assert "revision r1" in (out / "report.md").read_text(encoding="utf-8")
    prompt.write_text("Read the draft carefully. {draft}", encoding="utf-8")
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "settings.reader_prompt_sha256" in err
    prompt.write_text("Read the draft. {draft}", encoding="utf-8")
    code, _, err = run_cli(audit_argv(cx_json, out, "--reader", "hf", "--reader-revision", "r2"), capsys)
    assert code == 2 and "settings.reader_revision" in err and "reader.revision" in err


def test_the_oracle_and_rule_reader_depend_on_no_generation_setting(
    cx_json: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The published oracle/rules runs resume whatever the model settings in the shell are."""
    out = tmp_path / "run"
    monkeypatch.setenv("CXR_AUDITOR_READER_REASONING_BUDGET", "256")
    assert run_cli(audit_argv(cx_json, out), capsys)[0] == 0
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["config"]["settings"] == {}
    monkeypatch.setenv("CXR_AUDITOR_READER_REASONING_BUDGET", "64")
    code, _, err = run_cli(audit_argv(cx_json, out), capsys)
    assert code == 0, err


def test_generation_settings_per_backend(tmp_path: Path) -> None:
    prompt = tmp_path / "g.txt"
    prompt.write_text("find things", encoding="utf-8")
    s = Settings(
        grounder_url="http://127.0.0.1:9/v1",
        grounder_api_model="served-name",
        grounder_prompt=prompt,
        api_key="sk-x",
        http_token="t",
    )
    assert generation_settings(s, "oracle", "rules") == {}
    assert generation_settings(s, "replay") == {"box_order": "yxyx", "box_scale": 1.0}
    http = generation_settings(s, "http")
    assert http["grounder_url"] == "http://127.0.0.1:9/v1" and http["grounder_api_model"] == "served-name"
    assert http["grounder_prompt_sha256"] == hashlib.sha256(b"find things").hexdigest()
    hf = generation_settings(s, "hf", "hf")
    assert {"device", "dtype", "grounder_max_new_tokens", "reader_reasoning_budget"} <= set(hf)
    for got in (http, hf, generation_settings(s, "http", "http")):
        assert not {"api_key", "http_token"} & set(got)
        assert "sk-x" not in json.dumps(got)


# --- 5. the judge's collapse, reused; atomic files ---------------------------------------------------------


def test_target_status_is_the_judges_collapse(cx_json: Path) -> None:
    from auditor.compare import _draft_status

    assert _draft_status is draft_status
    items, _ = load_all([parse_spec(f"chestx-det:{cx_json}")])
    item = items[1]  # effusion only
    seed = next(s for s in range(200) if make_draft(item, s).target is Label.PLEURAL_EFFUSION)
    draft = "No left pleural effusion. Possible right pleural effusion."
    start = draft.index("Possible")
    reading = DraftReading(
        draft=draft,
        mentions=[
            DraftMention(label=Label.PLEURAL_EFFUSION, status="absent", span=draft[:25], start=0, end=25),
            DraftMention(
                label=Label.PLEURAL_EFFUSION,
                status="uncertain",
                span=draft[start:],
                start=start,
                end=len(draft),
            ),
        ],
        outcome=ParseOutcome.CLEAN,
        model=ModelInfo(backend="hf", model_id="fake"),
    )
    assert draft_status(list(reading.mentions)) == "uncertain"
    record = audit_step(item, seed, OracleItemGrounder(items), lambda text: reading)
    assert record.target is Label.PLEURAL_EFFUSION and record.target_status == "uncertain"
    assert record.reading_outcome is ParseOutcome.CLEAN and not record.failures


def test_write_text_atomic_is_whole_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.json"
    write_text_atomic(path, "old\n")
    assert path.read_text(encoding="utf-8") == "old\n"

    def crash(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        write_text_atomic(path, "new\n")
    assert path.read_text(encoding="utf-8") == "old\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temp file left behind


def test_metrics_and_report_are_written_atomically(
    cx_json: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []
    real = write_text_atomic

    def spy(path: Path, text: str) -> None:
        written.append(path.name)
        real(path, text)

    monkeypatch.setattr("auditor.eval.runstore.write_text_atomic", spy)
    monkeypatch.setattr(runs_module, "write_text_atomic", spy)
    items, loaded = load_all([parse_spec(f"chestx-det:{cx_json}")])
    reader = RulesReader()
    plan = RunPlan(
        command="audit",
        items=items,
        datasets=loaded,
        grounder=OracleItemGrounder(items),
        out=tmp_path / "run",
        reader=reader.read,
        reader_info={"backend": "rules", "model_id": reader.state().model_id},
        progress=False,
    )
    execute(plan)
    assert {"run.json", "metrics.json", "report.md"} <= set(written)


# --- 6. one writer per run folder --------------------------------------------------------------------------


def test_two_writers_in_one_folder_the_second_fails_at_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    config: dict[str, Any] = {"command": "audit", "seed": 0}
    first = RunStore(out)
    first.start(config, {})
    second = RunStore(out)
    with pytest.raises(RunError, match=f"another run is writing {out}"):
        second.start(config, {})
    first.close()
    second.start(config, {})  # free again once the first has finished
    second.close()


def test_a_refused_start_releases_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "run"
    store = RunStore(out)
    store.start({"seed": 0}, {})
    store.close()
    with pytest.raises(RunError, match="different configuration"):
        RunStore(out).start({"seed": 1}, {})
    again = RunStore(out)
    again.start({"seed": 0}, {})
    again.close()


def test_the_cli_refuses_a_folder_another_run_is_writing(
    cx_json: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = audit_argv(cx_json, out)
    assert run_cli(argv, capsys)[0] == 0
    config = json.loads((out / "run.json").read_text(encoding="utf-8"))["config"]
    holder = RunStore(out)
    holder.start(config, {})
    try:
        before = (out / ITEMS_FILE).read_bytes()
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and "another run is writing" in err and len(err.strip().splitlines()) == 1
        assert (out / ITEMS_FILE).read_bytes() == before
    finally:
        holder.close()


# --- 4. eval reader names its code ------------------------------------------------------------------------

CSV = (
    "uid,text,pleural_effusion,pneumothorax,lung_opacity_consolidation,nodule_mass,cardiomegaly,no_finding\n"
    '1,"Cardiomegaly is present. No pneumothorax.",0,0,0,0,1,0\n'
    '2,"No acute cardiopulmonary abnormality.",0,0,0,0,0,1\n'
    '3,"",0,0,0,0,0,1\n'
)


@pytest.fixture()
def openi_csv(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "openi.csv"
    path.write_text(CSV, encoding="utf-8")
    yield path


def test_eval_reader_records_code_version_and_command_line(
    openi_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from auditor.eval.provenance import code_version

    out = tmp_path / "r"
    code, stdout, err = run_cli(
        ["eval", "reader", "--dataset", f"openi:{openi_csv}", "--out", str(out)], capsys
    )
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    # the existing fields are all still there
    for key in ("dataset", "dataset_sha256", "reader", "labels", "macro_f1", "integrity", "failures"):
        assert key in m, key
    assert m["integrity"] == {"total": 3, "clean": 2, "recovered": 0, "failed": 1}
    assert m["dataset_sha256"] == hashlib.sha256(openi_csv.read_bytes()).hexdigest()
    assert m["code"]["auditor"] == auditor.__version__
    assert m["code"]["git_commit"] == code_version()["git_commit"] and "git_dirty" in m["code"]
    assert m["environment"]["python"]
    assert m["command_line"].startswith("cxr-auditor eval reader --dataset")
    assert str(openi_csv) in m["command_line"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "cxr-auditor eval reader" in report and str(m["code"]["git_commit"]) in report
    assert json.loads(stdout)["code"]["auditor"] == auditor.__version__


def test_the_folder_stays_locked_until_the_results_are_written(
    cx_json: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    seen: list[str] = []
    from auditor.eval.report import report_markdown as real

    def report_while_trying_to_enter(metrics: dict[str, Any]) -> str:
        with pytest.raises(RunError, match="another run is writing") as exc:
            RunStore(out).start(metrics["run"]["config"], {})
        seen.append(str(exc.value))
        return real(metrics)

    monkeypatch.setattr(runs_module, "report_markdown", report_while_trying_to_enter)
    items, loaded = load_all([parse_spec(f"chestx-det:{cx_json}")])
    reader = RulesReader()
    plan = RunPlan(
        command="audit",
        items=items,
        datasets=loaded,
        grounder=OracleItemGrounder(items),
        out=out,
        reader=reader.read,
        reader_info={"backend": "rules", "model_id": reader.state().model_id},
        progress=False,
    )
    execute(plan)
    assert len(seen) == 1
    after = RunStore(out)  # and released once the run is over
    after.start(json.loads((out / "run.json").read_text(encoding="utf-8"))["config"], {})
    after.close()
