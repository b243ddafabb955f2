"""Is a model's checkpoint on this machine? Answered from the disk alone (a folder, or the Hugging Face
cache), never from the network, so that the server can say at start which stages cannot work and a
tool call fails at once with what to do, instead of after minutes of hub retries (desktop clients give
up on a call after about a minute).

Also here: the memory of a failed load (later calls get the same answer at once until a retry is due
or the user reloads), the hub kept offline while a model loads, and the one sanctioned download (the
``fetch-models`` command, or a first use the user allowed with ``allow_download``).

Only ``huggingface_hub`` is imported, lazily; never torch or transformers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from auditor.backends import BackendError, BackendState
from auditor.config import Settings

INSTALL_HINT: Final = "pip install 'cxr-draft-auditor[models]'"
WEIGHT_SUFFIXES: Final = (".safetensors", ".bin")
SKIP_FILES: Final = ("*.gguf", "*.onnx", "*.h5", "*.msgpack", "*.ot", "*.tflite", "original/*")
"""What ``fetch-models`` leaves on the hub: formats transformers does not load here."""

Where = Literal["folder", "cache", "missing"]
Role = Literal["grounder", "reader"]

_STAGES: Final[dict[str, str]] = {
    "grounder": "ground_image, audit and render_findings cannot work",
    "reader": "parse_draft and audit will read drafts with the rule reader instead",
}
_WAYS_OUT: Final[dict[str, str]] = {
    "grounder": "point at an engine that serves it with --grounder http --grounder-url URL, or use "
    "recorded outputs with --grounder replay --replay FILE",
    "reader": "point at an engine with --reader http --reader-url URL, or use --reader rules",
}


@dataclass(frozen=True)
class Availability:
    """Where a configured checkpoint is on this machine, and why it cannot load when it is not."""

    model_id: str
    revision: str | None
    where: Where
    path: str | None = None
    problem: str | None = None
    hub_id: bool = False

    @property
    def ready(self) -> bool:
        return self.problem is None


def looks_local(model_id: str) -> bool:
    """A path rather than a hub id: absolute, relative (``./``, ``~``), or more than one slash."""
    return os.path.isabs(model_id) or model_id.startswith((".", "~")) or model_id.count("/") > 1


def weights_problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot load (no config, no weights, shards missing), or None."""
    if not (folder / "config.json").is_file():
        return f"{folder} has no config.json"
    for index in sorted(folder.glob("*.index.json")):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        absent = sorted(s for s in shards if not (folder / s).is_file())
        if absent:
            return f"{folder} is incomplete: {len(absent)} of {len(shards)} weight files are missing"
        return None
    if not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir() if p.is_file()):
        return f"{folder} holds no weight files (*.safetensors)"
    return None


def cache_folder() -> str:
    """The Hugging Face cache this process reads (HF_HUB_CACHE / HF_HOME), for messages."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return "~/.cache/huggingface/hub"
    return str(constants.HF_HUB_CACHE)


def _cached_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The cache's snapshot folder of ``repo_id`` at ``revision``, from the disk only."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return Path(found).parent if isinstance(found, str) else None


def locate(model_id: str, revision: str | None = None) -> Availability:
    """Find a checkpoint without the network: a folder, else the Hugging Face cache."""
    folder = Path(os.path.expanduser(model_id))
    if folder.is_dir():
        problem = weights_problem(folder)
        return Availability(model_id, revision, "folder", str(folder), problem)
    if looks_local(model_id) or folder.exists():
        return Availability(model_id, revision, "missing", None, f"the folder {model_id} does not exist")
    try:
        snapshot = _cached_snapshot(model_id, revision)
    except ImportError:
        why = f"huggingface_hub is not installed; install the model extras: {INSTALL_HINT}"
        return Availability(model_id, revision, "missing", None, why, hub_id=True)
    except ValueError as exc:  # not a valid repo id either
        why = f"it is neither a folder nor a valid hub id ({' '.join(str(exc).split())[:120]})"
        return Availability(model_id, revision, "missing", None, why, hub_id=True)
    if snapshot is None:
        at = f" at revision {revision!r}" if revision else ""
        why = f"it is not in the Hugging Face cache ({cache_folder()}){at}"
        return Availability(model_id, revision, "missing", None, why, hub_id=True)
    return Availability(model_id, revision, "cache", str(snapshot), weights_problem(snapshot), hub_id=True)


def unavailable_message(role: str, found: Availability, settings: Settings) -> str:
    """One actionable paragraph: what is missing, which tools it stops, and every way out."""
    key = f"{role}_model"
    ways = []
    if found.hub_id:
        ways.append(f"fetch it once with `cxr-auditor fetch-models` (or `hf download {found.model_id}`)")
    else:
        ways.append(f"give the checkpoint's folder with --{role}-model DIR (CXR_AUDITOR_{key.upper()})")
    ways.append(_WAYS_OUT.get(role, "choose another backend"))
    if found.hub_id and not settings.allow_download:
        ways.append(
            "or let the first call download it (several GB) with --allow-download "
            "(CXR_AUDITOR_ALLOW_DOWNLOAD=1)"
        )
    return (
        f"the {role} model {found.model_id!r} is not on this machine: {found.problem}, so "
        f"{_STAGES.get(role, 'its stage cannot work')}. Ways out: {'; '.join(ways)}"
    )


def tidy(message: str) -> str:
    """One line, and no doubled full stop where a library's sentence met ours."""
    text = " ".join(message.split())
    text = re.sub(r"\.{4,}", "...", text)
    return re.sub(r"(?<!\.)\.\.(?!\.)", ".", text)


# --- keeping the hub offline while loading, and the one sanctioned download ------------------------


class _HubMode:
    """Loads run with the hub offline (so a cached model never waits on hub retries); a download waits
    until no load is running, and loads wait for a download, since offline mode is process-wide."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._offline = 0
        self._downloading = 0
        self._saved: bool | None = None

    @contextlib.contextmanager
    def offline(self) -> Iterator[None]:
        try:
            from huggingface_hub import constants
        except ImportError:  # the load itself will say which extra to install
            yield
            return
        with self._cond:
            self._cond.wait_for(lambda: self._downloading == 0)
            if self._offline == 0:
                self._saved = constants.HF_HUB_OFFLINE
                constants.HF_HUB_OFFLINE = True
            self._offline += 1
        try:
            yield
        finally:
            with self._cond:
                self._offline -= 1
                if self._offline == 0 and self._saved is not None:
                    constants.HF_HUB_OFFLINE = self._saved
                self._cond.notify_all()

    @contextlib.contextmanager
    def online(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._offline == 0)
            self._downloading += 1
        try:
            yield
        finally:
            with self._cond:
                self._downloading -= 1
                self._cond.notify_all()


HUB: Final = _HubMode()


def download(model_id: str, revision: str | None = None) -> str:
    """Fetch a hub checkpoint into the cache once, with progress bars on stderr; the snapshot folder.

    Raises BackendError(``download_failed``) with one line saying why (unreachable, gated, unknown).
    """
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils.tqdm import enable_progress_bars
    except ImportError as exc:
        raise BackendError(
            "download_failed", f"cannot download {model_id!r}: install the model extras: {INSTALL_HINT}"
        ) from exc
    enable_progress_bars()
    try:
        with HUB.online():
            return str(snapshot_download(model_id, revision=revision, ignore_patterns=list(SKIP_FILES)))
    except Exception as exc:
        raise BackendError("download_failed", tidy(_download_error(model_id, exc))) from None


def _why_offline() -> str:
    """Name HF_HUB_OFFLINE only when it is really on: a newcomer would go looking for it."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return "the hub cannot be reached from here"
    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "the hub is offline here (HF_HUB_OFFLINE is set)"
    return "the hub cannot be reached from here (offline or unreachable)"


def _download_error(model_id: str, exc: Exception) -> str:
    name = type(exc).__name__
    first = " ".join(str(exc).split())[:200]
    if name == "GatedRepoError":
        return (
            f"{model_id!r} is gated: accept its terms on https://huggingface.co/{model_id} and log in "
            "with `hf auth login` (or set HF_TOKEN), then run this again"
        )
    if name == "RepositoryNotFoundError":
        return f"{model_id!r} was not found on the hub (or is private: log in with `hf auth login`)"
    if name in {"OfflineModeIsEnabled", "LocalEntryNotFoundError"} or "offline" in first.lower():
        return f"cannot download {model_id!r}: {_why_offline()}"
    return f"cannot download {model_id!r}: {name}: {first}"


# --- what a backend does before loading ----------------------------------------------------------


def ensure_local(role: str, model_id: str, revision: str | None, settings: Settings) -> Availability:
    """The checkpoint on disk, downloaded first only if the user allowed it; else BackendError at once."""
    found = locate(model_id, revision)
    if found.ready:
        return found
    if found.hub_id and settings.allow_download:
        download(model_id, revision)
        found = locate(model_id, revision)
        if found.ready:
            return found
    raise BackendError("load_failed", unavailable_message(role, found, settings))


@dataclass
class LoadMemory:
    """A failed load, remembered: later calls get the same error at once until ``retry_after_s`` has
    passed or ``forget`` is called (an explicit load), instead of paying for the failure again."""

    retry_after_s: float
    clock: Callable[[], float] = time.monotonic
    error: BackendError | None = None
    at: float = 0.0

    def check(self) -> None:
        if self.error is not None and self.clock() - self.at < self.retry_after_s:
            raise BackendError(self.error.code, str(self.error))

    def remember(self, exc: BackendError) -> BackendError:
        self.error, self.at = BackendError(exc.code, tidy(str(exc))), self.clock()
        return self.error

    def forget(self) -> None:
        self.error = None

    def retry_in_s(self) -> float | None:
        if self.error is None:
            return None
        return round(max(0.0, self.retry_after_s - (self.clock() - self.at)), 1)


def weights_detail(role: str, model_id: str, revision: str | None, settings: Settings) -> dict[str, Any]:
    """What the models resource says about the checkpoint: where it is, or the problem and ways out."""
    found = locate(model_id, revision)
    detail: dict[str, Any] = {"weights": found.where, "weights_path": found.path}
    if not found.ready:
        if found.hub_id and found.where == "missing" and settings.allow_download:
            detail["weights"] = "download_on_first_use"
        else:
            detail["problem"] = unavailable_message(role, found, settings)
    return detail


def state_problems(states: Iterable[BackendState]) -> list[tuple[str, str]]:
    """(role, message) for each configured model that cannot load from this machine, read from the
    backends' states (what `serve` and `audit-batch` say at start, and the models resource shows)."""
    return [(s.role, str(s.detail["problem"])) for s in states if s.detail.get("problem")]
