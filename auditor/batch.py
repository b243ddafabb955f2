"""`cxr-auditor audit-batch`: audit a day's worklist in one run, resumably, with a report to open.

Every study goes through ``Auditor.audit``, the pipeline behind the MCP ``audit`` tool, so a batch
never judges differently from an interactive call. Results stream to ``DIR/results.jsonl`` as they
finish, one line per study and never a missing one: a study that fails is a line with its error. A
rerun keeps the finished lines whose inputs are unchanged, redoes the rest (failed, missing, cut off
by a kill, or audited from another image file or with other backends), and so resumes an interrupted
run. One run at a time writes into a folder (a lock on ``DIR/.lock``). At the end come
``summary.json`` (also printed) and ``report.html`` (see ``auditor.report_html``); the pictures it
inlines are drawn while the image is still in memory and kept in ``DIR/pictures/`` so a resumed run
need not load finished images again.

Research and educational QA only: not a medical device and not a diagnosis.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

from pydantic import ValidationError

from auditor.cli import EXIT_MODEL, EXIT_STUDIES_FAILED, CliError, emit, read_text
from auditor.cli_flags import add_backend_flags, add_progress_flag
from auditor.report_html import KINDS, StudyFailure, StudyResult, render_report
from auditor.schema import AuditReport, StudyContext

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from auditor.backends import BackendState, DraftReader, Grounder
    from auditor.config import Settings
    from auditor.images import LoadedImage
    from auditor.overlay import RenderedImage
    from auditor.pipeline import Auditor
    from auditor.schema import Grounding

RESULTS: Final = "results.jsonl"
SUMMARY: Final = "summary.json"
REPORT: Final = "report.html"
PICTURES: Final = "pictures"
LOCK: Final = ".lock"
COLUMNS: Final = ("id", "image", "draft", "age_years", "view", "study_uid")
REQUIRED_COLUMNS: Final = ("id", "image")
"""``study_uid`` (a study in the configured DICOMweb archive) may stand in for ``image``."""
View = Literal["PA", "AP", "lateral"]
VIEWS: Final[dict[str, View]] = {"pa": "PA", "ap": "AP", "lateral": "lateral"}
PICTURE_SIDE: Final = 640
PICTURE_BYTES: Final = 120_000
"""Large enough to see a nodule's box when enlarged (the page shows it at 320 px, click for 640); 500 of
them keep the page openable."""
EXIT_INTERRUPTED: Final = 130
MODEL_DOWN: Final = frozenset({"load_failed", "device_unavailable", "download_failed"})
"""Failures of the model itself, not of one study: the next study would fail the same way."""


# ---- the worklist ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Study:
    """One worklist entry, checked. ``problem`` is a bad field found while reading it: the study then
    becomes an error line instead of stopping the whole worklist."""

    id: str
    line: int
    image: str
    draft: str = ""
    context: StudyContext | None = None
    problem: StudyFailure | None = None
    study_uid: str | None = None

    @property
    def fingerprint(self) -> str:
        """Hash of the study's own inputs (image source, draft, context, problem). A data: URI is its
        own content, so a changed picture changes this hash; a local file's bytes are checked on
        resume instead (see ``resume``)."""
        ctx = self.context.model_dump(mode="json") if self.context else None
        problem = self.problem.code if self.problem else None
        archive = [self.study_uid] if self.study_uid else []
        blob = json.dumps(
            [self.image, self.draft, ctx, problem, *archive], sort_keys=True, ensure_ascii=False
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def input_key(self, backend: str) -> str:
        """The ``input`` of its results line: the study's inputs and the backends that audit it."""
        return hashlib.sha256(f"{self.fingerprint}:{backend}".encode("ascii")).hexdigest()[:16]

    @property
    def local_image(self) -> Path | None:
        """The image as a local file, or None for an http(s) URL or a data: URI."""
        if not self.image or self.image[:8].lower().startswith(("http://", "https://", "data:")):
            return None
        return Path(self.image)


class _BadField(Exception):
    """A per-study field that cannot be used; becomes that study's error line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.failure = StudyFailure(code, message)


def _is_jsonl(path: Path, text: str) -> bool:
    """By extension; otherwise JSONL when the first non-blank character opens an object."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return True
    if suffix == ".csv":
        return False
    return text.lstrip().startswith("{")


def _csv_header(path: Path, line: int, row: list[str]) -> list[str]:
    header = [cell.strip().lower() for cell in row]
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise CliError(f"{path}:{line}: CSV header repeats column(s) {', '.join(map(repr, dupes))}")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise CliError(
            f"{path}:{line}: CSV header has unknown column(s) {', '.join(map(repr, unknown))} "
            f"(expected {', '.join(COLUMNS)})"
        )
    missing = [
        c for c in REQUIRED_COLUMNS if c not in header and not (c == "image" and "study_uid" in header)
    ]
    if missing:
        raise CliError(
            f"{path}:{line}: CSV header lacks {' and '.join(map(repr, missing))} (it has {', '.join(header)})"
        )
    return header


def _csv_records(path: Path, text: str) -> Iterator[tuple[int, dict[str, object]]]:
    """(line the record starts on, column -> cell) for each non-blank row after the header."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    last = 0
    try:
        for row in reader:
            start, last = last + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = _csv_header(path, start, row)
                continue
            if len(row) != len(header):
                raise CliError(f"{path}:{start}: {len(row)} fields, but the header has {len(header)}")
            yield start, dict(zip(header, row, strict=True))
    except csv.Error as exc:
        raise CliError(f"{path}:{reader.line_num}: bad CSV ({exc})") from None
    if header is None:
        raise CliError(f"{path}: empty worklist (no CSV header; expected {', '.join(COLUMNS)})")


_SURROGATE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _encodable(item: object) -> bool:
    """JSON may spell lone surrogates (\\ud800), which no UTF-8 results file or page can hold."""
    try:
        json.dumps(item, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _jsonl_records(path: Path, text: str) -> Iterator[tuple[int, dict[str, object]]]:
    """(line number, object) for each non-blank line. Split on newlines only: JSON strings may hold
    U+2028 and friends, which ``str.splitlines`` would cut."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(item, dict):
            raise CliError(f"{path}:{number}: expected a JSON object with 'id' and 'image'")
        if _SURROGATE.search(line) and not _encodable(item):
            raise CliError(
                f"{path}:{number}: a string holds an unpaired surrogate escape (not valid Unicode)"
            )
        unknown = sorted(set(item) - set(COLUMNS))
        if unknown:
            raise CliError(
                f"{path}:{number}: unknown field(s) {', '.join(map(repr, unknown))} "
                f"(expected {', '.join(COLUMNS)})"
            )
        yield number, item


def _study_id(path: Path, line: int, value: object) -> str:
    """Ids name results across reruns, so a study without one stops the worklist (file:line)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise CliError(f"{path}:{line}: 'id' must be a string (or an integer), got {type(value).__name__}")
    ident = str(value).strip()
    if not ident:
        raise CliError(f"{path}:{line}: empty 'id'")
    return ident


def _image_source(value: object, folder: Path) -> str:
    """A URL or data: URI as given; a path relative to the worklist's folder made absolute."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _BadField("missing_image", "no image given")
    if not isinstance(value, str):
        raise _BadField("invalid_image", f"'image' must be a string, got {type(value).__name__}")
    text = value.strip()
    if text[:8].lower().startswith(("http://", "https://", "data:")):
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else folder / path)


def _draft(value: object) -> str:
    from auditor.tool_io import MAX_DRAFT_CHARS

    if value is None:
        return ""
    if not isinstance(value, str):
        raise _BadField("invalid_draft", f"'draft' must be text, got {type(value).__name__}")
    if len(value) > MAX_DRAFT_CHARS:
        raise _BadField("draft_too_long", f"draft too long ({len(value)} > {MAX_DRAFT_CHARS} characters)")
    return value


def _age(value: object) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _BadField("invalid_age_years", f"'age_years' must be a number, got {type(value).__name__}")
    try:
        age = float(value)
    except ValueError:
        raise _BadField("invalid_age_years", f"'age_years' is not a number: {str(value)[:40]!r}") from None
    if not math.isfinite(age) or not 0 <= age <= 130:
        raise _BadField("invalid_age_years", f"'age_years' must be between 0 and 130, got {age:g}")
    return age


def _view(value: object) -> View | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    view = VIEWS.get(str(value).strip().lower())
    if view is None:
        raise _BadField("invalid_view", f"unknown view {str(value)[:40]!r} (expected PA, AP or lateral)")
    return view


def _study(path: Path, line: int, record: Mapping[str, object]) -> Study:
    """One record -> a Study; a bad field becomes the study's ``problem``, never a worklist error."""
    ident = _study_id(path, line, record.get("id"))
    image = str(record.get("image") or "")
    try:
        study_uid = _study_uid(record)
        image = "" if study_uid else _image_source(record.get("image"), path.parent)
        draft = _draft(record.get("draft"))
        age, view = _age(record.get("age_years")), _view(record.get("view"))
    except _BadField as bad:
        return Study(ident, line, image, problem=bad.failure)
    context = StudyContext(age_years=age, view=view) if age is not None or view is not None else None
    return Study(ident, line, image, draft, context, study_uid=study_uid)


def _study_uid(record: Mapping[str, object]) -> str | None:
    """A study in the configured DICOMweb archive, read instead of an image file; never both."""
    value = record.get("study_uid")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise _BadField("invalid_study_uid", f"'study_uid' must be a string, got {type(value).__name__}")
    image = record.get("image")
    if image is not None and str(image).strip():
        raise _BadField("image_and_study_uid", "give 'image' or 'study_uid', not both")
    return value.strip()


def _check_unique(path: Path, studies: Sequence[Study]) -> None:
    lines: dict[str, list[int]] = {}
    for s in studies:
        lines.setdefault(s.id, []).append(s.line)
    dupes = [(ident, where) for ident, where in lines.items() if len(where) > 1]
    if dupes:
        named = "; ".join(f"{ident!r} (lines {', '.join(map(str, where))})" for ident, where in dupes[:10])
        more = f" and {len(dupes) - 10} more" if len(dupes) > 10 else ""
        raise CliError(f"{path}: duplicate id(s): {named}{more}")


def read_worklist(path: Path) -> list[Study]:
    """Read and check a CSV or JSONL worklist. Structural problems (unreadable file, bad header,
    invalid JSON line, missing id, duplicate ids) raise CliError naming file:line; a bad field of one
    study (age, view, draft, image) stays with that study."""
    text = read_text(path, "worklist")
    records = _jsonl_records(path, text) if _is_jsonl(path, text) else _csv_records(path, text)
    studies = [_study(path, line, record) for line, record in records]
    _check_unique(path, studies)
    return studies


# ---- the results file and resuming -----------------------------------------------------------------


def picture_name(ident: str) -> str:
    """Where a study's picture lives: named by a hash of its id, since ids may hold any character."""
    return f"{PICTURES}/{hashlib.sha256(ident.encode('utf-8')).hexdigest()[:24]}.jpg"


def _picture_path(out_dir: Path, line: Mapping[str, Any]) -> Path | None:
    """The picture of a results line, if it has one. Always derived from the id, never taken from the
    line, so an edited results file cannot make the report inline some other file."""
    return out_dir / picture_name(line["id"]) if isinstance(line.get("picture"), dict) else None


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


@dataclass(frozen=True)
class Finished:
    """A study's results line and, when it was audited, its report, parsed once: fresh reports are
    kept as made, resumed ones as validated on reading."""

    line: dict[str, Any]
    report: AuditReport | None = None


@dataclass
class _ImageHashes:
    """The sha256 of each local image file, read once per resume however many studies share it."""

    known: dict[Path, str | None] = field(default_factory=dict)

    def __call__(self, path: Path) -> str | None:
        if path not in self.known:
            self.known[path] = _file_sha256(path)
        return self.known[path]


def _reusable(
    line: Mapping[str, Any], study: Study | None, backend: str, out_dir: Path, hashes: _ImageHashes
) -> AuditReport | None:
    """The report of a previous line, if that line audited this very study (same inputs, same backend
    configuration, and for a local file the same bytes), still validates, and its picture (if it had
    one) is still on disk. An http(s) image is not fetched again to check it."""
    if study is None or line.get("input") != study.input_key(backend) or "report" not in line:
        return None
    picture = _picture_path(out_dir, line)
    if line.get("picture") is not None and (picture is None or not picture.is_file()):
        return None
    try:
        report = AuditReport.model_validate(line["report"])
    except ValidationError:
        return None
    path = study.local_image
    if path is not None:
        info = report.grounding.image if report.grounding is not None else None
        if info is None or hashes(path) != info.sha256:
            return None
    if study.study_uid and not _same_instance(line, report):
        return None
    return report


def _same_instance(line: Mapping[str, Any], report: AuditReport) -> bool:
    """An archive study's line resumes when it recorded the instance it read (SOP Instance UID) and
    that instance's bytes are the ones the report was made from; the archive is not asked again (a
    SOP Instance UID names content that does not change)."""
    record = line.get("instance")
    info = report.grounding.image if report.grounding is not None else None
    if not isinstance(record, dict) or info is None:
        return False
    return bool(record.get("sop_instance_uid")) and record.get("sha256") == info.sha256


def _previous_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Parsed lines of an earlier results file; a torn last line (killed mid-write) is skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CliError(f"{path}: cannot read ({exc.strerror})") from None
    for raw in text.split("\n"):
        try:
            item = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            yield item


def resume(out_dir: Path, studies: Sequence[Study], backend: str) -> dict[str, Finished]:
    """Keep the finished lines of an earlier run and rewrite the file with only those, so that the
    lines appended now never duplicate an id (failed and stale lines are dropped and redone).
    ``backend`` is ``backend_fingerprint`` of this run's settings."""
    by_id = {s.id: s for s in studies}
    path = out_dir / RESULTS
    hashes = _ImageHashes()
    kept: dict[str, Finished] = {}
    for line in _previous_lines(path):
        if line["id"] in kept:
            continue
        report = _reusable(line, by_id.get(line["id"]), backend, out_dir, hashes)
        if report is not None:
            kept[line["id"]] = Finished(line, report)
    if path.exists():
        _write_atomic(path, "".join(_jsonl(done.line) for done in kept.values()))
    return kept


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """Hold ``DIR/.lock`` for the whole run: two runs appending to and rewriting one results file
    would lose lines. A second run fails at once instead of waiting. The lock goes with the process."""
    path = out_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CliError(f"--out {out_dir}: cannot create {LOCK} ({exc.strerror})") from None
    try:
        try:
            _lock_now(fd)
        except BlockingIOError:
            raise CliError(f"another audit-batch run is writing {out_dir}") from None
        except OSError as exc:
            raise CliError(f"--out {out_dir}: cannot lock {LOCK} ({exc.strerror})") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _lock_now(fd: int) -> None:
    """An exclusive lock on ``fd`` without waiting; BlockingIOError when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except PermissionError:
            raise BlockingIOError from None
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _jsonl(line: Mapping[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    """Write beside, then rename: a kill leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---- one study ---------------------------------------------------------------------------------------


class ImageKeeper:
    """A transparent Grounder wrapper that remembers, per thread, the image it was handed, so the
    report's picture is drawn from the very pixels that were grounded (no second read, no second
    fetch of a URL that might answer differently)."""

    def __init__(self, inner: Grounder) -> None:
        self.inner = inner
        self._local = threading.local()

    def ground(self, image: LoadedImage) -> Grounding:
        self._local.image = image
        return self.inner.ground(image)

    def state(self) -> BackendState:
        return self.inner.state()

    def load(self) -> None:
        self.inner.load()

    def take(self) -> LoadedImage | None:
        """The image this thread grounded last, forgotten once taken."""
        image: LoadedImage | None = getattr(self._local, "image", None)
        self._local.image = None
        return image


def _failure(exc: Exception) -> StudyFailure:
    """A study's error. Only our own error types carry their text (as in the MCP server); anything
    else is named by type, so an unexpected error cannot echo input data into the report."""
    from auditor.backends import BackendError
    from auditor.images import ImageError

    if isinstance(exc, ImageError):
        return StudyFailure(exc.code, exc.message)
    if isinstance(exc, BackendError):
        return StudyFailure(exc.code, str(exc))
    if isinstance(exc, ValueError):
        return StudyFailure("invalid_input", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return StudyFailure("internal_error", f"internal error ({type(exc).__name__})")


def _reduced(image: PILImage) -> PILImage:
    """A cheap integer box-reduce that leaves at least PICTURE_SIDE px for the overlay's Lanczos resize:
    the same thumbnail for a fraction of the time (drawing was most of a study's cost)."""
    factor = max(image.size) // PICTURE_SIDE
    return image.reduce(factor) if factor >= 2 else image


def _draw(image: LoadedImage | None, report: AuditReport, out_dir: Path, ident: str) -> dict[str, Any] | None:
    """The thumbnail with boxes and flags, saved under pictures/; None when there is nothing to draw on."""
    from auditor.overlay import render_findings

    if image is None:
        return None
    try:
        pic = render_findings(
            _reduced(image.image),
            report.grounding,
            report.comparison,
            max_side=PICTURE_SIDE,
            image_format="JPEG",
            max_bytes=PICTURE_BYTES,
            flag_lines=False,  # the report lists the flags beside the picture
        )
    except ValueError:
        return None
    name = picture_name(ident)
    (out_dir / name).write_bytes(pic.data)
    return {"file": name, "mime_type": pic.mime_type, "width": pic.width, "height": pic.height}


def audit_study(engine: Auditor, keeper: ImageKeeper, study: Study, out_dir: Path, backend: str) -> Finished:
    """One study -> its results line (the AuditReport and picture, or ``{"id", "error"}``) and the
    report itself. ``backend`` is ``backend_fingerprint`` of the settings ``engine`` runs with."""
    head: dict[str, Any] = {"id": study.id, "input": study.input_key(backend)}
    if study.problem is not None:
        return Finished({**head, "error": asdict(study.problem)})
    keeper.take()
    try:
        if study.study_uid:
            from auditor.dicomweb import audit_archive_study

            report, head["instance"] = audit_archive_study(
                engine, study.study_uid, study.draft, study.context
            )
        else:
            report = engine.audit(study.image, study.draft, study.context)
    except Exception as exc:  # a study's failure is its line; the batch goes on
        return Finished({**head, "error": asdict(_failure(exc))})
    picture = _draw(keeper.take(), report, out_dir, study.id)
    return Finished({**head, "report": report.model_dump(mode="json"), "picture": picture}, report)


# ---- running many ----------------------------------------------------------------------------------


def _sequential(work: Callable[[Study], Finished], todo: Iterable[Study]) -> Iterator[Finished]:
    for study in todo:
        yield work(study)


def _pooled(work: Callable[[Study], Finished], todo: Iterable[Study], workers: int) -> Iterator[Finished]:
    """At most ``workers`` studies in flight (remote engines take several at once); lines come out
    as studies finish. On an interrupt, studies not yet started are cancelled."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audit-batch") as pool:
        pending: set[Future[Finished]] = set()
        try:
            for study in todo:
                if len(pending) >= workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (f.result() for f in done)
                pending.add(pool.submit(work, study))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done)
        finally:
            for f in pending:
                f.cancel()


def in_flight(settings: Settings) -> int:
    """Remote engines serve several requests at once; a local grounder grounds up to
    ``grounding_batch_size`` images in one generate, so as many studies run at once; replay takes one."""
    if "http" in (settings.grounder, settings.reader):
        return settings.engine_max_in_flight
    return settings.grounding_batch_size if settings.grounder == "hf" else 1


class ProgressBar:
    """Progress on stderr: redrawn in place on a terminal, a throttled line at a time elsewhere."""

    def __init__(self, total: int, stream: TextIO | None, *, tty: bool, resumed: int = 0) -> None:
        self.total, self.stream, self.tty, self.resumed = total, stream, tty, resumed
        self.t0 = time.monotonic()
        self._last = -math.inf

    def update(self, done: int, failed: int, *, final: bool = False) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not final and now - self._last < (0.1 if self.tty else 2.0):
            return
        self._last = now
        end = "\n" if final or not self.tty else ""
        self.stream.write(("\r\x1b[K" if self.tty else "") + self._text(done, failed, now) + end)
        self.stream.flush()

    def _text(self, done: int, failed: int, now: float) -> str:
        frac = done / self.total if self.total else 1.0
        bar = "#" * round(24 * frac) + "-" * (24 - round(24 * frac))
        rate = done / (now - self.t0) if now > self.t0 else 0.0
        eta = f"{(self.total - done) / rate:.0f}s" if rate > 0 else "?"
        extra = f", {self.resumed} already done" if self.resumed else ""
        return (
            f"audit-batch [{bar}] {done}/{self.total} {100 * frac:3.0f}%  {failed} failed  "
            f"{rate:.1f}/s  ETA {eta}{extra}"
        )


def _unreported(flag: Mapping[str, Any]) -> bool:
    """An URGENT flag the draft does not state as present (denied, hedged, not mentioned, no draft)."""
    return bool(flag["kind"] == "URGENT" and flag["draft_status"] != "present")


def summarize(lines: Sequence[Mapping[str, Any]], resumed: int = 0) -> dict[str, Any]:
    """Totals over every study of the worklist: they add up (audited + failed = studies)."""
    reports = [line["report"] for line in lines if "report" in line]
    flags = Counter(f["kind"] for rep in reports for f in rep["comparison"]["flags"])
    failures = Counter(line["error"]["code"] for line in lines if "error" in line)
    return {
        "studies": len(lines),
        "audited": len(reports),
        "failed": sum(failures.values()),
        "resumed": resumed,
        "flags": {k: flags.get(k, 0) for k in KINDS},
        "studies_with_flags": sum(1 for rep in reports if rep["comparison"]["flags"]),
        "studies_with_urgent": sum(
            1 for rep in reports if any(f["kind"] == "URGENT" for f in rep["comparison"]["flags"])
        ),
        # URGENT that the draft does not already report: the ones a reader may not have seen
        "urgent_not_in_draft": sum(
            1 for rep in reports for f in rep["comparison"]["flags"] if _unreported(f)
        ),
        "studies_with_urgent_not_in_draft": sum(
            1 for rep in reports if any(_unreported(f) for f in rep["comparison"]["flags"])
        ),
        "modes": dict(sorted(Counter(rep["comparison"]["mode"] for rep in reports).items())),
        "failures": dict(sorted(failures.items())),
    }


def _study_result(done: Finished, out_dir: Path) -> StudyResult:
    from auditor.overlay import RenderedImage

    line = done.line
    if done.report is None:
        return StudyResult(line["id"], error=StudyFailure(line["error"]["code"], line["error"]["message"]))
    picture: RenderedImage | None = None
    path = _picture_path(out_dir, line)
    if path is not None and path.is_file():
        meta = line["picture"]
        try:
            picture = RenderedImage(path.read_bytes(), "image/jpeg", int(meta["width"]), int(meta["height"]))
        except (KeyError, TypeError, ValueError):  # a hand-edited line: show the row without its picture
            picture = None
    return StudyResult(line["id"], report=done.report, picture=picture)


@dataclass(frozen=True)
class BatchOptions:
    """How to run: where progress goes (None: nowhere) and what the report's header says."""

    progress: TextIO | None = None
    tty: bool = False
    source: str | None = None
    generated_at: str | None = None


def _prepare(out_dir: Path) -> None:
    try:
        (out_dir / PICTURES).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CliError(f"--out {out_dir}: not a folder") from None
    except OSError as exc:
        raise CliError(f"--out {out_dir}: cannot create ({exc.strerror})") from None


def run_batch(
    studies: Sequence[Study],
    out_dir: Path,
    settings: Settings,
    *,
    grounder: Grounder | None = None,
    reader: DraftReader | None = None,
    options: BatchOptions = BatchOptions(),
) -> dict[str, Any]:
    """Audit every study not already finished in ``out_dir``, then write the summary and the report.

    ``grounder`` / ``reader`` replace the configured backends (tests and embedders). A
    KeyboardInterrupt propagates after the lines finished so far are on disk; rerunning resumes.
    """
    from auditor.backends.factory import make_grounder
    from auditor.pipeline import Auditor

    keeper = ImageKeeper(grounder or make_grounder(settings))
    engine = Auditor(settings, grounder=keeper, reader=reader)
    backend = backend_fingerprint(settings)
    _prepare(out_dir)
    with _exclusive(out_dir):
        finished = resume(out_dir, studies, backend)
        todo = [s for s in studies if s.id not in finished]
        bar = ProgressBar(len(todo), options.progress, tty=options.tty, resumed=len(finished))
        workers = in_flight(settings)

        def work(study: Study) -> Finished:
            return audit_study(engine, keeper, study, out_dir, backend)

        results = _sequential(work, todo) if workers == 1 else _pooled(work, todo, workers)
        done = failed = 0
        with open(out_dir / RESULTS, "a", encoding="utf-8") as fh:
            bar.update(0, 0)
            for result in results:
                _stop_if_model_down(result, done, out_dir)
                fh.write(_jsonl(result.line))
                fh.flush()
                finished[result.line["id"]] = result
                done, failed = done + 1, failed + (result.report is None)
                bar.update(done, failed)
        bar.update(done, failed, final=True)
        ordered = [finished[s.id] for s in studies]
        return _finish(ordered, out_dir, len(studies) - len(todo), options)


def _stop_if_model_down(result: Finished, done: int, out_dir: Path) -> None:
    """A model that cannot load fails every study alike: stop at the first, with one line, rather
    than fill the results with the same error (or retry a load for each study)."""
    error = result.line.get("error") or {}
    if error.get("code") not in MODEL_DOWN:
        return
    raise CliError(
        f"stopped at study {result.line['id']!r} after {done} finished (kept in {out_dir / RESULTS}; "
        f"rerun to resume): model backend ({error['code']}): {error['message']}",
        EXIT_MODEL,
    )


def _finish(
    ordered: Sequence[Finished], out_dir: Path, resumed: int, options: BatchOptions
) -> dict[str, Any]:
    """Write summary.json and report.html (each atomically) from the studies in worklist order."""
    lines = [done.line for done in ordered]
    summary = summarize(lines, resumed)
    summary["files"] = {name: str(out_dir / name) for name in (RESULTS, SUMMARY, REPORT)}
    _write_atomic(out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    generated = options.generated_at or datetime.now(UTC).isoformat(timespec="seconds")
    page = render_report(
        [_study_result(done, out_dir) for done in ordered],
        summary,
        generated_at=generated,
        source=options.source,
    )
    _write_atomic(out_dir / REPORT, page)
    _drop_orphan_pictures(out_dir, lines)
    return summary


def _drop_orphan_pictures(out_dir: Path, lines: Iterable[Mapping[str, Any]]) -> None:
    """Pictures of studies redone or no longer in the worklist would only pile up: remove them."""
    wanted = {p.name for p in (_picture_path(out_dir, line) for line in lines) if p is not None}
    for path in (out_dir / PICTURES).glob("*.jpg"):
        if path.name not in wanted:
            path.unlink(missing_ok=True)


# ---- the command -----------------------------------------------------------------------------------


def _backends(settings: Settings) -> tuple[Grounder, DraftReader]:
    """Both backends, built (not loaded) before any work: a bad replay file, an unavailable backend
    or an image model missing from this machine stops here with one line; a draft reader missing
    from it is a warning (the rule reader reads instead, and each study's notes say so)."""
    from auditor.backends.availability import state_problems
    from auditor.backends.factory import make_grounder, make_reader

    try:
        grounder = make_grounder(settings)
    except Exception as exc:  # a bad replay file or an unavailable backend: one line, before any work
        raise CliError(f"grounder {settings.grounder!r}: {exc}") from None
    try:
        reader = make_reader(settings)
    except Exception as exc:
        raise CliError(f"reader {settings.reader!r}: {exc}") from None
    for role, problem in state_problems([grounder.state(), reader.state()]):
        if role == "grounder":
            raise CliError(f"model backend (load_failed): {problem}", EXIT_MODEL)
        print(f"cxr-auditor: warning: {problem}", file=sys.stderr)
    return grounder, reader


def cmd_audit_batch(args: argparse.Namespace) -> int:
    from auditor.cli import cli_settings

    studies = read_worklist(Path(args.worklist))
    settings = cli_settings(args)
    grounder, reader = _backends(settings)
    tty = sys.stderr.isatty()
    show = tty if args.progress is None else args.progress
    options = BatchOptions(progress=sys.stderr if show else None, tty=tty, source=Path(args.worklist).name)
    out = Path(args.out)
    try:
        summary = run_batch(studies, out, settings, grounder=grounder, reader=reader, options=options)
    except KeyboardInterrupt:
        print(
            f"\ncxr-auditor: interrupted; finished studies are kept in {out / RESULTS}. "
            "Run the same command again to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    emit(summary)
    if summary["failed"]:
        print(
            f"cxr-auditor: {summary['failed']} of {summary['studies']} studies could not be audited "
            f"(their errors are in {out / RESULTS} and the report)",
            file=sys.stderr,
        )
        return EXIT_STUDIES_FAILED
    return 0


def register(sub: Any) -> None:
    """Add the `audit-batch` command to the top-level subparsers."""
    p = sub.add_parser(
        "audit-batch",
        help="audit a worklist (CSV or JSONL of id, image or study_uid, draft, age_years, view) into DIR",
        description="Audit every study of a worklist through the same pipeline as the audit tool. "
        "Writes DIR/results.jsonl (one line per study, streamed; a rerun resumes), DIR/summary.json "
        "(also printed) and DIR/report.html. Research only: not a medical device, not a diagnosis.",
    )
    p.add_argument(
        "worklist", help="CSV with a header, or JSONL; relative image paths resolve against its folder"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; reused to resume)")
    add_progress_flag(p)
    add_backend_flags(p)
    p.set_defaults(func=cmd_audit_batch)
