"""Stopping criteria for ``generate``: a clock that splits prefill from decode, and an early stop once
the grounder's JSON answer has closed.

Imported by ``auditor.backends.hf`` only after torch and transformers are loaded (it subclasses
``transformers.StoppingCriteria``), never at server start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import StoppingCriteria


class StepClock(StoppingCriteria):
    """Never stops anything; records when the first token came out (the prefill) and how many steps ran.

    ``generate`` checks its criteria once per new token, after the step's tokens are on the host, so
    the time of the first check is the prefill plus one decode step, and the rest is decode. On a GPU
    it waits for the queued work first (the loop waits for it each step anyway), so the split is real.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None
        self.steps = 0

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        if input_ids.is_cuda:  # criteria run before the loop's own wait for the GPU: wait here first
            torch.cuda.synchronize(input_ids.device)
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.steps += 1
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def timings_ms(self) -> dict[str, float]:
        """``prefill`` (to the first token) and ``decode`` (the rest), when any token came out."""
        if self.first is None or self.last is None:
            return {}
        return {
            "prefill": round((self.first - self.started) * 1000, 3),
            "decode": round((self.last - self.first) * 1000, 3),
        }


class _JsonDepth:
    """Tracks bracket depth outside JSON strings, one text piece at a time."""

    def __init__(self) -> None:
        self.depth = 0
        self.quote: str | None = None  # the open string's quote: JSON's ", or ' from a Python literal
        self.escaped = False
        self.armed: bool | None = None  # None: no text yet; False: the answer is not bare JSON
        self.closed = False

    def feed(self, piece: str) -> bool:
        """True once the top-level value has closed (only when the output began with it)."""
        for char in piece:
            if self.armed is None:
                if char.isspace():
                    continue
                self.armed = char in "[{"
            if not self.armed or self.closed:
                return self.closed
            if self.quote is not None:
                if self.escaped:
                    self.escaped = False
                elif char == "\\":
                    self.escaped = True
                elif char == self.quote:
                    self.quote = None
                continue
            if char in "\"'":
                self.quote = char
            elif char in "[{":
                self.depth += 1
            elif char in "]}":
                self.depth -= 1
                if self.depth <= 0:
                    self.closed = True
        return self.closed


class JsonAnswerClosed(StoppingCriteria):
    """Stops a row as soon as its output, begun as a bare JSON list or object, has closed.

    The grounder answers with one JSON list; whatever a model writes after it is discarded by recovery
    anyway, and on a GPU each of those tokens costs a full read of the weights. An output that begins
    with anything else (prose, a code fence) is never stopped early: recovery then reads it whole.
    """

    def __init__(self, decode_token: Callable[[int], str], prompt_len: int) -> None:
        self.decode_token = decode_token
        self.prompt_len = prompt_len
        self.rows: list[_JsonDepth] = []
        self.stopped_after: list[int | None] = []
        """Per row, how many tokens it had generated when its answer closed (None: never stopped)."""

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        if not self.rows:
            self.rows = [_JsonDepth() for _ in range(int(input_ids.shape[0]))]
            self.stopped_after = [None] * len(self.rows)
        generated = int(input_ids.shape[1]) - self.prompt_len
        last = input_ids[:, -1].tolist() if generated > 0 else []
        done = []
        for i, (row, tok) in enumerate(zip(self.rows, last, strict=True)):
            closed = row.feed(self.decode_token(int(tok)))
            if closed and self.stopped_after[i] is None:
                self.stopped_after[i] = generated
            done.append(closed)
        return torch.tensor(done or [False] * len(self.rows), dtype=torch.bool, device=input_ids.device)
