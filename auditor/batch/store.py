"""The run folder of `audit-batch`: ``results.jsonl`` (one typed `ResultLine` per study, streamed as
studies finish), the file names beside it, and resuming.

A rerun keeps a finished line only when it audited this very study: the same inputs (draft, context,
image source), the same backend configuration (`backend_fingerprint`), for a local file the same
bytes, for an archive study the same instance, and a picture still on disk. Everything else (failed,
stale, unreadable, cut off by a kill) is dropped and redone, and the file is rewritten with only the
kept lines so that the lines appended next never repeat an id.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict

from auditor.batch.worklist import Study
from auditor.cli_common import CliError
from auditor.errors import Failure
from auditor.report_html import KINDS
from auditor.runfolder import read_jsonl, write_text_atomic
from auditor.schema import AuditReport, Flag

if TYPE_CHECKING:
    from auditor.config import Settings

RESULTS: Final = "results.jsonl"
SUMMARY: Final = "summary.json"
REPORT: Final = "report.html"
PICTURES: Final = "pictures"


# ---- the results line ------------------------------------------------------------------------------


class PictureRef(BaseModel):
    """The study's picture, drawn when it was audited and kept under ``pictures/``."""

    file: str
    mime_type: str
    width: int
    height: int


class ArchiveInstance(BaseModel):
    """For a study read from a DICOMweb archive: the instance read, and the sha256 of its bytes."""

    series_uid: str
    sop_instance_uid: str
    sha256: str


class ResultLine(BaseModel):
    """One line of ``results.jsonl``: a study's audit (``report``, ``picture``) or its ``error``, under
    its ``id`` and ``input`` (the key of its inputs and backends, see ``Study.input_key``)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    input: str | None = None
    instance: ArchiveInstance | None = None
    report: AuditReport | None = None
    picture: PictureRef | None = None
    error: Failure | None = None

    def to_json(self) -> str:
        """One JSON line without the fields this study does not have."""
        unset = {
            name
            for name in ("input", "instance", "report", "picture", "error")
            if getattr(self, name) is None
        }
        return self.model_dump_json(exclude=unset) + "\n"


def picture_name(ident: str) -> str:
    """Where a study's picture lives: named by a hash of its id, since ids may hold any character."""
    return f"{PICTURES}/{hashlib.sha256(ident.encode('utf-8')).hexdigest()[:24]}.jpg"


def picture_path(out_dir: Path, line: ResultLine) -> Path | None:
    """The picture of a results line, if it has one. Always derived from the id, never taken from the
    line, so an edited results file cannot make the report show some other file."""
    return out_dir / picture_name(line.id) if line.picture is not None else None


# ---- what decides a report -----------------------------------------------------------------------------


def _file_sha256(path: Path) -> str | None:
    """The sha256 of a file's bytes (what ``ImageInfo.sha256`` holds), None if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def backend_fingerprint(settings: Settings) -> str:
    """Hash of the backend configuration that decides a report: which grounder and reader, their
    models, revisions and prompts, the replay file's content, the box format. Only what the chosen
    backends use counts (a reader setting does not matter to the rule reader), and never a secret
    (``api_key``, ``http_token``) nor where an engine listens."""
    from auditor.backends.factory import resolve_reader_kind
    from auditor.prompts import GROUNDING_VERSION, READER_VERSION

    def prompt(path: Path | None, builtin: str) -> str | None:
        return builtin if path is None else _file_sha256(path)

    grounder: dict[str, object] = {"kind": settings.grounder, "box": [settings.box_order, settings.box_scale]}
    if settings.grounder == "replay":
        grounder["replay_sha256"] = _file_sha256(settings.replay) if settings.replay else None
    else:
        grounder |= {
            "model": settings.grounder_model,
            "revision": settings.grounder_revision,
            "api_model": settings.grounder_api_model,
            "prompt": prompt(settings.grounder_prompt, GROUNDING_VERSION),
            "max_new_tokens": settings.grounder_max_new_tokens,
            "dtype": settings.grounder_dtype or settings.dtype,
        }
    kind = resolve_reader_kind(settings)
    reader: dict[str, object] = {"kind": kind}
    if kind != "rules":
        reader |= {
            "model": settings.reader_model,
            "revision": settings.reader_revision,
            "api_model": settings.reader_api_model,
            "prompt": prompt(settings.reader_prompt, READER_VERSION),
            "max_new_tokens": settings.reader_max_new_tokens,
            "reasoning": [settings.reader_reasoning, settings.reader_reasoning_budget],
            "dtype": settings.reader_dtype or settings.dtype,
        }
    blob = json.dumps({"grounder": grounder, "reader": reader}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


# ---- resuming ----------------------------------------------------------------------------------------


@dataclass
class _ImageHashes:
    """The sha256 of each local image file, read once per resume however many studies share it."""

    known: dict[Path, str | None] = field(default_factory=dict)

    def __call__(self, path: Path) -> str | None:
        if path not in self.known:
            self.known[path] = _file_sha256(path)
        return self.known[path]


def _reusable(
    line: ResultLine, study: Study | None, backend: str, out_dir: Path, hashes: _ImageHashes
) -> bool:
    """Whether a previous line audited this very study (same inputs, same backend configuration, and
    for a local file the same bytes) and its picture (if it had one) is still on disk. An http(s)
    image is not fetched again to check it."""
    report = line.report
    if study is None or report is None or line.input != study.input_key(backend):
        return False
    picture = picture_path(out_dir, line)
    if picture is not None and not picture.is_file():
        return False
    info = report.grounding.image if report.grounding is not None else None
    path = study.local_image
    if path is not None and (info is None or hashes(path) != info.sha256):
        return False
    return not study.study_uid or _same_instance(line.instance, info.sha256 if info else None)


def _same_instance(record: ArchiveInstance | None, sha256: str | None) -> bool:
    """An archive study's line resumes when it recorded the instance it read (SOP Instance UID) and
    that instance's bytes are the ones the report was made from; the archive is not asked again (a
    SOP Instance UID names content that does not change)."""
    return record is not None and bool(record.sop_instance_uid) and record.sha256 == sha256


def resume(out_dir: Path, studies: Sequence[Study], backend: str) -> dict[str, ResultLine]:
    """Keep the finished lines of an earlier run and rewrite the file with only those, so that the
    lines appended now never duplicate an id (failed, stale and unreadable lines are dropped and
    redone; a torn last line too). ``backend`` is ``backend_fingerprint`` of this run's settings."""
    by_id = {s.id: s for s in studies}
    path = out_dir / RESULTS
    try:
        scan = read_jsonl(path, ResultLine.model_validate_json)
    except OSError as exc:
        raise CliError(f"{path}: cannot read ({exc.strerror})") from None
    hashes = _ImageHashes()
    kept: dict[str, ResultLine] = {}
    for _, line in scan.lines:
        if line.id not in kept and _reusable(line, by_id.get(line.id), backend, out_dir, hashes):
            kept[line.id] = line
    if scan.size:
        write_text_atomic(path, "".join(line.to_json() for line in kept.values()))
    return kept


# ---- totals ----------------------------------------------------------------------------------------


def _unreported(flag: Flag) -> bool:
    """An URGENT flag the draft does not state as present (denied, hedged, not mentioned, no draft)."""
    return flag.kind == "URGENT" and flag.draft_status != "present"


def summarize(lines: Sequence[ResultLine], resumed: int = 0) -> dict[str, Any]:
    """Totals over every study of the worklist: they add up (audited + failed = studies)."""
    reports = [line.report for line in lines if line.report is not None]
    flags = Counter(f.kind for rep in reports for f in rep.comparison.flags)
    failures = Counter(line.error.code for line in lines if line.report is None and line.error is not None)
    return {
        "studies": len(lines),
        "audited": len(reports),
        "failed": sum(failures.values()),
        "resumed": resumed,
        "flags": {k: flags.get(k, 0) for k in KINDS},
        "studies_with_flags": sum(1 for rep in reports if rep.comparison.flags),
        "studies_with_urgent": sum(
            1 for rep in reports if any(f.kind == "URGENT" for f in rep.comparison.flags)
        ),
        # URGENT that the draft does not already report: the ones a reader may not have seen
        "urgent_not_in_draft": sum(1 for rep in reports for f in rep.comparison.flags if _unreported(f)),
        "studies_with_urgent_not_in_draft": sum(
            1 for rep in reports if any(_unreported(f) for f in rep.comparison.flags)
        ),
        "modes": dict(sorted(Counter(rep.comparison.mode for rep in reports).items())),
        "failures": dict(sorted(failures.items())),
    }
