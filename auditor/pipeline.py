"""The Auditor: ground -> read -> compare, with every degradation visible.

One Auditor per process holds the backends, so models load once and stay resident; a lock per
backend serialises calls to one model, so concurrent clients can neither corrupt nor overload it.
Bad input (a missing file, a non-image) raises; a model that cannot work raises BackendError; a
model that produced unusable text yields a result whose notes and outcome say so.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from auditor.activity import counts
from auditor.activity import log as activity
from auditor.backends import BackendError, BackendState, DraftReader, Grounder
from auditor.backends.factory import make_grounder, make_reader, resolve_reader_kind
from auditor.compare import compare
from auditor.config import Settings
from auditor.schema import (
    AuditReport,
    Comparison,
    DraftReading,
    Grounding,
    ModelInfo,
    Note,
    ParseOutcome,
    Policy,
    ReaderAttempt,
    StudyContext,
)

if TYPE_CHECKING:
    from auditor.images import ImageLimits, LoadedImage
    from auditor.overlay import RenderedImage

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def _gate(kind: str) -> AbstractContextManager[object]:
    """Replay takes one call at a time. A remote engine's client bounds its own requests in flight
    (holding a slot only while on the wire, not across retries), and an in-process model holds its own
    run lock (the grounder gathers concurrent calls into batches first), so neither needs a second gate."""
    return contextlib.nullcontext() if kind in ("http", "hf") else threading.Lock()


class Auditor:
    """The three stages behind one object; the MCP tools, the CLI and the evaluations all use it."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        grounder: Grounder | None = None,
        reader: DraftReader | None = None,
    ) -> None:
        self.settings = settings or Settings(grounder="replay")
        self._grounder = grounder
        self._reader = reader
        self._fallback: DraftReader | None = None
        self._build_lock = threading.Lock()
        self._instant: bool | None = None
        # One call at a time into an in-process model; a remote engine takes as many as the client
        # may have in flight (it queues or batches them itself).
        self._grounder_lock = _gate(self.settings.grounder)
        self._reader_lock = _gate(self.settings.reader)

    # ---- backends ----------------------------------------------------------------------------

    @property
    def grounder(self) -> Grounder:
        with self._build_lock:
            if self._grounder is None:
                self._grounder = make_grounder(self.settings)
            return self._grounder

    @property
    def reader(self) -> DraftReader:
        with self._build_lock:
            if self._reader is None:
                try:
                    self._reader = make_reader(self.settings)
                except (
                    ValueError,
                    OSError,
                ) as exc:  # e.g. an unreadable prompt file: the rules fallback applies
                    raise BackendError("not_configured", f"the draft reader cannot be built: {exc}") from exc
            return self._reader

    def reader_is_instant(self) -> bool:
        """True for the rule reader: callers may run it inline, and it needs no lock (it is stateless)."""
        if self._instant is None:
            from auditor.backends.rules import RulesReader

            try:
                self._instant = isinstance(self.reader, RulesReader)
            except BackendError:
                self._instant = False
        return self._instant

    def _rules(self) -> DraftReader:
        if self._fallback is None:
            self._fallback = make_reader(self.settings, "rules")
        return self._fallback

    def preload(self, progress: Progress = _quiet) -> None:
        """Load both models now instead of on first use (``serve --preload``)."""
        progress("loading the image model")
        with self._grounder_lock:
            self.grounder.load()
        progress("loading the draft reader")
        with self._reader_lock:
            self.reader.load()

    def models(self) -> list[BackendState]:
        """Configured backends and their state, without loading anything."""
        states = []
        try:
            states.append(self.grounder.state())
        except BackendError as exc:
            states.append(
                BackendState(
                    role="grounder",
                    backend=self.settings.grounder,
                    model_id=self.settings.grounder_model,
                    loaded=False,
                    detail={"error": str(exc)},
                )
            )
        if self._reader is not None:
            states.append(self._reader.state())
        else:
            kind = self.reader_kind()
            model = "rules" if kind == "rules" else self.settings.reader_model
            states.append(BackendState(role="reader", backend=kind, model_id=model, loaded=False))
        return states

    # ---- stages ------------------------------------------------------------------------------

    def image_limits(self) -> ImageLimits:
        from auditor.images import ImageLimits

        roots = self.settings.image_roots or None
        return ImageLimits(roots=roots, allow_private_urls=self.settings.allow_private_urls)

    def load_image(self, source: str) -> LoadedImage:
        from auditor.images import load_image

        return load_image(source, self.image_limits())

    def ground_loaded(self, image: LoadedImage, progress: Progress = _quiet) -> Grounding:
        grounder = self.grounder
        progress("grounding the image")
        started = time.perf_counter()
        with self._grounder_lock:
            grounding = grounder.ground(image)
        _say_generated("image model", grounding.model, len(grounding.findings), "finding", grounding, started)
        return grounding

    def ground(self, source: str, progress: Progress = _quiet) -> Grounding:
        progress("loading the image")
        return self.ground_loaded(self.load_image(source), progress)

    def read(self, draft: str, progress: Progress = _quiet) -> DraftReading:
        """Read with the configured reader; if it fails or its output is unusable, the rule reader
        reads instead and a note says so."""
        progress("reading the draft")
        started = time.perf_counter()
        try:
            reader = self.reader
            with contextlib.nullcontext() if self.reader_is_instant() else self._reader_lock:
                reading = reader.read(draft)
            _say_generated("draft reader", reading.model, len(reading.mentions), "mention", reading, started)
        except BackendError as exc:
            return self._fall_back(draft, f"the draft reader failed ({exc})")
        if reading.outcome is ParseOutcome.FAILED and draft.strip() and reading.model.backend != "rules":
            return self._fall_back(
                draft, f"the draft reader's output was unusable ({reading.model.model_id})", reading
            )
        return reading

    def _fall_back(self, draft: str, why: str, attempt: DraftReading | None = None) -> DraftReading:
        """The rule reader's reading, with a note; a model's unusable reading is kept beside it whole
        (``fallback_from``): its raw output, notes and timings must not vanish with the fallback."""
        reading = self._rules().read(draft)
        kept = ""
        update: dict[str, object] = {}
        if attempt is not None:
            update["fallback_from"] = ReaderAttempt.model_validate(
                attempt.model_dump(exclude={"fallback_from"})
            )
            codes = ", ".join(dict.fromkeys(n.code for n in attempt.notes)) or "none"
            kept = f"; the model's own reading (its notes: {codes}) is kept in fallback_from"
        note = Note(
            stage="draft",
            code="reader_fallback_rules",
            message=f"{why}; the rule reader read it instead{kept}.",
        )
        activity.warning("draft reader: %s; the rule reader read it instead", why)
        update["notes"] = [note, *reading.notes]
        return reading.model_copy(update=update)

    def compare(
        self,
        grounding: Grounding | None,
        reading: DraftReading | None,
        context: StudyContext | None = None,
        policy: Policy | None = None,
    ) -> Comparison:
        return compare(grounding, reading, policy=policy, context=context)

    def audit(
        self,
        source: str,
        draft: str = "",
        context: StudyContext | None = None,
        progress: Progress = _quiet,
    ) -> AuditReport:
        """All three stages. An empty draft gives an image-only pass (URGENT only) with a note."""
        progress("loading the image")
        return self.audit_loaded(self.load_image(source), draft, context, progress)

    def audit_loaded(
        self,
        image: LoadedImage,
        draft: str = "",
        context: StudyContext | None = None,
        progress: Progress = _quiet,
    ) -> AuditReport:
        """`audit` for an image already loaded (a caller that also draws it loads it once)."""
        t0 = time.perf_counter()
        notes: list[Note] = []  # the judge itself says when the pass is image-only (no_draft_image_only)
        reading: DraftReading | None = None
        if draft.strip() and self._overlaps():
            grounding, reading = self._ground_and_read(image, draft, progress)
        else:
            grounding = self.ground_loaded(image, progress)
            if draft.strip() and grounding.failed and not self.reader_is_instant():
                activity.warning("draft reader: not run, the image stage failed (overlap_stages is off)")
                notes.append(
                    Note(
                        stage="draft",
                        code="reader_skipped_image_failed",
                        message="The image stage failed, so the judge can use no reading; the draft "
                        "model was not run (overlap_stages is off).",
                    )
                )
            elif draft.strip():
                reading = self.read(draft, progress)
        progress("comparing")
        comparison = compare(grounding, reading, context=context)
        timings = {"total": round((time.perf_counter() - t0) * 1000, 3)}
        return AuditReport(
            grounding=grounding,
            reading=reading,
            comparison=comparison,
            context=context,
            notes=notes,
            timings_ms=timings,
        )

    def _overlaps(self) -> bool:
        """Ground and read at once when the reader is a model (``overlap_stages``): the two stages are
        independent until the judge, and each model keeps its own lock."""
        return self.settings.overlap_stages and not self.reader_is_instant()

    def _ground_and_read(
        self, image: LoadedImage, draft: str, progress: Progress
    ) -> tuple[Grounding, DraftReading]:
        """Both model stages concurrently: the reader in a thread of its own, grounding in this one.

        The reader's progress is not relayed (a client's progress channel belongs to the calling
        thread); a grounding failure still waits for the reading, which is returned beside it.
        """
        outcome: dict[str, DraftReading | BaseException] = {}

        def read() -> None:
            try:
                outcome["reading"] = self.read(draft)
            except BaseException as exc:  # re-raised in the caller's thread below
                outcome["error"] = exc

        # in the caller's context, so that what the reader logs reaches whoever the caller logs to
        worker = threading.Thread(
            target=contextvars.copy_context().run, args=(read,), name="cxr-auditor-reader", daemon=True
        )
        progress("grounding the image and reading the draft")
        worker.start()
        try:
            grounding = self.ground_loaded(image)
        finally:
            worker.join()
        error = outcome.get("error")
        if isinstance(error, BaseException):
            raise error
        reading = outcome["reading"]
        assert isinstance(reading, DraftReading)
        return grounding, reading

    def render(
        self,
        source: str | Callable[[], LoadedImage],
        grounding: Grounding | None = None,
        comparison: Comparison | None = None,
        draft: str | None = None,
        *,
        max_side: int = 1024,
        progress: Progress = _quiet,
    ) -> RenderedImage:
        """The picture: the given stage results, or a fresh audit of the image (and draft) when absent.

        Results passed back in must belong to this image: a grounding records the image's sha256 and
        is checked against it; a comparison records no image, so it comes with the grounding it was
        made from and must match it. A comparison and a draft together are refused, not one ignored.
        """
        from auditor.edits import comparison_mismatch
        from auditor.overlay import render_findings

        if comparison is not None and draft is not None:
            raise ValueError(
                "pass either a comparison or a draft, not both: the comparison already holds its draft's "
                "flags (leave the comparison out to audit this draft now)"
            )
        if comparison is not None and grounding is None:
            raise ValueError(
                "a comparison records no image, so it cannot be checked against this one: pass the "
                "grounding it was made from as well (ground_image's result records the image's sha256)"
            )
        image = self.load_image(source) if isinstance(source, str) else source()  # a callable: an archive
        if (
            grounding is not None
            and grounding.image is not None
            and grounding.image.sha256 != image.info.sha256
        ):
            raise ValueError(
                f"the grounding was made from another image (sha256 {grounding.image.sha256[:12]}..., "
                f"this one is {image.info.sha256[:12]}...): its boxes would be drawn in the wrong place"
            )
        if grounding is not None and comparison is not None:
            mismatch = comparison_mismatch(grounding, comparison)
            if mismatch is not None:
                raise ValueError(f"the comparison does not belong to this grounding: {mismatch}")
        if grounding is None:
            grounding = self.ground_loaded(image, progress)
        if comparison is None and draft is not None:
            reading = self.read(draft, progress) if draft.strip() else None
            comparison = compare(grounding, reading)
        return render_findings(image.image, grounding, comparison, max_side=max_side)

    def reader_kind(self) -> str:
        return resolve_reader_kind(self.settings)


def _say_generated(
    stage: str, model: ModelInfo, n: int, item: str, result: Grounding | DraftReading, started: float
) -> None:
    """One activity line per stage result: which model, how many findings or mentions, the outcome,
    the time and token counts; a warning when the output was unusable."""
    tokens = f", tokens: {counts(result.tokens)}" if result.tokens else ""
    level = logging.WARNING if result.outcome is ParseOutcome.FAILED else logging.INFO
    activity.log(
        level,
        "%s (%s %s): %d %s%s, outcome %s, %.0f ms%s",
        stage,
        model.backend,
        model.model_id,
        n,
        item,
        "" if n == 1 else "s",
        result.outcome.value,
        (time.perf_counter() - started) * 1000,
        tokens,
    )
