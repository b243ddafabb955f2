"""One SFT record per image, and the JSONL files that hold them.

A record keeps both forms of its gold: ``findings`` (normalised boxes, what curation works on) and
``messages`` (the chat turns the trainer reads: our grounding prompt with the image, then the target
JSON). `with_findings` re-renders the messages whenever curation changes the findings, so the two can
never disagree. Images are referenced by path, never copied: dataset licences (VinDr's DUA) forbid
redistributing pixels, and a corpus folder can then be shared as annotations only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from auditor.prompts import Prompt
from auditor.recovery import BoxFormat
from auditor.train.targets import TrainFinding, canonical, format_name, label_set, render_target


@dataclass(frozen=True)
class SftRecord:
    """An image, its curated findings and the chat turns built from them."""

    id: str
    source: str
    image: str
    group: str
    findings: tuple[TrainFinding, ...]
    prompt: str
    prompt_version: str
    box_format: str

    @property
    def labels(self) -> tuple[str, ...]:
        return label_set(self.findings)

    @property
    def normal(self) -> bool:
        return not self.findings

    def target(self) -> str:
        return render_target(self.findings, parse_format(self.box_format))

    def messages(self) -> list[dict[str, Any]]:
        """The conversation the trainer encodes; the user turn matches what `HFGrounder` sends."""
        return [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]},
            {"role": "assistant", "content": [{"type": "text", "text": self.target()}]},
        ]

    def with_findings(self, findings: Iterable[TrainFinding]) -> SftRecord:
        return replace(self, findings=tuple(canonical(findings)))

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "image": self.image,
            "group": self.group,
            "labels": list(self.labels),
            "findings": [f.as_json() for f in self.findings],
            "prompt_version": self.prompt_version,
            "box_format": self.box_format,
            "messages": self.messages(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SftRecord:
        user = data["messages"][0]["content"]
        prompt = next(part["text"] for part in user if part.get("type") == "text")
        return cls(
            id=str(data["id"]),
            source=str(data["source"]),
            image=str(data["image"]),
            group=str(data.get("group") or data["id"]),
            findings=tuple(canonical(TrainFinding.from_json(f) for f in data["findings"])),
            prompt=prompt,
            prompt_version=str(data["prompt_version"]),
            box_format=str(data["box_format"]),
        )


def new_record(
    *,
    id: str,
    source: str,
    image: str,
    group: str,
    findings: Iterable[TrainFinding],
    prompt: Prompt,
    fmt: BoxFormat,
) -> SftRecord:
    return SftRecord(
        id=id,
        source=source,
        image=image,
        group=group,
        findings=tuple(canonical(findings)),
        prompt=prompt.text,
        prompt_version=prompt.version,
        box_format=format_name(fmt),
    )


def parse_format(name: str) -> BoxFormat:
    """``yxyx@1`` -> BoxFormat (the inverse of `format_name`)."""
    order, _, scale = name.partition("@")
    if order == "yxyx":
        return BoxFormat("yxyx", float(scale or 1))
    if order == "xyxy":
        return BoxFormat("xyxy", float(scale or 1))
    raise ValueError(f"unknown box format {name!r}")


def write_records(path: Path, records: Iterable[SftRecord]) -> int:
    """Write JSONL (via a temporary file, so a crash never leaves half a corpus); returns the count."""
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record.as_json()) + "\n")
            count += 1
    tmp.replace(path)
    return count


def read_records(path: Path) -> Iterator[SftRecord]:
    """Records of a JSONL file; a bad line is a ValueError naming file and line, never skipped."""
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield SftRecord.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError, StopIteration, IndexError) as exc:
                raise ValueError(
                    f"{path}:{line_no}: not an SFT record ({type(exc).__name__}: {exc})"
                ) from None
