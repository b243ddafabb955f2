"""One error vocabulary: every error of ours carries a stable snake_case ``code`` and a message for
people, and `describe` turns any exception into the (code, one line) that a surface shows.

The MCP server, the worklist runner and the command line all report failures through `describe`, so a
study's error line, a tool error and a CLI line name a problem the same way. Only our own errors carry
their text: anything else is named by its type, so an unexpected error cannot echo input data (a
draft, a path, a header value) into a result, a log or a client. Pure: no I/O, no third-party import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

INVALID_INPUT: Final = "invalid_input"
INTERNAL_ERROR: Final = "internal_error"


class AuditorError(Exception):
    """Base of our errors. ``code`` is stable (clients and scripts branch on it, results files keep
    it); ``message`` says what was wrong and what to do. ``surface`` names the part that failed
    ("image", "model backend") in front of the code when the error is shown as one line."""

    code: str = "error"
    surface: ClassVar[str] = ""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __reduce__(self) -> tuple[object, ...]:
        # subclasses take their arguments in other orders: rebuild from the two fields, whatever they are
        return (_rebuild, (type(self), self.message, self.code))


def _rebuild(cls: type[AuditorError], message: str, code: str) -> AuditorError:
    error = cls.__new__(cls)
    AuditorError.__init__(error, message, code)
    return error


@dataclass(frozen=True)
class Failure:
    """A failure as a result keeps it (a worklist study's error line, a row of the report): a stable
    snake_case code and a message for people."""

    code: str
    message: str


@dataclass(frozen=True)
class Described(Failure):
    """An error as a surface shows it: its stable code, its message, and the part that failed."""

    surface: str = ""

    @property
    def failure(self) -> Failure:
        return Failure(self.code, self.message)

    @property
    def ours(self) -> bool:
        """False for an error we did not anticipate (its text was withheld)."""
        return self.code != INTERNAL_ERROR

    @property
    def line(self) -> str:
        """One line for people: ``image (not_found): no such file``, or the message alone."""
        return f"{self.surface} ({self.code}): {self.message}" if self.surface else self.message


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text.strip() else ""


def describe(exc: BaseException) -> Described:
    """Any exception as (code, message, surface). Ours keep their code and text; a plain ValueError
    (bad input found by a check that raised it) keeps its first line under ``invalid_input``; anything
    else is ``internal_error`` named only by its type."""
    if isinstance(exc, AuditorError):
        return Described(exc.code, exc.message, exc.surface)
    if isinstance(exc, ValueError):
        return Described(INVALID_INPUT, _first_line(str(exc)) or type(exc).__name__)
    return Described(INTERNAL_ERROR, f"internal error ({type(exc).__name__})")
