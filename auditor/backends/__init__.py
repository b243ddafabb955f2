"""Backends: the Grounder (image -> Grounding) and DraftReader (text -> DraftReading) protocols and
their implementations. Heavy stacks (torch, transformers) are imported inside the implementations, on
first use, never at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from auditor.errors import AuditorError
from auditor.schema import DraftReading, Grounding

if TYPE_CHECKING:
    from auditor.images import LoadedImage


class BackendError(AuditorError, RuntimeError):
    """A backend could not do its job (model failed to load, engine down, no recorded output).

    Distinct from bad input: the caller gets a clear error or a visible degraded result, and the
    server keeps serving. ``code`` is stable snake_case, e.g. ``load_failed``, ``out_of_memory``.
    """

    surface = "model backend"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


class BackendState(BaseModel):
    """What the models resource reports about one configured backend."""

    model_config = ConfigDict(extra="forbid")

    role: str
    backend: str
    model_id: str
    loaded: bool
    device: str | None = None
    detail: dict[str, object] = {}


@runtime_checkable
class Grounder(Protocol):
    """Finds the audit labels on an image, each with a box."""

    def ground(self, image: LoadedImage) -> Grounding: ...

    def state(self) -> BackendState: ...

    def load(self) -> None:
        """Load now (``--preload``); idempotent."""
        ...


@runtime_checkable
class DraftReader(Protocol):
    """Reads a draft into the audit labels with verbatim spans."""

    def read(self, draft: str) -> DraftReading: ...

    def state(self) -> BackendState: ...

    def load(self) -> None: ...
