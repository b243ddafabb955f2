"""The replay grounder: recorded raw model outputs, sent through the same recovery as a live model.

It lets the whole loop run without weights, and lets an evaluation be re-scored without a GPU. File:
JSONL, one line per image, ``{"image_sha256": "<hex of the image file's bytes>", "raw_output":
"<text>", "model": "<optional id>"}``. An image with no recorded output is a clear error, never an
empty result: an empty result would read as "nothing on the image".
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from auditor.backends import BackendError, BackendState
from auditor.recovery import BoxFormat, recover_findings
from auditor.schema import Grounding, ModelInfo

if TYPE_CHECKING:
    from auditor.images import LoadedImage

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class _Record:
    raw_output: str
    model: str | None


def load_replay_file(path: Path) -> dict[str, _Record]:
    """Parse the whole file up front, so a bad file fails at start with the line that is wrong."""
    records: dict[str, _Record] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ValueError(f"replay file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"replay file {path} is unreadable: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise ValueError(f"{path}:{number}: expected an object with image_sha256 and raw_output")
        sha = str(item.get("image_sha256", "")).lower()
        raw = item.get("raw_output")
        model = item.get("model")
        if not _SHA256.match(sha):
            raise ValueError(f"{path}:{number}: image_sha256 must be 64 hex characters")
        if not isinstance(raw, str):
            raise ValueError(f"{path}:{number}: raw_output must be a string")
        if model is not None and not isinstance(model, str):
            raise ValueError(f"{path}:{number}: model must be a string")
        if sha in records:
            raise ValueError(f"{path}:{number}: a second record for image {sha[:12]}...")
        records[sha] = _Record(raw_output=raw, model=model)
    return records


class ReplayGrounder:
    """Grounds an image by looking up its recorded generation by the sha256 of the image file."""

    def __init__(self, path: str | Path, box_format: BoxFormat | None = None) -> None:
        self.path = Path(path)
        self.box_format = box_format or BoxFormat()
        self._records = load_replay_file(self.path)

    def load(self) -> None:
        return None

    def state(self) -> BackendState:
        return BackendState(
            role="grounder",
            backend="replay",
            model_id=f"replay:{self.path.name}",
            loaded=True,
            device="cpu",
            detail={
                "records": len(self._records),
                "box_format": f"{self.box_format.order}@{self.box_format.scale:g}",
            },
        )

    def ground(self, image: LoadedImage) -> Grounding:
        t0 = time.perf_counter()
        record = self._records.get(image.info.sha256)
        if record is None:
            raise BackendError(
                "no_recorded_output",
                f"the replay file {self.path.name} has no recorded output for this image "
                f"(sha256 {image.info.sha256}); record one with `cxr-auditor replay-record "
                f"{self.path.name} --image IMAGE --raw TEXT`",
            )
        recovered = recover_findings(record.raw_output, self.box_format)
        return Grounding(
            findings=recovered.findings,
            outcome=recovered.outcome,
            model=ModelInfo(backend="replay", model_id=record.model or f"replay:{self.path.name}"),
            image=image.info,
            raw_output=record.raw_output,
            notes=[*image.notes, *recovered.notes],
            timings_ms={"recovery": round((time.perf_counter() - t0) * 1000, 3)},
        )
