"""Running a worklist: every study not already finished goes through ``Auditor.audit`` (the pipeline
behind the MCP ``audit`` tool, so a batch never judges differently from an interactive call), one or
several at a time, and its results line is appended and flushed as it finishes. At the end come
``summary.json`` and ``report.html``, each written whole or not at all.

One run at a time writes into a folder (``DIR/.lock``). A KeyboardInterrupt propagates after the lines
finished so far are on disk; rerunning resumes (see ``auditor.batch.store``).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from auditor.batch import pictures
from auditor.batch.store import (
    REPORT,
    RESULTS,
    SUMMARY,
    ArchiveInstance,
    ResultLine,
    backend_fingerprint,
    picture_name,
    resume,
    summarize,
)
from auditor.batch.worklist import Study
from auditor.cli_common import EXIT_MODEL, CliError
from auditor.errors import describe
from auditor.report_html import StudyResult, render_report
from auditor.runfolder import LOCK_FILE, FolderBusy, FolderLock, Progress, write_text_atomic

if TYPE_CHECKING:
    from auditor.backends import BackendState, DraftReader, Grounder
    from auditor.config import Settings
    from auditor.images import LoadedImage
    from auditor.pipeline import Auditor
    from auditor.schema import Grounding

MODEL_DOWN: Final = frozenset({"load_failed", "device_unavailable", "download_failed"})
"""Failures of the model itself, not of one study: the next study would fail the same way."""


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


def audit_study(
    engine: Auditor, keeper: ImageKeeper, study: Study, out_dir: Path, backend: str
) -> ResultLine:
    """One study -> its results line: the AuditReport and picture, or the error that stopped it (as
    ``describe`` words it for every surface). ``backend`` is ``backend_fingerprint`` of the settings
    ``engine`` runs with."""
    line = ResultLine(id=study.id, input=study.input_key(backend))
    if study.problem is not None:
        line.error = study.problem
        return line
    keeper.take()
    try:
        if study.study_uid:
            from auditor.dicomweb import audit_archive_study

            report, record = audit_archive_study(engine, study.study_uid, study.draft, study.context)
            line.instance = ArchiveInstance.model_validate(record)
        else:
            report = engine.audit(study.image, study.draft, study.context)
    except Exception as exc:  # a study's failure is its line; the batch goes on
        line.error = describe(exc).failure
        return line
    line.report = report
    line.picture = pictures.draw(keeper.take(), report, out_dir, study.id)
    return line


# ---- running many ----------------------------------------------------------------------------------


def _sequential(work: Callable[[Study], ResultLine], todo: Iterable[Study]) -> Iterator[ResultLine]:
    for study in todo:
        yield work(study)


def _pooled(work: Callable[[Study], ResultLine], todo: Iterable[Study], workers: int) -> Iterator[ResultLine]:
    """At most ``workers`` studies in flight (remote engines take several at once); lines come out
    as studies finish. On an interrupt, studies not yet started are cancelled."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audit-batch") as pool:
        pending: set[Future[ResultLine]] = set()
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


@dataclass(frozen=True)
class BatchOptions:
    """How to run: where progress goes (None: nowhere) and what the report's header says."""

    progress: TextIO | None = None
    source: str | None = None
    generated_at: str | None = None


def _prepare(out_dir: Path) -> None:
    try:
        (out_dir / pictures.THUMBS).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CliError(f"--out {out_dir}: not a folder") from None
    except OSError as exc:
        raise CliError(f"--out {out_dir}: cannot create ({exc.strerror})") from None


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """Hold ``DIR/.lock`` for the whole run: two runs appending to and rewriting one results file
    would lose lines. A second run fails at once instead of waiting. The lock goes with the process."""
    lock = FolderLock(out_dir)
    try:
        lock.acquire()
    except FolderBusy:
        raise CliError(f"another audit-batch run is writing {out_dir}") from None
    except OSError as exc:
        raise CliError(f"--out {out_dir}: cannot lock {LOCK_FILE} ({exc.strerror})") from None
    try:
        yield
    finally:
        lock.release()


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
        bar = Progress(
            len(studies),
            len(studies) - len(todo),
            label="audit-batch",
            enabled=options.progress is not None,
            stream=options.progress,
        )
        workers = in_flight(settings)

        def work(study: Study) -> ResultLine:
            return audit_study(engine, keeper, study, out_dir, backend)

        results = _sequential(work, todo) if workers == 1 else _pooled(work, todo, workers)
        with open(out_dir / RESULTS, "a", encoding="utf-8") as fh:
            for done, line in enumerate(results):
                _stop_if_model_down(line, done, out_dir)
                fh.write(line.to_json())
                fh.flush()
                finished[line.id] = line
                bar.update(failed=line.report is None)
        bar.close()
        ordered = [finished[s.id] for s in studies]
        return _finish(ordered, out_dir, len(studies) - len(todo), options)


def _stop_if_model_down(line: ResultLine, done: int, out_dir: Path) -> None:
    """A model that cannot load fails every study alike: stop at the first, with one line, rather
    than fill the results with the same error (or retry a load for each study)."""
    error = line.error
    if error is None or error.code not in MODEL_DOWN:
        return
    raise CliError(
        f"stopped at study {line.id!r} after {done} finished (kept in {out_dir / RESULTS}; "
        f"rerun to resume): model backend ({error.code}): {error.message}",
        EXIT_MODEL,
    )


def _study_result(line: ResultLine, out_dir: Path) -> StudyResult:
    if line.report is None:
        return StudyResult(line.id, error=line.error)
    thumb = pictures.thumbnail(out_dir, line)
    full = picture_name(line.id) if thumb is not None else None
    return StudyResult(line.id, report=line.report, picture=thumb, picture_file=full)


def _finish(
    ordered: Sequence[ResultLine], out_dir: Path, resumed: int, options: BatchOptions
) -> dict[str, Any]:
    """Write summary.json and report.html (each atomically) from the studies in worklist order."""
    summary = summarize(ordered, resumed)
    summary["files"] = {name: str(out_dir / name) for name in (RESULTS, SUMMARY, REPORT)}
    write_text_atomic(out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    generated = options.generated_at or datetime.now(UTC).isoformat(timespec="seconds")
    page = render_report(
        [_study_result(line, out_dir) for line in ordered],
        summary,
        generated_at=generated,
        source=options.source,
    )
    write_text_atomic(out_dir / REPORT, page)
    pictures.drop_orphans(out_dir, ordered)
    return summary
