"""The run folder toolkit that `audit-batch` and `eval` share: a JSONL reader that survives a kill
mid-write, whole-or-nothing writes through a uniquely named, synced temporary file, one writer per
folder, and one progress bar."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from auditor.runfolder import FolderBusy, FolderLock, Progress, read_jsonl, repair_jsonl, write_text_atomic


def test_a_torn_last_line_is_reported_and_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": 2}\n{"a": 3, "b')
    scan = read_jsonl(path, json.loads)
    assert [(n, v["a"]) for n, v in scan.lines] == [(1, 1), (3, 2)] and scan.torn and not scan.bad
    assert path.read_bytes().endswith(b'"b'), "reading never changes the file"
    repair_jsonl(path, scan)
    assert path.read_bytes() == b'{"a": 1}\n\n{"a": 2}\n'


def test_a_lost_newline_is_restored_and_bad_lines_are_left_to_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b'{"a": 1}\nnot json\n{"a": 2}')
    scan = read_jsonl(path, json.loads)
    assert [n for n, _ in scan.lines] == [1, 3] and scan.bad[0][0] == 2 and scan.newline_lost
    repair_jsonl(path, scan)
    assert path.read_bytes() == b'{"a": 1}\nnot json\n{"a": 2}\n'
    assert read_jsonl(tmp_path / "absent.jsonl", json.loads).lines == []


def test_atomic_writes_sync_and_never_share_a_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers of one file (two runs racing, a resume and a report) each get their own temp file."""
    temps: list[str] = []
    synced: list[int] = []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(os, "replace", lambda src, dst: (temps.append(str(src)), real_replace(src, dst)))
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    target = tmp_path / "summary.json"
    write_text_atomic(target, "one\n")
    write_text_atomic(target, "two\n")
    assert target.read_text(encoding="utf-8") == "two\n"
    assert len(set(temps)) == 2 and len(synced) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_one_writer_per_folder(tmp_path: Path) -> None:
    with FolderLock(tmp_path), pytest.raises(FolderBusy, match="another run is writing"):
        FolderLock(tmp_path).acquire()
    with FolderLock(tmp_path):  # free again once released
        pass


def test_progress_redraws_on_a_terminal_and_writes_lines_elsewhere() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    bar = Progress(4, 1, label="audit-batch", stream=tty)
    for failed in (False, True, False):
        bar.update(failed=failed)
    bar.close()
    text = tty.getvalue()
    assert "\r\x1b[K" in text and text.endswith("\n") and text.count("\n") == 1
    assert "audit-batch [" in text and "4/4 100%  1 failed" in text and "1 resumed" in text
    log = io.StringIO()
    bar = Progress(2, label="eval", enabled=True, stream=log)
    bar.update()
    bar.update()
    bar.close()
    assert (
        "\r" not in log.getvalue()
        and log.getvalue().splitlines()[-1].startswith("eval [")
        and "2/2" in log.getvalue()
    )
    quiet = io.StringIO()
    Progress(2, stream=quiet).close()
    assert quiet.getvalue() == "", "off a terminal nothing is drawn unless asked"
