"""A run folder: ``run.json`` (configuration, its hash, provenance) and ``items.jsonl`` (one record per
finished item, appended and flushed as each finishes).

Resuming is the point: a rerun with the same ``--out`` reads the records already there and skips those
ids. It refuses, naming the settings that differ, when the configuration hash is not the one the folder
was started with, because mixing two configurations' records would produce a number nobody ran. A
last line cut off mid-write (the process was killed) is discarded and that item is redone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from auditor.eval.provenance import config_diff, config_hash
from auditor.eval.records import ItemRecord

RUN_FILE = "run.json"
ITEMS_FILE = "items.jsonl"


class RunError(ValueError):
    """The run folder cannot be used as asked; the message says why and what to do."""


class RunStore:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.items_path = out / ITEMS_FILE
        self.run_path = out / RUN_FILE
        self._fh: IO[str] | None = None
        self.notes: list[str] = []

    def start(self, config: dict[str, Any], provenance: dict[str, Any]) -> dict[str, ItemRecord]:
        """Create the folder, or check it belongs to this configuration; return the finished records."""
        self.out.mkdir(parents=True, exist_ok=True)
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
            self.run_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        done = self._read_done()
        self._fh = open(self.items_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        return done

    def _read_done(self) -> dict[str, ItemRecord]:
        if not self.items_path.exists():
            return {}
        data = self.items_path.read_bytes()
        lines = data.split(b"\n")
        done: dict[str, ItemRecord] = {}
        keep = 0
        for number, line in enumerate(lines, start=1):
            last = number == len(lines)
            if not line.strip():
                keep += len(line) + (0 if last else 1)
                continue
            try:
                record = ItemRecord.model_validate_json(line)
            except ValidationError as exc:
                if last:  # written partly when the run was killed: redo that item
                    self.notes.append(f"{ITEMS_FILE}: discarded a partial last line (item redone)")
                    break
                raise RunError(
                    f"{self.items_path}:{number}: not a valid item record ({exc.errors()[0]['msg']})"
                ) from None
            if record.id in done:
                raise RunError(f"{self.items_path}:{number}: a second record for item {record.id!r}")
            done[record.id] = record
            keep += len(line) + (0 if last else 1)
        if keep < len(data) or (keep and not data[:keep].endswith(b"\n")):
            with open(self.items_path, "r+b") as fh:
                fh.truncate(keep)
                if keep and not data[:keep].endswith(b"\n"):  # a whole record whose newline was lost
                    fh.seek(keep)
                    fh.write(b"\n")
        return done

    def append(self, record: ItemRecord) -> None:
        assert self._fh is not None, "start() first"
        self._fh.write(record.model_dump_json(exclude_defaults=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def read_all(self) -> dict[str, ItemRecord]:
        """Every record now in the folder (after a run, for scoring)."""
        return self._read_done()


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


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
