"""The typed results line of `audit-batch`, resuming from a results file (including one written before the
lines were typed), and thumbnails for runs made before there were any. No shared data needed: the
images are data: URIs and generated pictures."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from auditor.batch.pictures import THUMB_BYTES, THUMB_SIDE, THUMBS, thumb_name, thumbnail
from auditor.batch.store import RESULTS, PictureRef, ResultLine, picture_name, resume
from auditor.batch.worklist import Study
from auditor.compare import compare
from auditor.draft_rules import read_draft
from auditor.errors import Failure
from auditor.labels import Label
from auditor.schema import AuditReport, Box, Grounding, ImageFinding, ModelInfo, ParseOutcome

IMAGE = "data:image/png;base64,iVBORw0KGgo="  # a data: URI is its own content: no file to hash


def report(draft: str = "No pneumothorax.") -> AuditReport:
    grounding = Grounding(
        findings=[ImageFinding(label=Label.PNEUMOTHORAX, box=Box(x0=0.6, y0=0.1, x1=0.9, y1=0.4))],
        outcome=ParseOutcome.CLEAN,
        model=ModelInfo(backend="test", model_id="test"),
    )
    reading = read_draft(draft)
    return AuditReport(grounding=grounding, reading=reading, comparison=compare(grounding, reading))


def test_a_line_holds_only_the_fields_its_study_has() -> None:
    failed = ResultLine(id="a", input="k", error=Failure("not_found", "gone"))
    assert json.loads(failed.to_json()) == {
        "id": "a",
        "input": "k",
        "error": {"code": "not_found", "message": "gone"},
    }
    audited = ResultLine(id="b", input="k", report=report())
    assert set(json.loads(audited.to_json())) == {"id", "input", "report"}
    assert ResultLine.model_validate_json(audited.to_json()) == audited


def test_resume_keeps_finished_lines_even_from_the_untyped_writer(tmp_path: Path) -> None:
    study, changed = Study("a", 1, IMAGE, "No pneumothorax."), Study("b", 2, IMAGE, "Other draft.")
    finished = report()
    old_style = {  # as json.dumps wrote them before the lines were typed: picture null, spaces, UTF-8
        "id": "a",
        "input": study.input_key("cfg"),
        "report": finished.model_dump(mode="json"),
        "picture": None,
    }
    stale = {"id": "b", "input": "from-another-draft", "report": report().model_dump(mode="json")}
    text = json.dumps(old_style, ensure_ascii=False) + "\n" + json.dumps(stale) + '\n{"id": "c", "inp'
    (tmp_path / RESULTS).write_text(text, encoding="utf-8")
    kept = resume(tmp_path, [study, changed], "cfg")
    assert list(kept) == ["a"] and kept["a"].report == finished
    assert [json.loads(line)["id"] for line in (tmp_path / RESULTS).read_text().splitlines()] == ["a"]
    assert resume(tmp_path, [study], "other-backends") == {}, "another backend configuration redoes it"


def test_a_run_from_before_thumbnails_gets_them_made_once(tmp_path: Path) -> None:
    (tmp_path / THUMBS).mkdir(parents=True)
    full = io.BytesIO()
    Image.effect_noise((640, 640), 60).convert("RGB").save(full, format="JPEG", quality=90)
    (tmp_path / picture_name("a")).write_bytes(full.getvalue())
    line = ResultLine(
        id="a", report=report(), picture=PictureRef(file="x", mime_type="image/jpeg", width=640, height=640)
    )
    made = thumbnail(tmp_path, line)
    assert made is not None and max(made.width, made.height) == THUMB_SIDE and len(made.data) <= THUMB_BYTES
    assert (tmp_path / thumb_name("a")).read_bytes() == made.data
    assert thumbnail(tmp_path, line) == made, "read back, not made again"
    assert thumbnail(tmp_path, ResultLine(id="b", report=report())) is None
