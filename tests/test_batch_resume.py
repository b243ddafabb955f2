"""audit-batch resuming only what is still valid, and one run at a time per output folder.

A finished study is reused only when it was audited from the same inputs *and* the same backends: a
local image file replaced at the same path, or a changed replay file / model / reader, redoes it. A
second run writing into the same --out fails at once instead of interleaving with the first."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import auditor.images as images
from auditor.batch import LOCK, RESULTS, backend_fingerprint, read_worklist, run_batch
from auditor.cli import CliError
from auditor.config import Settings
from auditor.images import LoadedImage
from auditor.schema import Grounding
from tests.conftest import NORMAL_PNG, URGENT_PNG, sha256_of
from tests.test_batch import (
    NIH,
    CountingGrounder,
    batch_cli,
    flags_of,
    needs_nih,
    result_lines,
    run_main,
    settings,
    write_csv,
    write_jsonl,
    write_replay,
)


def by_id(out: Path) -> dict[str, dict[str, Any]]:
    return {line["id"]: line for line in result_lines(out)}


# ---- what the backend fingerprint covers -------------------------------------------------------------


def test_backend_fingerprint_covers_the_backends_and_never_secrets(tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "replay.jsonl", {"0" * 64: "[]"})
    base = settings(replay)
    key = backend_fingerprint(base)
    assert key == backend_fingerprint(settings(replay)), "deterministic"

    # what does not change a report: secrets, where an engine listens, how long to wait
    same = [
        replace(base, api_key="sk-one"),
        replace(base, http_token="tok"),
        replace(base, engine_timeout_s=5.0, engine_retries=0, engine_max_in_flight=9),
        replace(base, reader_model="other/unused-by-rules"),  # the rule reader has no model
    ]
    assert {backend_fingerprint(s) for s in same} == {key}

    # what does: the replay file's content (not its path), the box format, the grounder and reader
    moved = tmp_path / "elsewhere.jsonl"
    shutil.copy(replay, moved)
    assert backend_fingerprint(settings(moved)) == key
    edited = write_replay(tmp_path / "edited.jsonl", {"0" * 64: "[]", "1" * 64: "[]"})
    hf = Settings(grounder="hf", reader="rules")
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Find the labels.", encoding="utf-8")
    http_reader = replace(base, reader="http", reader_url="http://127.0.0.1:9/v1")
    different = [
        settings(edited),
        replace(base, box_order="xyxy"),
        replace(base, box_scale=1000.0),
        hf,
        replace(hf, grounder_model="google/medgemma-1.5-4b-it"),
        replace(hf, grounder_revision="abc123"),
        replace(hf, grounder_prompt=prompt),
        replace(hf, grounder_dtype="float32"),  # a per-model dtype is a different configuration
        http_reader,
        replace(http_reader, reader_model="other/reader"),
        replace(http_reader, reader_api_model="served-name"),
        replace(http_reader, reader_reasoning=False),
    ]
    keys = [backend_fingerprint(s) for s in different]
    assert key not in keys and len(set(keys)) == len(keys), keys
    prompt.write_text("Find the labels, please.", encoding="utf-8")
    assert backend_fingerprint(replace(hf, grounder_prompt=prompt)) not in keys, "the prompt's content"
    assert "sk-one" not in json.dumps(keys)


# ---- resuming ----------------------------------------------------------------------------------------


@needs_nih
def test_an_image_replaced_at_the_same_path_is_redone(tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "replay.jsonl")
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(NIH / URGENT_PNG, folder / "a.png")
    shutil.copy(NIH / NORMAL_PNG, folder / "b.png")
    rows = [
        {"id": "a", "image": "images/a.png", "draft": "Cardiomegaly."},
        {"id": "b", "image": "images/b.png", "draft": "Cardiomegaly."},
    ]
    worklist = write_csv(tmp_path / "w.csv", rows)
    out = tmp_path / "out"
    run_batch(read_worklist(worklist), out, settings(replay))
    assert ("URGENT", "pneumothorax") in flags_of(by_id(out)["a"])

    # the same path now holds another radiograph; its mtime is set back, so only the bytes tell
    before = os.stat(folder / "a.png")
    shutil.copy(NIH / NORMAL_PNG, folder / "a.png")
    os.utime(folder / "a.png", ns=(before.st_atime_ns, before.st_mtime_ns))
    grounder = CountingGrounder(replay)
    summary = run_batch(read_worklist(worklist), out, settings(replay), grounder=grounder)
    assert grounder.calls == 1 and summary["resumed"] == 1, "only the replaced image is audited again"
    a = by_id(out)["a"]
    assert a["report"]["grounding"]["image"]["sha256"] == sha256_of(NIH / NORMAL_PNG)
    assert flags_of(a) == [("UNSUPPORTED", "cardiomegaly")]

    # unchanged bytes: nothing to do
    grounder = CountingGrounder(replay)
    summary = run_batch(read_worklist(worklist), out, settings(replay), grounder=grounder)
    assert grounder.calls == 0 and summary["resumed"] == 2


@needs_nih
def test_a_changed_replay_file_redoes_every_study(tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "replay.jsonl")
    rows = [
        {"id": f"s{i}", "image": str(NIH / name), "draft": "No pneumothorax."}
        for i, name in enumerate([URGENT_PNG, NORMAL_PNG, URGENT_PNG])
    ]
    worklist = write_csv(tmp_path / "w.csv", rows)
    out = tmp_path / "out"
    run_batch(read_worklist(worklist), out, settings(replay))
    assert flags_of(by_id(out)["s1"]) == []

    # a re-recorded output for one image: every study is redone, since any might depend on it
    write_replay(replay, {sha256_of(NIH / NORMAL_PNG): '[{"label": "pneumothorax"}]'})
    grounder = CountingGrounder(replay)
    summary = run_batch(read_worklist(worklist), out, settings(replay), grounder=grounder)
    assert grounder.calls == 3 and summary["resumed"] == 0
    assert ("URGENT", "pneumothorax") in flags_of(by_id(out)["s1"])
    assert len(result_lines(out)) == 3


@needs_nih
def test_data_uris_resume_from_their_content(tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "replay.jsonl")

    def uri(name: str) -> str:
        return "data:image/png;base64," + base64.b64encode((NIH / name).read_bytes()).decode("ascii")

    rows = [
        {"id": "a", "image": uri(URGENT_PNG), "draft": "No pneumothorax."},
        {"id": "b", "image": uri(NORMAL_PNG), "draft": "No pneumothorax."},
    ]
    worklist = write_jsonl(tmp_path / "w.jsonl", rows)
    out = tmp_path / "out"
    run_batch(read_worklist(worklist), out, settings(replay))
    grounder = CountingGrounder(replay)
    assert run_batch(read_worklist(worklist), out, settings(replay), grounder=grounder)["resumed"] == 2
    assert grounder.calls == 0
    rows[1]["image"] = uri(URGENT_PNG)
    write_jsonl(worklist, rows)
    grounder = CountingGrounder(replay)
    assert run_batch(read_worklist(worklist), out, settings(replay), grounder=grounder)["resumed"] == 1
    assert grounder.calls == 1


@needs_nih
def test_urls_are_not_fetched_again_to_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replay = write_replay(tmp_path / "replay.jsonl")
    fetched: list[str] = []

    def fake_fetch(url: str, limits: object) -> tuple[bytes, str]:
        fetched.append(url)
        return (NIH / URGENT_PNG).read_bytes(), "URL"

    monkeypatch.setattr(images, "_fetch_url", fake_fetch)
    url = "https://pacs.example.org/studies/1.png"
    worklist = write_csv(tmp_path / "w.csv", [{"id": "u", "image": url, "draft": "No pneumothorax."}])
    out = tmp_path / "out"
    run_batch(read_worklist(worklist), out, settings(replay))
    assert fetched == [url]
    assert run_batch(read_worklist(worklist), out, settings(replay))["resumed"] == 1
    assert fetched == [url], "a finished URL study is reused without fetching it"
    write_replay(replay, {"0" * 64: "[]"})
    assert run_batch(read_worklist(worklist), out, settings(replay))["resumed"] == 0
    assert fetched == [url, url], "a changed backend redoes it"


# ---- one run per folder ------------------------------------------------------------------------------


class ReentrantGrounder(CountingGrounder):
    """While grounding its first image, starts a second run into the same folder and keeps the error."""

    def __init__(self, replay: Path, second: Any) -> None:
        super().__init__(replay)
        self.second = second
        self.error: CliError | None = None

    def ground(self, image: LoadedImage) -> Grounding:
        if self.calls == 0:
            with pytest.raises(CliError) as info:
                self.second()
            self.error = info.value
        return super().ground(image)


@needs_nih
def test_a_second_run_into_the_same_folder_fails_at_once(tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "replay.jsonl")
    rows = [{"id": f"s{i}", "image": str(NIH / URGENT_PNG), "draft": "No pneumothorax."} for i in range(3)]
    worklist = write_csv(tmp_path / "w.csv", rows)
    out = tmp_path / "out"
    studies = read_worklist(worklist)

    def second() -> None:
        run_batch(studies, out, settings(replay))

    first = ReentrantGrounder(replay, second)
    summary = run_batch(studies, out, settings(replay), grounder=first)
    assert first.error is not None and str(first.error) == f"another audit-batch run is writing {out}"
    assert first.calls == 3 and summary["audited"] == 3
    assert [line["id"] for line in result_lines(out)] == ["s0", "s1", "s2"], "no line lost or doubled"
    # the lock goes with the run: the next one resumes normally
    assert run_batch(studies, out, settings(replay))["resumed"] == 3


def test_a_locked_folder_is_one_line_from_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replay = write_replay(tmp_path / "replay.jsonl", {"0" * 64: "[]"})
    worklist = write_csv(tmp_path / "w.csv", [{"id": "a", "image": "a.png", "draft": ""}])
    out = tmp_path / "out"
    out.mkdir()
    (out / RESULTS).write_text('{"id": "a", "input": "x", "error": {"code": "c", "message": "m"}}\n')
    with open(out / LOCK, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, stdout, err = run_main(batch_cli(worklist, out, replay), capsys)
    assert code == 2 and stdout == ""
    assert err.strip() == f"cxr-auditor: error: another audit-batch run is writing {out}"
    assert (out / RESULTS).read_text().startswith('{"id": "a", "input": "x"'), "left untouched"
