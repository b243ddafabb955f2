"""A run folder: ``run.json`` (configuration, its hash, provenance) and ``items.jsonl`` (one record per
finished item, appended and flushed as each finishes).

Resuming is the point: a rerun with the same ``--out`` reads the records already there and skips those
ids. It refuses, naming the settings that differ, when the configuration hash is not the one the folder
was started with, because mixing two configurations' records would produce a number nobody ran. A
last line cut off mid-write (the process was killed) is discarded and that item is redone.

Reading and repairing are separate: `load_records` only reads (``eval compare`` and scoring use it, and
never touch the file); only the writer that resumes a run (`RunStore.start`) truncates a torn last line.
One writer at a time: `RunStore.start` holds an exclusive lock on ``DIR/.lock`` until `RunStore.close`,
so a second run into the same folder fails at once instead of interleaving its records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from auditor.errors import AuditorError
from auditor.eval.provenance import config_diff, config_hash
from auditor.eval.records import ItemRecord
from auditor.runfolder import LOCK_FILE, FolderBusy, FolderLock, JsonlScan, read_jsonl, repair_jsonl
from auditor.runfolder import write_text_atomic as write_text_atomic

RUN_FILE = "run.json"
ITEMS_FILE = "items.jsonl"
PARTIAL_NOTE = f"{ITEMS_FILE}: discarded a partial last line (item redone)"


class RunError(AuditorError, ValueError):
    """The run folder cannot be used as asked; the message says why and what to do."""

    code = "invalid_run_folder"


def parse_items(path: Path) -> tuple[dict[str, ItemRecord], JsonlScan[ItemRecord]]:
    """Read ``items.jsonl`` without changing it: the records by id, and the scan (torn last line,
    where the whole lines end). A torn last line is ignored; any other bad line, or a second record
    for one id, is a RunError naming the line."""
    scan = read_jsonl(path, ItemRecord.model_validate_json)
    if scan.bad:
        number, why = scan.bad[0]
        raise RunError(f"{path}:{number}: not a valid item record ({why})")
    records: dict[str, ItemRecord] = {}
    for number, record in scan.lines:
        if record.id in records:
            raise RunError(f"{path}:{number}: a second record for item {record.id!r}")
        records[record.id] = record
    return records, scan


def load_records(out: Path) -> dict[str, ItemRecord]:
    """Every whole record in a run folder, read-only (a torn last line is left in place and ignored)."""
    return parse_items(out / ITEMS_FILE)[0]


class RunStore:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.items_path = out / ITEMS_FILE
        self.run_path = out / RUN_FILE
        self.lock_path = out / LOCK_FILE
        self._fh: IO[str] | None = None
        self._lock = FolderLock(out)
        self.notes: list[str] = []

    def start(self, config: dict[str, Any], provenance: dict[str, Any]) -> dict[str, ItemRecord]:
        """Lock the folder, create it or check it belongs to this configuration, repair a torn last line;
        return the finished records. On any error the lock is released again."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._acquire()
        try:
            self._check_or_create(config, provenance)
            done = self._read_done()
            self._fh = open(self.items_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except BaseException:
            self._release()
            raise
        return done

    def _acquire(self) -> None:
        try:
            self._lock.acquire()
        except FolderBusy:
            raise RunError(
                f"another run is writing {self.out}: wait for it to finish, or use another --out folder"
            ) from None

    def _release(self) -> None:
        self._lock.release()

    def _check_or_create(self, config: dict[str, Any], provenance: dict[str, Any]) -> None:
        digest = config_hash(config)
        if self.run_path.exists():
            old = json.loads(self.run_path.read_text(encoding="utf-8"))
            if old.get("config_sha256") != digest:
                changed = ", ".join(config_diff(old.get("config", {}), config)) or "(unknown)"
                raise RunError(
                    f"{self.out} holds a run with a different configuration (changed: {changed}); "
                    "use a new --out folder, or delete this one to start over"
                )
        elif self.items_path.exists():
            raise RunError(f"{self.items_path} exists without {RUN_FILE}: not a run folder of this tool")
        else:
            record = {"config": config, "config_sha256": digest, "provenance": provenance}
            write_text_atomic(self.run_path, json.dumps(record, indent=2, sort_keys=True) + "\n")

    def _read_done(self) -> dict[str, ItemRecord]:
        """The finished records; the writer (only) cuts a torn last line off and restores a lost
        newline, so that the records it appends start on a line of their own."""
        records, scan = parse_items(self.items_path)
        if scan.torn:
            self.notes.append(PARTIAL_NOTE)
        repair_jsonl(self.items_path, scan)
        return records

    def append(self, record: ItemRecord) -> None:
        assert self._fh is not None, "start() first"
        self._fh.write(record.model_dump_json(exclude_defaults=True) + "\n")
        self._fh.flush()

    def close_items(self) -> None:
        """Flush, sync and close ``items.jsonl``; the folder stays locked (scoring comes next)."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            try:
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fh.close()

    def close(self) -> None:
        """Close ``items.jsonl`` and release the folder's lock. Safe to call twice."""
        try:
            self.close_items()
        finally:
            self._release()

    def read_all(self) -> dict[str, ItemRecord]:
        """Every record now in the folder (after a run, for scoring); reads only."""
        return load_records(self.out)


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def ids_in_order(records: dict[str, ItemRecord], ids: Iterable[str]) -> list[ItemRecord]:
    """Records in dataset order; a dataset id without a record is an error (nothing is ever skipped)."""
    out = []
    missing = []
    for item_id in ids:
        rec = records.get(item_id)
        if rec is None:
            missing.append(item_id)
        else:
            out.append(rec)
    if missing:
        raise RunError(f"{len(missing)} item(s) have no record, e.g. {missing[:3]}: the run did not finish")
    return out
