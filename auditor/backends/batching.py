"""Batched grounding without changing any caller: concurrent ``ground`` calls are gathered into one
``ground_batch``.

Why: on a GPU, decoding one image or eight costs nearly the same weight reads per token, so a worklist
(or several clients at once) should ground images together. Callers keep calling ``ground(image)``
from their own threads; the first caller to arrive while no batch is running becomes the leader,
waits a short window for others (or until the batch is full), runs one ``ground_batch``, and hands each
caller its own result or the batch's exception. Nothing is reordered or dropped: every request gets
exactly the Grounding made from its image.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from auditor.backends import BackendError, BackendState, Grounder
from auditor.schema import Grounding

if TYPE_CHECKING:
    from auditor.images import LoadedImage


class BatchGrounder(Grounder, Protocol):
    """A grounder that can ground several images in one model call."""

    def ground_batch(self, images: Sequence[LoadedImage]) -> list[Grounding]: ...


@dataclass(eq=False)
class _Request:
    image: LoadedImage
    result: Grounding | None = None
    error: BaseException | None = None
    done: bool = False
    enqueued: float = field(default_factory=time.monotonic)


class CoalescingGrounder:
    """Gathers concurrent ``ground`` calls into batches of at most ``max_batch`` images."""

    def __init__(self, inner: BatchGrounder, max_batch: int, window_s: float = 0.01) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.inner = inner
        self.max_batch = max_batch
        self.window_s = window_s
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._running = False
        self.batches: list[int] = []
        """Sizes of the batches run so far (the benchmark and the tests read it)."""

    def ground(self, image: LoadedImage) -> Grounding:
        request = _Request(image)
        with self._cond:
            self._queue.append(request)
            self._cond.notify_all()
            while not request.done:
                if not self._running:
                    self._lead()
                else:
                    self._cond.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _lead(self) -> None:
        """Called with the lock held: gather a batch, run it unlocked, deliver the results."""
        self._running = True
        try:
            deadline = self._queue[0].enqueued + self.window_s
            while len(self._queue) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._cond.release()
            try:
                self._run(batch)
            finally:
                self._cond.acquire()
        finally:
            self._running = False
            self._cond.notify_all()

    def _run(self, batch: list[_Request]) -> None:
        """Every request of the batch ends done: with its own result, or all with the batch's error.
        An interrupt (KeyboardInterrupt, SystemExit) is delivered to the batch and re-raised here, in
        the thread where it arrived."""
        try:
            results = self.inner.ground_batch([r.image for r in batch])
            if len(results) != len(batch):
                raise BackendError(
                    "generation_failed",
                    f"the grounder returned {len(results)} results for a batch of {len(batch)} images",
                )
        except BaseException as exc:  # every caller in the batch gets the error, in its own thread
            for request in batch:
                request.error, request.done = exc, True
            if not isinstance(exc, Exception):
                raise
            return
        self.batches.append(len(batch))
        for request, result in zip(batch, results, strict=True):
            request.result, request.done = result, True

    def state(self) -> BackendState:
        state = self.inner.state()
        return state.model_copy(update={"detail": {**state.detail, "max_batch": self.max_batch}})

    def load(self) -> None:
        self.inner.load()
