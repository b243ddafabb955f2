"""The audit's fast path without a model: stages overlap, a failed grounding skips a model reader when
they do not, the fallback keeps the model's own reading, and concurrent grounding calls coalesce into
batches. Fake backends stand in for the models (no torch), so these run everywhere in milliseconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from auditor.backends import BackendError, BackendState
from auditor.backends.batching import CoalescingGrounder
from auditor.batch import in_flight
from auditor.config import Settings
from auditor.images import LoadedImage, load_image_bytes
from auditor.labels import Label
from auditor.pipeline import Auditor
from auditor.schema import DraftReading, Grounding, ImageFinding, ModelInfo, Note, ParseOutcome

DRAFT = "Mild cardiomegaly. No pneumothorax."


def _image(grey: int = 90) -> LoadedImage:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (64 + grey, 64), grey).save(buf, format="PNG")
    return load_image_bytes(buf.getvalue())


class SlowGrounder:
    """Grounds after ``delay`` seconds; records the threads and moments it ran in."""

    def __init__(self, delay: float = 0.0, outcome: ParseOutcome = ParseOutcome.CLEAN) -> None:
        self.delay, self.outcome = delay, outcome
        self.spans: list[tuple[float, float]] = []
        self.batches: list[int] = []

    def _one(self, image: LoadedImage) -> Grounding:
        findings = [] if self.outcome is ParseOutcome.FAILED else [ImageFinding(label=Label.CARDIOMEGALY)]
        return Grounding(
            findings=findings,
            outcome=self.outcome,
            model=ModelInfo(backend="hf", model_id="fake"),
            image=image.info,
            raw_output="garbage" if self.outcome is ParseOutcome.FAILED else "[...]",
        )

    def ground(self, image: LoadedImage) -> Grounding:
        return self.ground_batch([image])[0]

    def ground_batch(self, images: Sequence[LoadedImage]) -> list[Grounding]:
        started = time.perf_counter()
        time.sleep(self.delay)
        self.spans.append((started, time.perf_counter()))
        self.batches.append(len(images))
        return [self._one(image) for image in images]

    def state(self) -> BackendState:
        return BackendState(role="grounder", backend="hf", model_id="fake", loaded=True)

    def load(self) -> None:
        return None


class ModelReader:
    """A model reader whose output is unusable (FAILED) or fine, after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0, usable: bool = True) -> None:
        self.delay, self.usable = delay, usable
        self.spans: list[tuple[float, float]] = []
        self.calls = 0

    def read(self, draft: str) -> DraftReading:
        self.calls += 1
        started = time.perf_counter()
        time.sleep(self.delay)
        self.spans.append((started, time.perf_counter()))
        return DraftReading(
            draft=draft,
            mentions=[],
            outcome=ParseOutcome.CLEAN if self.usable else ParseOutcome.FAILED,
            model=ModelInfo(backend="hf", model_id="fake-reader"),
            raw_output="[]" if self.usable else "tho upp neu Front",
            notes=[] if self.usable else [Note(stage="draft", code="output_unparseable", message="no JSON")],
            timings_ms={"generate": 12.5},
            tokens={"prompt": 40, "reasoning": 8, "answer": 4},
        )

    def state(self) -> BackendState:
        return BackendState(role="reader", backend="hf", model_id="fake-reader", loaded=True)

    def load(self) -> None:
        return None


def _auditor(grounder: object, reader: object, **settings: object) -> Auditor:
    base = Settings(grounder="hf", reader="hf", device="cpu", **settings)  # type: ignore[arg-type]
    return Auditor(base, grounder=grounder, reader=reader)  # type: ignore[arg-type]


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_grounding_and_reading_overlap_by_default() -> None:
    grounder, reader = SlowGrounder(delay=0.2), ModelReader(delay=0.2)
    report = _auditor(grounder, reader).audit_loaded(_image(), DRAFT)
    assert report.reading is not None and report.grounding is not None
    assert _overlap(grounder.spans[0], reader.spans[0])


def test_without_overlap_the_stages_run_one_after_the_other() -> None:
    grounder, reader = SlowGrounder(delay=0.05), ModelReader(delay=0.05)
    _auditor(grounder, reader, overlap_stages=False).audit_loaded(_image(), DRAFT)
    assert not _overlap(grounder.spans[0], reader.spans[0])


def test_failed_grounding_skips_the_model_reader_when_stages_do_not_overlap() -> None:
    reader = ModelReader()
    report = _auditor(SlowGrounder(outcome=ParseOutcome.FAILED), reader, overlap_stages=False).audit_loaded(
        _image(), DRAFT
    )
    assert reader.calls == 0 and report.reading is None
    assert report.comparison.mode == "no_image"
    assert [n.code for n in report.notes] == ["reader_skipped_image_failed"]


def test_failed_grounding_still_reads_with_the_rule_reader() -> None:
    settings = Settings(grounder="hf", reader="rules", device="cpu", overlap_stages=False)
    report = Auditor(settings, grounder=SlowGrounder(outcome=ParseOutcome.FAILED)).audit_loaded(  # type: ignore[arg-type]
        _image(), DRAFT
    )
    assert report.reading is not None and report.reading.model.backend == "rules"


def test_reader_error_in_the_overlapped_thread_reaches_the_caller() -> None:
    class Broken(ModelReader):
        def read(self, draft: str) -> DraftReading:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _auditor(SlowGrounder(), Broken()).audit_loaded(_image(), DRAFT)


def test_fallback_keeps_the_model_reading_whole() -> None:
    engine = _auditor(SlowGrounder(), ModelReader(usable=False))
    reading = engine.read(DRAFT)
    assert reading.model.backend == "rules"
    assert reading.notes[0].code == "reader_fallback_rules"
    assert "output_unparseable" in reading.notes[0].message and "fallback_from" in reading.notes[0].message
    kept = reading.fallback_from
    assert kept is not None
    assert kept.raw_output == "tho upp neu Front" and kept.model.model_id == "fake-reader"
    assert [n.code for n in kept.notes] == ["output_unparseable"]
    assert kept.timings_ms == {"generate": 12.5} and kept.tokens["reasoning"] == 8
    assert DraftReading.model_validate(reading.model_dump()) == reading  # the contract holds


def test_a_usable_model_reading_has_no_fallback() -> None:
    reading = _auditor(SlowGrounder(), ModelReader()).read(DRAFT)
    assert reading.model.backend == "hf" and reading.fallback_from is None


def test_a_reader_error_falls_back_without_an_attempt() -> None:
    class Down(ModelReader):
        def read(self, draft: str) -> DraftReading:
            raise BackendError("load_failed", "no weights")

    reading = _auditor(SlowGrounder(), Down()).read(DRAFT)
    assert reading.model.backend == "rules" and reading.fallback_from is None
    assert "no weights" in reading.notes[0].message


# --- coalescing grounder ------------------------------------------------------------------------------


def test_concurrent_grounding_calls_share_batches_and_keep_their_own_results() -> None:
    inner = SlowGrounder(delay=0.05)
    grounder = CoalescingGrounder(inner, max_batch=4, window_s=0.05)
    images = [_image(grey) for grey in range(10, 90, 10)]  # 8 images of distinct sizes
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(grounder.ground, images))
    assert [r.image for r in results] == [im.info for im in images]
    assert sum(inner.batches) == 8 and max(inner.batches) > 1 and max(inner.batches) <= 4
    assert grounder.batches == inner.batches


def test_a_batch_error_reaches_every_caller_and_the_next_batch_works() -> None:
    class Flaky(SlowGrounder):
        def __init__(self) -> None:
            super().__init__(delay=0.02)
            self.fail = True

        def ground_batch(self, images: Sequence[LoadedImage]) -> list[Grounding]:
            if self.fail:
                self.fail = False
                raise BackendError("out_of_memory", "too big")
            return super().ground_batch(images)

    grounder = CoalescingGrounder(Flaky(), max_batch=8, window_s=0.05)
    errors: list[str] = []
    barrier = threading.Barrier(3)

    def call() -> None:
        barrier.wait()
        try:
            grounder.ground(_image())
        except BackendError as exc:
            errors.append(exc.code)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors and set(errors) == {"out_of_memory"}
    assert grounder.ground(_image()).outcome is ParseOutcome.CLEAN


def test_a_lone_call_is_not_held_longer_than_the_window() -> None:
    grounder = CoalescingGrounder(SlowGrounder(), max_batch=8, window_s=0.0)
    assert grounder.ground(_image()).outcome is ParseOutcome.CLEAN
    assert grounder.state().detail["max_batch"] == 8


def test_worklists_run_as_many_studies_as_a_grounding_batch() -> None:
    assert in_flight(Settings(grounder="hf", reader="rules", grounding_batch_size=6)) == 6
    assert in_flight(Settings(grounder="hf", reader="rules", grounding_batch_size=1)) == 1


def test_a_grounder_that_returns_the_wrong_count_fails_the_whole_batch_alike() -> None:
    class Short(SlowGrounder):
        def ground_batch(self, images: Sequence[LoadedImage]) -> list[Grounding]:
            return super().ground_batch(images)[:-1]

    grounder = CoalescingGrounder(Short(delay=0.01), max_batch=4, window_s=0.05)
    outcomes: list[str] = []
    barrier = threading.Barrier(3)

    def call() -> None:
        barrier.wait()
        try:
            grounder.ground(_image())
            outcomes.append("ok")
        except BackendError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["generation_failed"] * 3


def test_an_interrupt_in_the_batch_reaches_its_own_thread_and_the_grounder_recovers() -> None:
    class Interrupted(SlowGrounder):
        def __init__(self) -> None:
            super().__init__()
            self.interrupt = True

        def ground_batch(self, images: Sequence[LoadedImage]) -> list[Grounding]:
            if self.interrupt:
                self.interrupt = False
                raise KeyboardInterrupt
            return super().ground_batch(images)

    grounder = CoalescingGrounder(Interrupted(), max_batch=2, window_s=0.0)
    with pytest.raises(KeyboardInterrupt):
        grounder.ground(_image())
    assert grounder.ground(_image()).outcome is ParseOutcome.CLEAN  # not stuck "running"
