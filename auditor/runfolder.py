"""The run folder toolkit shared by `audit-batch` and `eval`: both stream one JSON line per finished
unit into a folder, resume from it after a kill, and write their summaries beside it.

- `FolderLock`: one writer per folder (``DIR/.lock``, taken without waiting; the lock dies with the
  process, so a killed run never leaves the folder locked).
- `write_text_atomic`: a file whole or not at all (a uniquely named temporary file beside it, synced,
  then renamed over it), so a reader never sees half a summary and two writers never share a temp file.
- `read_jsonl`: the lines of a results file, tolerating the one defect a kill leaves: a last line cut
  off mid-write. It reports where the whole lines end, so the writer that resumes can cut the rest off.
- `Progress`: one progress bar on stderr, redrawn in place on a terminal, a throttled line elsewhere.
"""

from __future__ import annotations

import math
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Generic, TextIO, TypeVar

from auditor.errors import AuditorError

T = TypeVar("T")
LOCK_FILE: Final = ".lock"


# ---- one writer at a time ----------------------------------------------------------------------------


class FolderBusy(AuditorError):
    """Another process holds the folder's lock."""

    code = "folder_busy"


class FolderLock:
    """An exclusive, non-blocking lock on ``folder/.lock`` for as long as it is held (or the process
    lives). `acquire` raises FolderBusy at once when another process holds it."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_now(fd)
        except BlockingIOError:
            os.close(fd)
            raise FolderBusy(f"another run is writing {self.path.parent}") from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Safe to call twice; closing the descriptor releases the lock."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


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


# ---- whole files -------------------------------------------------------------------------------------


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: a temporary file in the same folder, synced, then
    renamed over ``path`` (a reader never sees half a file, a crash never leaves one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---- JSON lines ----------------------------------------------------------------------------------------


@dataclass
class JsonlScan(Generic[T]):
    """A JSONL file as read: the parsed lines with their numbers, the lines before the last that did
    not parse (number, reason), and how many leading bytes hold whole lines (``keep``).

    ``torn``: the last line was cut off mid-write (it is not in ``lines``). ``newline_lost``: the last
    whole line has no newline after it. Either way the file needs repair before more lines are
    appended to it (`repair_jsonl`)."""

    lines: list[tuple[int, T]] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)
    keep: int = 0
    size: int = 0
    torn: bool = False
    newline_lost: bool = False

    @property
    def needs_repair(self) -> bool:
        return self.keep < self.size or self.newline_lost


def read_jsonl(path: Path, parse: Callable[[bytes], T]) -> JsonlScan[T]:
    """Read ``path`` (absent: empty) without changing it, one ``parse(line)`` per non-blank line. A
    ValueError from ``parse`` on the last line marks it torn; on any other line it is kept in ``bad``
    for the caller to judge (an evaluation refuses the folder, a worklist redoes the study). Lines are
    split on b"\\n" only: JSON strings may hold U+2028, which ``splitlines`` would cut."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JsonlScan()
    raw_lines = data.split(b"\n")
    scan: JsonlScan[T] = JsonlScan(size=len(data))
    keep = 0
    for number, line in enumerate(raw_lines, start=1):
        last = number == len(raw_lines)
        if line.strip():
            try:
                scan.lines.append((number, parse(line)))
            except ValueError as exc:  # json, pydantic and UnicodeDecodeError are ValueErrors
                if last:  # written partly when the run was killed
                    scan.torn = True
                    break
                scan.bad.append((number, _reason(exc)))
        keep += len(line) + (0 if last else 1)
    scan.keep = keep
    scan.newline_lost = bool(keep) and not data[:keep].endswith(b"\n")
    return scan


def _reason(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)  # a pydantic ValidationError: its first problem
    if callable(errors):
        first: Any = errors()[0]
        return str(first["msg"])
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def repair_jsonl(path: Path, scan: JsonlScan[Any]) -> None:
    """Cut a torn last line off and restore a lost newline, so that lines appended next start on a
    line of their own. Only the writer that resumes a run calls this; readers never change a file."""
    if not scan.needs_repair:
        return
    with open(path, "r+b") as fh:
        fh.truncate(scan.keep)
        if scan.newline_lost:
            fh.seek(scan.keep)
            fh.write(b"\n")


# ---- progress ----------------------------------------------------------------------------------------


class Progress:
    """Progress on stderr for ``total`` units of which ``done`` are finished already (resumed): drawn
    when ``enabled`` (default: when the stream is a terminal), redrawn in place on a terminal at most
    ten times a second, a line every two seconds elsewhere (a log file gets a readable history). Never
    writes to stdout. `update` once per finished unit; `close` draws the last state and ends the line."""

    def __init__(
        self,
        total: int,
        done: int = 0,
        *,
        label: str = "",
        enabled: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.enabled = self.tty if enabled is None else enabled
        self.total, self.done, self.failed = total, done, 0
        self.label = label
        self._resumed = done
        self._t0 = time.monotonic()
        self._last = -math.inf
        self._draw(final=False, force=True)

    def update(self, n: int = 1, *, failed: bool = False) -> None:
        self.done += n
        self.failed += n if failed else 0
        self._draw(final=False, force=self.tty and self.done >= self.total)

    def close(self) -> None:
        self._draw(final=True, force=True)

    def _draw(self, *, final: bool, force: bool) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < (0.1 if self.tty else 2.0)):
            return
        self._last = now
        end = "\n" if final or not self.tty else ""
        self.stream.write(("\r\x1b[K" if self.tty else "") + self.text(now) + end)
        self.stream.flush()

    def text(self, now: float) -> str:
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * round(24 * frac) + "-" * (24 - round(24 * frac))
        new = self.done - self._resumed
        rate = new / (now - self._t0) if now > self._t0 else 0.0
        eta = f"{(self.total - self.done) / rate:.0f}s" if rate > 0 else "?"
        failed = f"  {self.failed} failed" if self.failed else ""
        resumed = f", {self._resumed} resumed" if self._resumed else ""
        head = f"{self.label} " if self.label else ""
        return (
            f"{head}[{bar}] {self.done}/{self.total} {100 * frac:3.0f}%{failed}  "
            f"{rate:.1f}/s  ETA {eta}{resumed}"
        )
