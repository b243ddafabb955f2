"""Was a stage result changed by a person before it was passed back in? A Grounding carries the text
its model wrote (``raw_output``), and a rule reading the draft it read: recovering or reading that
again gives the findings the model (or the rules) produced. When the findings passed in differ, the
comparison says so, so a flag judged on edited findings is never taken for the model's.

Pure logic, no I/O: the recovery and the rule reader are deterministic.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Final

from auditor.recovery import DEFAULT_BOX_FORMAT, BoxFormat, recover_findings, recover_mentions
from auditor.schema import Comparison, DraftMention, DraftReading, Grounding, ImageFinding, Note

HAND_BUILT_NOTE: Final = "grounding_hand_built"
_MODEL_BACKENDS: Final = frozenset({"hf", "http", "replay"})
_PROMPT_BOXES: Final = re.compile(r"/(yxyx|xyxy)@([0-9.]+)$")


def _box_format(grounding: Grounding, default: BoxFormat) -> BoxFormat:
    """The box format the grounding's prompt asked for (``ground-v1/yxyx@1``), else ``default``."""
    match = _PROMPT_BOXES.search(grounding.model.prompt_version or "")
    if match is None:
        return default
    return BoxFormat(order="yxyx" if match.group(1) == "yxyx" else "xyxy", scale=float(match.group(2)))


def _finding_key(f: ImageFinding) -> tuple[str, tuple[float, ...]]:
    box = tuple(round(v, 6) for v in f.box.as_list()) if f.box is not None else ()
    return f.label.value, box


def grounding_edit_notes(
    grounding: Grounding | None, box_format: BoxFormat = DEFAULT_BOX_FORMAT
) -> list[Note]:
    """A ``grounding_edited`` note when the grounding was built by hand or its findings (or outcome)
    are not what its model's raw output gives; nothing when it cannot tell (no raw output kept)."""
    if grounding is None:
        return []
    if any(n.code == HAND_BUILT_NOTE for n in grounding.notes):
        why = "was built by hand: the flags judge a person's findings, not the image model's"
    elif grounding.model.backend in _MODEL_BACKENDS and grounding.raw_output is not None:
        again = recover_findings(grounding.raw_output, _box_format(grounding, box_format))
        same = Counter(map(_finding_key, again.findings)) == Counter(map(_finding_key, grounding.findings))
        if same and again.outcome is grounding.outcome:
            return []
        why = (
            f"differs from what its model's raw output gives ({len(again.findings)} finding(s) there, "
            f"{len(grounding.findings)} here): it was edited, so the flags judge the edited findings"
        )
    else:
        return []
    return [Note(stage="compare", code="grounding_edited", message=f"The grounding passed in {why}.")]


def reading_edit_notes(reading: DraftReading | None) -> list[Note]:
    """A ``reading_edited`` note when the mentions are not what the reader gives for the same draft
    (the rule reader read again, a model's raw output recovered again)."""
    if reading is None:
        return []
    if reading.model.backend == "rules":
        from auditor.draft_rules import MODEL_INFO, read_draft

        if reading.model.model_id != MODEL_INFO.model_id:
            return []  # another version of the rules: a difference would not mean an edit
        again = read_draft(reading.draft).mentions
    elif reading.model.backend in _MODEL_BACKENDS and reading.raw_output is not None:
        again = recover_mentions(reading.raw_output, reading.draft).mentions
    else:
        return []

    def key(m: DraftMention) -> tuple[str, str, int, int]:
        return m.label.value, m.status, m.start, m.end

    if Counter(map(key, again)) == Counter(map(key, reading.mentions)):
        return []
    return [
        Note(
            stage="compare",
            code="reading_edited",
            message=f"The reading passed in differs from what its reader gives for the same draft "
            f"({len(again)} mention(s) there, {len(reading.mentions)} here): it was edited, so the flags "
            "judge the edited reading.",
        )
    ]


def comparison_mismatch(grounding: Grounding, comparison: Comparison) -> str | None:
    """Why ``comparison`` cannot have been made from ``grounding`` (a flag points at a finding the
    grounding lacks), or None when every flag's image evidence is among its findings."""
    have = Counter(map(_finding_key, grounding.findings))
    for flag in comparison.flags:
        wanted = Counter(map(_finding_key, flag.image_evidence))
        if wanted - have:
            return (
                f"its {flag.kind} flag for {flag.label.value} points at image findings this grounding "
                "does not have: the comparison was made from another grounding (or another image)"
            )
    return None
