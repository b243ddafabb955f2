"""Evaluation runs end to end: nothing skipped, totals that add up, failures listed by id, resumable
after an interruption, refusing to mix configurations, and the published table in report.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditor.backends.rules import RulesReader
from auditor.cli import main
from auditor.eval.datasets import load_all, parse_spec
from auditor.eval.grounders import OracleItemGrounder
from auditor.eval.items import EvalItem
from auditor.eval.runs import RunPlan, execute
from auditor.eval.runstore import ITEMS_FILE, RunError
from auditor.schema import Grounding
from tests.conftest import sha256_of

# --- a small ChestX-Det style dataset, no images needed (oracle) ------------------------------------------

RECORDS = [
    {"file_name": f"{i}.png", "syms": syms, "boxes": boxes}
    for i, (syms, boxes) in enumerate(
        [
            ([], []),
            (["Effusion"], [[600, 600, 900, 900]]),
            (["Pneumothorax", "Effusion"], [[100, 50, 400, 300], [650, 700, 950, 950]]),
            (["Nodule"], [[200, 200, 260, 260]]),
            (["Mass", "Consolidation"], [[600, 200, 800, 400], [100, 600, 400, 900]]),
            (["Cardiomegaly"], [[300, 500, 750, 800]]),
            (["Fracture"], [[10, 10, 50, 50]]),
            (["Diffuse Nodule", "Fibrosis"], [[100, 100, 900, 900], [100, 100, 300, 300]]),
        ]
        * 4
    )
]
for n, rec in enumerate(RECORDS):
    rec["file_name"] = f"{n}.png"


@pytest.fixture()
def cx_json(tmp_path: Path) -> Path:
    path = tmp_path / "cx.json"
    path.write_text(json.dumps(RECORDS), encoding="utf-8")
    return path


def audit_plan(dataset: Path, out: Path, seed: int = 0, grounder: Any = None) -> RunPlan:
    items, loaded = load_all([parse_spec(f"chestx-det:{dataset}")])
    reader = RulesReader()
    return RunPlan(
        command="audit",
        items=items,
        datasets=loaded,
        grounder=grounder or OracleItemGrounder(items),
        out=out,
        reader=reader.read,
        reader_info={"backend": "rules", "model_id": reader.state().model_id},
        seed=seed,
        progress=False,
    )


def records_of(out: Path) -> list[dict[str, Any]]:
    lines = (out / ITEMS_FILE).read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "ms"} for line in lines]


class Interrupting:
    """Delegates to a real grounder and raises KeyboardInterrupt on its k-th call (a user's Ctrl-C)."""

    def __init__(self, inner: OracleItemGrounder, k: int) -> None:
        self.inner, self.k, self.calls = inner, k, 0

    def ground_item(self, item: EvalItem) -> tuple[Grounding, str | None]:
        self.calls += 1
        if self.calls == self.k:
            raise KeyboardInterrupt
        return self.inner.ground_item(item)

    def describe(self) -> dict[str, object]:
        return self.inner.describe()


def test_oracle_audit_scores_every_item(cx_json: Path, tmp_path: Path) -> None:
    metrics = execute(audit_plan(cx_json, tmp_path / "run"))
    n = len(RECORDS)
    assert metrics["integrity"] == {"total": n, "clean": n, "recovered": 0, "failed": 0}
    assert metrics["dataset_items"] == metrics["items_scored"] == n
    for kind in ("MISSING", "UNSUPPORTED", "URGENT", "LATERALITY"):
        flag = metrics["flags"][kind]
        assert {"precision", "recall", "n"} <= set(flag)
    assert metrics["flags"]["URGENT"]["n"] == 4 * 4  # pneumothorax, nodule, mass, diffuse nodule images
    assert metrics["headline"]["urgent_recall_pneumothorax"]["k"] == 4
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["integrity"] == metrics["integrity"]
    cfg = saved["run"]["config"]
    assert cfg["datasets"][0]["sha256"] and cfg["seed"] == 0 and cfg["code"]["git_commit"]
    assert cfg["grounder"]["backend"] == "oracle" and cfg["reader"]["backend"] == "rules"


def test_interrupted_run_resumes_and_totals_are_right(cx_json: Path, tmp_path: Path) -> None:
    full = tmp_path / "full"
    execute(audit_plan(cx_json, full))
    out = tmp_path / "resumed"
    items, _ = load_all([parse_spec(f"chestx-det:{cx_json}")])
    k = 11
    with pytest.raises(KeyboardInterrupt):
        execute(audit_plan(cx_json, out, grounder=Interrupting(OracleItemGrounder(items), k)))
    assert len(records_of(out)) == k - 1  # the items finished before the interruption were saved
    assert not (out / "metrics.json").exists()
    with open(out / ITEMS_FILE, "a", encoding="utf-8") as fh:
        fh.write('{"id": "10.png", "outcome": "cle')  # killed halfway through writing a line
    metrics = execute(audit_plan(cx_json, out))
    assert metrics["run"]["resumed_items"] == k - 1
    assert metrics["run"]["new_items"] == len(RECORDS) - (k - 1)
    assert any("partial" in note for note in metrics["run"]["notes"])
    assert metrics["integrity"]["total"] == metrics["items_scored"] == len(RECORDS)
    assert records_of(out) == records_of(full)  # identical to a run that never stopped
    again = execute(audit_plan(cx_json, out))  # a finished run re-scores without redoing anything
    assert again["run"]["new_items"] == 0 and again["integrity"] == metrics["integrity"]


def test_a_rerun_with_another_configuration_is_refused(cx_json: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    execute(audit_plan(cx_json, out, seed=0))
    with pytest.raises(RunError, match="seed"):
        execute(audit_plan(cx_json, out, seed=1))


# --- a replay run with garbage outputs, on the real NIH images --------------------------------------------

# (image, gold row x,y,w,h in 1024 px, recorded output or None when the replay file has no record)
NIH_CASES: list[tuple[str, str, tuple[float, float, float, float], str | None]] = [
    (
        "00001369_000.png",
        "Cardiomegaly",
        (256, 512, 512, 256),
        '[{"label": "cardiomegaly", "box_2d": [0.5, 0.25, 0.75, 0.75]}, '
        '{"label": "pneumothorax", "box_2d": [0.1, 0.6, 0.4, 0.9]}]',
    ),
    (
        "00001933_000.png",
        "Pneumonia",
        (100, 500, 300, 300),
        "I think this chest X-ray shows some findings but I cannot say where.",
    ),
    (
        "00002578_000.png",
        "Nodule",
        (100, 100, 100, 100),
        'Findings:\n```json\n[{"label": "nodule_mass", '
        '"box_2d": [0.09765625, 0.09765625, 0.341796875, 0.1953125]}]\n```',
    ),
    ("00004296_000.png", "Atelectasis", (10, 10, 50, 50), '[{"label": "no_finding"}]'),
    ("00009745_000.png", "Effusion", (600, 600, 300, 300), None),
    ("99999999_000.png", "Mass", (500, 500, 100, 100), "[]"),  # no such image file
]


@pytest.fixture()
def nih_run_inputs(nih_images: Path, tmp_path: Path) -> tuple[Path, Path]:
    csv_path = tmp_path / "BBox_List.csv"
    rows = ["Image Index,Finding Label,Bbox [x,y,w,h],,,"]
    rows += [f"{img},{name},{x},{y},{w},{h}" for img, name, (x, y, w, h), _ in NIH_CASES]
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    replay = tmp_path / "replay.jsonl"
    lines = [
        json.dumps({"image_sha256": sha256_of(nih_images / img), "raw_output": raw, "model": "scripted"})
        for img, _, _, raw in NIH_CASES
        if raw is not None and (nih_images / img).is_file()
    ]
    replay.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, replay


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_grounding_replay_with_garbage_reports_every_failure(
    nih_images: Path, nih_run_inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path, replay = nih_run_inputs
    out = tmp_path / "g"
    argv = ["eval", "grounding", "--dataset", f"nih-bbox:{csv_path}", "--grounder", "replay"]
    argv += ["--replay", str(replay), "--images", str(nih_images), "--out", str(out)]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["integrity"] == {"total": 6, "clean": 2, "recovered": 1, "failed": 3}
    i = m["integrity"]
    assert i["clean"] + i["recovered"] + i["failed"] == i["total"] == m["dataset_items"] == m["items_scored"]
    failed = {f["id"]: f for f in m["failures"]}
    assert set(failed) == {"00001933_000.png", "00009745_000.png", "99999999_000.png"}
    assert failed["00001933_000.png"]["stage"] == "grounding"
    assert "no_recorded_output" in failed["00009745_000.png"]["reason"]
    assert (
        failed["99999999_000.png"]["stage"] == "image" and "not found" in failed["99999999_000.png"]["reason"]
    )
    # boxes by hand: 5 gold boxes (atelectasis is dropped); predictions: cardiomegaly (IoU 1),
    # pneumothorax (no gold), nodule (IoU 0.4); failed items predicted nothing
    b3, b5 = m["boxes"]["iou_0.3"], m["boxes"]["iou_0.5"]
    assert (b3["gold_boxes"], b3["pred_boxes"], b3["matched"]) == (5, 3, 2)
    assert b3["mean_iou_matched"] == pytest.approx(0.7, abs=1e-4) and b5["matched"] == 1
    head = m["headline"]
    assert (head["urgent_recall_nodule_mass"]["k"], head["urgent_recall_nodule_mass"]["n"]) == (1, 2)
    assert head["box_iou30_rate"]["value"] == pytest.approx(0.4)
    assert m["presence"]["labels"]["pneumothorax"]["fp"] == 1
    assert m["run"]["config"]["grounder"]["replay_sha256"] == sha256_of(replay)
    assert json.loads(stdout)["integrity"] == m["integrity"]
    report = (out / "report.md").read_text(encoding="utf-8")
    for row in (
        "| Metric |",
        "| Presence macro-F1 |",
        "| Box [email protected] rate | 0.400 |",
        "| Box [email protected] precision | 0.667 |",
        "| Box [email protected] rate | 0.200 |",
        "| Mean IoU on matched boxes | 0.700 |",
        "| Urgent recall, nodule / mass | 1/2 |",
        "| Urgent recall, pneumothorax | n/a (N=0) |",
        "| 99999999_000.png | image |",
    ):
        assert row in report, row


def test_audit_with_replay_failures_still_scores_every_item(
    nih_images: Path, nih_run_inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path, replay = nih_run_inputs
    out = tmp_path / "a"
    argv = ["eval", "audit", "--dataset", f"nih-bbox:{csv_path}", "--grounder", "replay"]
    argv += ["--replay", str(replay), "--images", str(nih_images), "--out", str(out)]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["integrity"]["total"] == m["items_scored"] == 6 and m["integrity"]["failed"] == 3
    assert m["integrity_by_stage"]["reading"]["failed"] == 0
    # the failed items raised no flag: what they were expected to raise counts as missed
    assert m["flags"]["URGENT"]["fn"] >= 1


def test_cli_oracle_audit_interrupt_exit_code_and_resume(
    cx_json: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    argv = ["eval", "audit", "--dataset", f"chestx-det:{cx_json}", "--out", str(out)]
    real = OracleItemGrounder.ground_item
    calls = {"n": 0}

    def flaky(self: OracleItemGrounder, item: EvalItem) -> tuple[Grounding, str | None]:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, item)

    monkeypatch.setattr(OracleItemGrounder, "ground_item", flaky)
    code, _, err = run_cli(argv, capsys)
    assert code == 130 and "Run the same command again" in err
    monkeypatch.setattr(OracleItemGrounder, "ground_item", real)
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    assert json.loads(stdout)["integrity"]["total"] == len(RECORDS)
    code, _, err = run_cli([*argv, "--seed", "3"], capsys)
    assert code == 2 and "seed" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["eval", "grounding", "--dataset", "openi:x.csv", "--grounder", "oracle"], "openi"),
        (["eval", "audit", "--dataset", "nih:x.csv"], "KIND:PATH"),
        (["eval", "audit", "--dataset", "chestx-det:/no/such.json"], "/no/such.json"),
        (["eval", "grounding", "--dataset", "nih-bbox:{csv}", "--grounder", "replay"], "--images"),
        (
            ["eval", "grounding", "--dataset", "nih-bbox:{csv}", "--grounder", "replay", "--images", "."],
            "replay",
        ),
    ],
)
def test_bad_runs_fail_with_one_line(
    argv: list[str], named: str, cx_json: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = tmp_path / "b.csv"
    csv_path.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n", encoding="utf-8")
    argv = [a.replace("{csv}", str(csv_path)) for a in argv] + ["--out", str(tmp_path / "o")]
    code, _, err = run_cli(argv, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and named in err


def test_the_flag_metrics_catch_a_reader_that_ignores_negation(cx_json: Path, tmp_path: Path) -> None:
    """The oracle run scores 1.0 with the rule reader; a reader that reads every denial as an assertion
    must score visibly worse, or the metric would be measuring nothing."""
    from auditor.draft_rules import read_draft
    from auditor.schema import DraftReading

    def deaf(text: str) -> DraftReading:
        reading = read_draft(text)
        mentions = [m.model_copy(update={"status": "present"}) for m in reading.mentions]
        return reading.model_copy(update={"mentions": mentions})

    plan = audit_plan(cx_json, tmp_path / "deaf")
    plan.reader = deaf
    flags = execute(plan)["flags"]
    assert flags["UNSUPPORTED"]["precision"] < 0.5  # pertinent negatives became assertions
    assert flags["MISSING"]["recall"] < 1.0  # "No pleural effusion." no longer denies it
    assert flags["URGENT"]["recall"] == 1.0  # the image side is untouched


def test_progress_bar_draws_only_when_asked_or_on_a_tty() -> None:
    import io

    from auditor.runfolder import Progress

    quiet = io.StringIO()
    bar = Progress(3, stream=quiet)  # a StringIO is no TTY
    bar.update()
    bar.close()
    assert quiet.getvalue() == ""
    loud = io.StringIO()
    bar = Progress(3, 1, label="eval", enabled=True, stream=loud)
    bar.update(2)
    bar.close()
    assert "eval [" in loud.getvalue() and "3/3 100%" in loud.getvalue() and loud.getvalue().endswith("\n")
