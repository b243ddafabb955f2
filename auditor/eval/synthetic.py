"""Synthetic drafts from real boxes: a faithful impression of an image's gold, then ONE controlled change.

There is no open dataset with images, reports and boxes together, so the audit loop is measured on
drafts written from the gold: first a faithful draft (every present finding reported, some absent
ones denied, a normal study called normal), then exactly one edit whose consequence the judge's table
fixes in advance:

| edit  | what changes                                 | expected flags (besides URGENT)  |
|-------|----------------------------------------------|----------------------------------|
| none  | nothing                                      | none                             |
| drop  | a present finding is left out                | MISSING (label)                  |
| add   | an absent finding is reported                | UNSUPPORTED (label)              |
| deny  | a present finding is denied ("No ...")       | MISSING (label), draft: denied   |
| hedge | a present finding is only hedged             | none                             |
| side  | a one-sided finding is put on the other side | LATERALITY (label)               |

URGENT is expected for every urgent label on the image, whatever the draft says. The edit is drawn
uniformly from the first five that the gold allows (a normal image can only get none or add). A
"none" draft then becomes a "side" draft, with probability SIDE_RATE from a stream of its own, when
the image has a finding whose boxes all lie clearly on one side (`auditor.laterality`, the judge's
reading of a frontal film): its side is swapped and named. So every draft without a side error is
exactly what it was before the side edit existed. Everything is seeded per item:
``random.Random(seed + stable hash of the item id)``, so a draft never depends on which other items
are in the run, or in which order. Pure logic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from auditor.eval import phrases
from auditor.eval.items import EvalItem, GoldFinding
from auditor.eval.phrases import FindingSpec, Side, Zone
from auditor.labels import FINDING_LABELS, LABEL_RANK, URGENT_LABELS, Label
from auditor.laterality import OPPOSITE, sides_of
from auditor.schema import DraftStatus, FlagKind

SYNTHETIC_VERSION: Final = "synth-3"
"""Bumped whenever templates or the edit rules change: a run's config hash includes it."""

EditKind = Literal["none", "drop", "add", "deny", "hedge", "side"]
EDIT_KINDS: Final[tuple[EditKind, ...]] = ("none", "drop", "add", "deny", "hedge", "side")
_DRAWN: Final[tuple[EditKind, ...]] = ("none", "drop", "add", "deny", "hedge")
_ON_PRESENT: Final[frozenset[str]] = frozenset({"drop", "deny", "hedge", "side"})
SIDE_RATE: Final = 0.75
"""The share of eligible "none" drafts that become "side" drafts."""

SIDE_MARGIN: Final = 0.05
"""A box centred this close to the midline names no side (the image's left is the patient's right)."""


@dataclass(frozen=True)
class ExpectedFlag:
    """A flag the edit must raise; ``draft_status`` is set where the edit fixes it (deny -> denied)."""

    kind: FlagKind
    label: Label
    draft_status: DraftStatus | None = None


@dataclass(frozen=True)
class SyntheticDraft:
    item_id: str
    text: str
    edit: EditKind
    target: Label | None
    expected: tuple[ExpectedFlag, ...]


def item_rng(seed: int, item_id: str) -> random.Random:
    """The item's own generator: stable across runs, machines, Python versions and item order."""
    digest = hashlib.sha256(item_id.encode("utf-8")).digest()
    return random.Random(seed + int.from_bytes(digest[:8], "big"))


def _side_of(centres_x: list[float]) -> Side | None:
    # radiographs are displayed with the patient's right on the image's left
    sides = {
        "right" if x < 0.5 - SIDE_MARGIN else "left" if x > 0.5 + SIDE_MARGIN else "mid" for x in centres_x
    }
    if {"left", "right"} <= sides:
        return "bilateral"
    if sides == {"right"}:
        return "right"
    if sides == {"left"}:
        return "left"
    return None


def _zone_of(centres_y: list[float]) -> Zone | None:
    if not centres_y:
        return None
    y = sum(centres_y) / len(centres_y)
    return "upper" if y < 0.4 else "lower" if y > 0.6 else "mid"


def specs_from_gold(findings: Sequence[GoldFinding]) -> list[FindingSpec]:
    """One spec per present label, in canonical order, with side and zone read from its boxes."""
    by_label: dict[Label, list[GoldFinding]] = {}
    for f in findings:
        if f.label is not Label.NO_FINDING:
            by_label.setdefault(f.label, []).append(f)
    specs = []
    for label in sorted(by_label, key=LABEL_RANK.__getitem__):
        boxes = [f.box for f in by_label[label] if f.box is not None]
        xs = [(b.x0 + b.x1) / 2 for b in boxes]
        ys = [(b.y0 + b.y1) / 2 for b in boxes]
        lateral = label is not Label.CARDIOMEGALY
        side = _side_of(xs) if lateral and xs else None
        clear = sides_of(f.box for f in by_label[label])
        specs.append(
            FindingSpec(
                label=label,
                side=side,
                zone=_zone_of(ys) if lateral else None,
                sources=tuple(sorted({f.source for f in by_label[label]})),
                side_clear=side in ("left", "right") and clear == {side},
            )
        )
    return specs


def side_targets(specs: Sequence[FindingSpec]) -> list[FindingSpec]:
    """Findings a side edit may target: one side, every box clearly on it, worded with a side."""
    return [s for s in specs if s.side_clear and not phrases.is_diffuse(s)]


def choose_edit(present: Sequence[Label], rng: random.Random) -> EditKind:
    """Uniform over the edits this gold allows: drop/deny/hedge need a present finding, add an absent one."""
    allowed = [
        e
        for e in _DRAWN
        if (e not in _ON_PRESENT or present) and (e != "add" or len(present) < len(FINDING_LABELS))
    ]
    return rng.choice(allowed)


def make_draft(item: EvalItem, seed: int, edit: EditKind | None = None) -> SyntheticDraft:
    """The item's synthetic draft; ``edit`` forces an edit kind (it must suit the gold)."""
    return build_draft(item.id, specs_from_gold(item.findings), item.other, item.normal, seed, edit)


def build_draft(
    item_id: str,
    specs: Sequence[FindingSpec],
    other: Sequence[str],
    normal: bool | None,
    seed: int,
    edit: EditKind | None = None,
) -> SyntheticDraft:
    rng = item_rng(seed, item_id)
    side_rng = item_rng(seed, item_id + "/side")  # its own stream: other drafts stay as they were
    present = [s.label for s in specs]
    swappable = side_targets(specs)
    kind = edit or choose_edit(present, rng)
    if edit is None and kind == "none" and swappable and side_rng.random() < SIDE_RATE:
        kind = "side"
    if kind in _ON_PRESENT and not present:
        raise ValueError(f"edit {kind!r} needs a present finding; item {item_id} has none")
    absent = [lb for lb in FINDING_LABELS if lb not in present]
    if kind == "add" and not absent:
        raise ValueError(f"edit 'add' needs an absent finding; item {item_id} has all five")
    if kind == "side" and not swappable:
        raise ValueError(f"edit 'side' needs a finding clearly on one side; item {item_id} has none")
    if kind == "side":
        swapped = side_rng.choice(swappable)
        target: Label | None = swapped.label
        specs = [_other_side(s) if s is swapped else s for s in specs]
    else:
        target = rng.choice(present if kind in _ON_PRESENT else absent) if kind != "none" else None

    sentences: list[str] = []
    positives = [s for s in specs if not (kind == "drop" and s.label is target)]
    if kind == "add" and target is not None:
        positives.insert(rng.randrange(len(positives) + 1), FindingSpec(target))
    denied = [lb for lb in absent if lb is not target and rng.random() < 0.5]
    for spec in positives:
        if kind == "deny" and spec.label is target:
            sentences.append(phrases.negative(spec, rng))
        elif kind == "hedge" and spec.label is target:
            sentences.append(phrases.hedged(spec, rng))
        else:
            sentences.append(_positive(spec, denied, rng))
    for name in dict.fromkeys(other):
        if rng.random() < 0.75 and (sentence := phrases.other_finding(name, rng)) is not None:
            sentences.append(sentence)
    if not sentences and (normal is True or not denied):
        # a normal study, or every finding dropped with nothing else to say: the draft calls it normal
        sentences.append(phrases.normal_study(rng))
    elif normal is True and rng.random() < 0.3:  # a finding was added to a normal study
        text = phrases.normal_study(rng)
        sentences.append("Otherwise, " + text[0].lower() + text[1:])
    sentences.extend(_denials(denied, rng))
    if rng.random() < 0.25:
        sentences.append(phrases.filler(rng))
    return SyntheticDraft(
        item_id=item_id,
        text=_layout(sentences, rng),
        edit=kind,
        target=target,
        expected=_expected(present, kind, target),
    )


def _other_side(spec: FindingSpec) -> FindingSpec:
    """The side edit: the finding on the other side, and the side always named."""
    assert spec.side in ("left", "right")
    return dataclasses.replace(spec, side=OPPOSITE[spec.side], state_side=True)


def _positive(spec: FindingSpec, denied: list[Label], rng: random.Random) -> str:
    """A present finding; now and then with a trailing denial ("... without pneumothorax")."""
    sentence = phrases.positive(spec, rng)
    listable = [lb for lb in denied if phrases.listable(lb) and lb is not spec.label]
    if listable and rng.random() < 0.2:
        chosen = listable[:1]
        denied.remove(chosen[0])
        sentence = phrases.without_clause(sentence, chosen, rng)
    return sentence


def _denials(denied: list[Label], rng: random.Random) -> list[str]:
    """Pertinent negatives: listable ones often in one sentence, the others one by one."""
    listable = [lb for lb in denied if phrases.listable(lb)]
    out = []
    if len(listable) >= 2 and rng.random() < 0.6:
        out.append(phrases.list_negative(listable, rng))
        denied = [lb for lb in denied if lb not in listable]
    out.extend(phrases.negative(FindingSpec(lb), rng) for lb in denied)
    rng.shuffle(out)
    return out


def _layout(sentences: list[str], rng: random.Random) -> str:
    """Prose, one line per sentence, or a numbered impression; sometimes under an IMPRESSION heading."""
    style = rng.random()
    if style < 0.6:
        body = " ".join(sentences)
    elif style < 0.8:
        body = "\n".join(sentences)
    else:
        body = "\n".join(f"{i}. {s}" for i, s in enumerate(sentences, start=1))
    return ("IMPRESSION: " + body) if rng.random() < 0.2 else body


def _expected(present: Sequence[Label], kind: EditKind, target: Label | None) -> tuple[ExpectedFlag, ...]:
    flags = [ExpectedFlag("URGENT", lb) for lb in FINDING_LABELS if lb in present and lb in URGENT_LABELS]
    if kind in ("drop", "deny") and target is not None:
        flags.append(ExpectedFlag("MISSING", target, "denied" if kind == "deny" else None))
    if kind == "add" and target is not None:
        flags.append(ExpectedFlag("UNSUPPORTED", target))
    if kind == "side" and target is not None:
        flags.append(ExpectedFlag("LATERALITY", target))
    return tuple(flags)
