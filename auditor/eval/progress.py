"""A tiny progress bar on stderr (no dependency): shown when stderr is a terminal, or when asked.

Long runs need a sign of life, but a bar written into a log file or a pipe is noise, so by default
it only draws on a TTY. It redraws at most ten times a second and never writes to stdout.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``update()`` once per finished item; ``close()`` ends the line."""

    def __init__(
        self, total: int, done: int = 0, *, enabled: bool | None = None, stream: TextIO | None = None
    ):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total
        self.done = done
        self._start_done = done
        self._t0 = time.monotonic()
        self._last = 0.0
        if self.enabled:
            self._draw()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last >= 0.1 or self.done >= self.total):
            self._last = now
            self._draw()

    def _draw(self) -> None:
        width = 30
        frac = self.done / self.total if self.total else 1.0
        filled = int(width * frac)
        elapsed = time.monotonic() - self._t0
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} items {rate:6.1f}/s eta {left:5.0f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
