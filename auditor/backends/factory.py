"""Build the configured backends. Only the chosen backend's module is imported, and nothing heavy is
imported until a model is first used, so building them is cheap and happens at start."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from auditor.backends import BackendError, DraftReader, Grounder
from auditor.config import Settings
from auditor.recovery import BoxFormat


def box_format(settings: Settings) -> BoxFormat:
    return BoxFormat(order=settings.box_order, scale=settings.box_scale)


def make_grounder(settings: Settings) -> Grounder:
    """The grounder named by ``settings.grounder``; a backend this build lacks is a clear error."""
    if settings.grounder == "replay":
        from auditor.backends.replay import ReplayGrounder

        assert settings.replay is not None  # Settings.validate guarantees it
        return ReplayGrounder(settings.replay, box_format(settings))
    module = {"hf": "auditor.backends.hf", "http": "auditor.backends.engine"}[settings.grounder]
    if importlib.util.find_spec(module) is None:
        raise BackendError("not_available", f"grounder {settings.grounder!r} is not available in this build")
    mod = importlib.import_module(module)
    grounder: Grounder = mod.make_grounder(settings)
    if settings.grounder == "hf" and settings.grounding_batch_size > 1:
        from auditor.backends.batching import CoalescingGrounder

        # concurrent calls (worklist workers, several clients) share one generate per batch
        return CoalescingGrounder(grounder, settings.grounding_batch_size)  # type: ignore[arg-type]
    return grounder


def _nvidia_driver_present() -> bool:
    """A cheap look for an NVIDIA driver, so a CPU machine never pays for importing torch (~200 MB)."""
    return Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def cuda_available() -> bool:
    """True only when torch is installed and sees a CUDA device (imports torch only on a GPU host)."""
    if importlib.util.find_spec("torch") is None or not _nvidia_driver_present():
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_reader_kind(settings: Settings) -> str:
    """``auto`` means the Nemotron reader on a CUDA machine whose weights are on disk (or may be
    downloaded), else the rule reader: ``auto`` never picks a model that would fail on every call."""
    if settings.reader != "auto":
        return settings.reader
    if settings.device == "cpu":
        return "rules"
    if not (cuda_available() and importlib.util.find_spec("auditor.backends.hf")):
        return "rules"
    from auditor.backends.availability import locate

    return (
        "hf"
        if settings.allow_download or locate(settings.reader_model, settings.reader_revision).ready
        else "rules"
    )


def make_reader(settings: Settings, kind: str | None = None) -> DraftReader:
    kind = kind or resolve_reader_kind(settings)
    if kind == "rules":
        from auditor.backends.rules import RulesReader

        return RulesReader()
    module = {"hf": "auditor.backends.hf", "http": "auditor.backends.engine"}[kind]
    if importlib.util.find_spec(module) is None:
        raise BackendError("not_available", f"reader {kind!r} is not available in this build")
    mod = importlib.import_module(module)
    reader: DraftReader = mod.make_reader(settings)
    return reader
