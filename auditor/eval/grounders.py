"""Grounding a dataset item, from any grounder: the oracle (gold boxes, no image) or a model or replay
grounder from the factory (the item's image file, loaded exactly as the server loads images).

Every way an item can fail to be grounded raises `ItemError` with the stage and a reason, which the
runner writes into the item's record: a missing image is an integrity failure, never a skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from auditor.backends import BackendError, Grounder
from auditor.backends.oracle import OracleGrounder
from auditor.eval.datasets import IMAGE_SUFFIXES, sha256_file
from auditor.eval.items import EvalItem
from auditor.eval.records import FailureStage
from auditor.schema import Grounding


class ItemError(Exception):
    """One item could not pass a stage; recorded as a failure with this stage and reason."""

    def __init__(self, stage: FailureStage, reason: str) -> None:
        super().__init__(reason)
        self.stage: FailureStage = stage
        self.reason = reason


class ItemGrounder(Protocol):
    def ground_item(self, item: EvalItem) -> tuple[Grounding, str | None]:
        """The item's Grounding and the sha256 of the image it came from (None without an image)."""
        ...

    def describe(self) -> dict[str, object]:
        """Backend, model id, revision, prompt version...: what the run's provenance names."""
        ...


class OracleItemGrounder:
    """The dataset's own gold as the grounding: isolates reader + judge; needs no images."""

    def __init__(self, items: Sequence[EvalItem]) -> None:
        self.oracle = OracleGrounder(
            {i.id: [(f.label, f.box) for f in i.findings] for i in items}, {i.id: i.normal for i in items}
        )

    def ground_item(self, item: EvalItem) -> tuple[Grounding, str | None]:
        try:
            return self.oracle.ground_id(item.id), None
        except BackendError as exc:
            raise ItemError("grounding", str(exc)) from None

    def describe(self) -> dict[str, object]:
        state = self.oracle.state()
        return {
            "backend": state.backend,
            "model_id": state.model_id,
            "revision": None,
            "prompt_version": None,
        }


def find_image(folder: Path, name: str) -> Path | None:
    """``folder/name``, or ``folder/name.<png|jpg|...>`` for datasets that name images without a suffix."""
    path = folder / name
    if path.is_file():
        return path
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


class ImageItemGrounder:
    """A factory grounder (hf, http, replay) fed the item's image from ``--images``."""

    def __init__(self, grounder: Grounder, images: Path | None, extra: dict[str, object]) -> None:
        self.grounder = grounder
        self.images = images
        self.extra = extra

    def ground_item(self, item: EvalItem) -> tuple[Grounding, str | None]:
        from auditor.images import ImageError, load_image

        if item.image is None:
            raise ItemError("image", "the dataset names no image for this item")
        if self.images is None:
            raise ItemError("image", f"no --images folder given, so {item.image} cannot be read")
        path = find_image(self.images, item.image)
        if path is None:
            raise ItemError("image", f"image not found: {self.images / item.image}")
        try:
            loaded = load_image(path)
        except ImageError as exc:
            raise ItemError("image", f"{exc.code}: {exc.message}") from None
        try:
            grounding = self.grounder.ground(loaded)
        except BackendError as exc:
            raise ItemError("grounding", f"{exc.code}: {exc}") from None
        return grounding, loaded.info.sha256

    def describe(self) -> dict[str, object]:
        state = self.grounder.state()
        return {
            "backend": state.backend,
            "model_id": state.model_id,
            "revision": state.detail.get("revision"),
            "prompt_version": state.detail.get("prompt_version"),
            **self.extra,
        }


def replay_extra(replay: Path | None) -> dict[str, object]:
    """The replay file's sha256, so a re-scored run names exactly which recordings it replayed."""
    return {"replay_file": str(replay), "replay_sha256": sha256_file(replay)} if replay is not None else {}
