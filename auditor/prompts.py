"""Versioned prompt templates for the two model stages. Either can be replaced from a file (a
fine-tune trained on another prompt); the version then names the file's hash, so every output says
which prompt produced it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from auditor.labels import LABEL_ORDER
from auditor.recovery import BoxFormat

GROUNDING_VERSION: Final = "ground-v1"
READER_VERSION: Final = "read-v1"


@dataclass(frozen=True)
class Prompt:
    text: str
    version: str


def _labels() -> str:
    return ", ".join(lb.value for lb in LABEL_ORDER)


def _box_contract(fmt: BoxFormat) -> str:
    order = "[y0, x0, y1, x1]" if fmt.order == "yxyx" else "[x0, y0, x1, y1]"
    if fmt.scale == 1:
        scale = "fractions of the image height and width between 0 and 1"
    else:
        scale = f"integers from 0 to {fmt.scale:g} (fractions of the image size times {fmt.scale:g})"
    return f'"box_2d": {order}, top-left origin, as {scale}'


def grounding_prompt(fmt: BoxFormat, override: str | Path | None = None) -> Prompt:
    """The instruction given with the image. States the exact output contract recovery expects."""
    if override is not None:
        return _from_file(override)
    text = (
        "You are reading a chest X-ray for a quality-assurance research tool. Find which of these "
        f"labels are visible: {_labels()}.\n"
        "Answer with JSON only: a list of objects, one per finding, each "
        f'{{"label": <one label exactly as spelled above>, {_box_contract(fmt)}}} '
        "marking where the finding is. Use one object per region; the same label may appear more than once. "
        'If none of the findings is visible, answer exactly [{"label": "no_finding"}] and never put '
        "no_finding beside another label. Do not explain, do not add text before or after the JSON."
    )
    return Prompt(text=text, version=f"{GROUNDING_VERSION}/{fmt.order}@{fmt.scale:g}")


READER_SYSTEM: Final = (
    "You extract findings from a chest X-ray report for a quality-assurance research tool. "
    f"The only labels are: {_labels()}. "
    "For every statement in the report about one of these labels, output an object "
    '{"label": <label exactly as spelled>, "status": "present" | "absent" | "uncertain", '
    '"span": <the exact words from the report that state it, copied character for character>}. '
    'A denial ("no pneumothorax", "without effusion", "has resolved") is absent. A hedge ("possible", '
    '"may represent", "cannot be excluded", "versus") is uncertain. An enlarged heart is cardiomegaly; '
    "airspace disease, infiltrate and pneumonia are lung_opacity_consolidation; a nodule or mass is "
    'nodule_mass. A statement that the study is normal ("no acute cardiopulmonary abnormality") is '
    "no_finding present. Ignore findings outside the labels (atelectasis, edema, granuloma, pericardial "
    "effusion, fractures, devices). Answer with a JSON list only; [] if the report states nothing about "
    "the labels."
)


def reader_prompt(override: str | Path | None = None) -> Prompt:
    """The system prompt of the draft reader; the draft itself is the user turn, verbatim."""
    if override is not None:
        return _from_file(override)
    return Prompt(text=READER_SYSTEM, version=READER_VERSION)


def _from_file(path: str | Path) -> Prompt:
    try:
        data = Path(path).read_bytes()
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ValueError(f"prompt file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"prompt file {path} is unreadable: {exc}") from None
    if not text.strip():
        raise ValueError(f"prompt file {path} is empty")
    return Prompt(text=text, version=f"file:{Path(path).name}:{hashlib.sha256(data).hexdigest()[:12]}")
