"""Properties of recovery over generated input: it never raises, and it never drops anything silently."""

from __future__ import annotations

import json

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from auditor.labels import Label
from auditor.recovery import (
    DROP_CODES,
    RecoveredFindings,
    RecoveredMentions,
    recover_findings,
    recover_mentions,
    tally,
)
from auditor.schema import Box, ParseOutcome

DRAFT = "Small left pleural effusion. No pneumothorax.  Possible  nodule in the right upper lobe."
FAST = settings(max_examples=200, deadline=None)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
)


@st.composite
def jsonish_text(draw: st.DrawFn) -> str:
    """JSON values, possibly cut short and dressed in prose, fences and reasoning tags."""
    text = json.dumps(draw(json_values))
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    prefix = draw(st.sampled_from(["", "Answer: ", "<think>[y0, x0]</think>", "```json\n", "x</think>"]))
    suffix = draw(st.sampled_from(["", "\n```", " done.", "<think>", " Final Answer: "]))
    return prefix + text + suffix


any_text = st.text() | st.binary().map(lambda b: b.decode("utf-8", errors="replace")) | jsonish_text()
any_raw = any_text | st.binary() | st.integers() | st.none() | json_values


def drop_count(result: RecoveredFindings | RecoveredMentions) -> int:
    return sum(note.code in DROP_CODES for note in result.notes)


def check_findings(result: RecoveredFindings) -> None:
    assert result.outcome in set(ParseOutcome)
    labels = {f.label for f in result.findings}
    assert Label.NO_FINDING not in labels or labels == {Label.NO_FINDING}
    for finding in result.findings:
        if finding.box is not None:
            assert Box.model_validate(finding.box.model_dump()) == finding.box
            assert all(0.0 <= v <= 1.0 for v in finding.box.as_list())
    if result.outcome is ParseOutcome.FAILED:
        assert result.findings == []
        assert result.notes


def check_mentions(result: RecoveredMentions, draft: str) -> None:
    assert result.outcome in set(ParseOutcome)
    for m in result.mentions:
        assert draft[m.start : m.end] == m.span
    starts = [m.start for m in result.mentions]
    assert starts == sorted(starts)
    if result.outcome is ParseOutcome.FAILED:
        assert result.mentions == []
        assert result.notes


@FAST
@given(any_raw)
def test_recover_findings_never_raises(raw: object) -> None:
    check_findings(recover_findings(raw))


@FAST
@given(any_raw, st.text(max_size=60) | st.just(DRAFT))
def test_recover_mentions_never_raises(raw: object, draft: str) -> None:
    check_mentions(recover_mentions(raw, draft), draft)


# --- Accounting: every input item is either in the output or named by exactly one drop note -------

LABEL_NAMES = [
    "nodule_mass",
    "pneumothorax",
    "pleural_effusion",
    "cardiomegaly",
    "lung_opacity_consolidation",
    "no_finding",
    "Effusion",
    "Nodule/Mass",
    "consolidation",
    "atelectasis",
    "edema",
    "banana",
    "",
]
no_backticks = st.characters(blacklist_characters="`<")
labels = st.sampled_from(LABEL_NAMES) | st.text(no_backticks, max_size=10) | st.integers() | st.none()
coordinate = st.floats(-50, 1200, allow_nan=False) | st.sampled_from([0, 0.5, 1, 1000, "0.3", "x"])
boxes: st.SearchStrategy[object] = (
    st.none()
    | st.lists(coordinate, min_size=4, max_size=4)
    | st.lists(st.floats(0, 1), max_size=6)
    | st.just([])
    | st.text(no_backticks, max_size=5)
)


@st.composite
def finding_items(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_scalars.filter(lambda v: not isinstance(v, str) or "`" not in v))
    item: dict[str, object] = {}
    label = draw(labels)
    if label is not None:
        item[draw(st.sampled_from(["label", "finding", "name", "class"]))] = label
    if draw(st.booleans()):
        item[draw(st.sampled_from(["box_2d", "box", "bbox"]))] = draw(boxes)
    return item


def dress(payload: str, key: str, how: str) -> str:
    """Forms that must all parse as documents, so the items reach the item stage intact."""
    if how == "wrapped":
        return '{"' + key + '": ' + payload + "}"
    if how == "fenced":
        return "```json\n" + payload + "\n```"
    if how == "think":
        return "<think>Let me look [y0, x0, y1, x1].</think>\n" + payload
    return payload


forms = st.sampled_from(["bare", "wrapped", "fenced", "think"])


@FAST
@given(st.lists(finding_items(), max_size=8), forms)
def test_notes_account_for_every_dropped_finding(items: list[object], how: str) -> None:
    result = recover_findings(dress(json.dumps(items), "findings", how))
    check_findings(result)
    assert len(result.findings) + drop_count(result) == len(items)
    if items and not result.findings:
        drops = [n.code for n in result.notes if n.code in DROP_CODES]
        on_purpose = bool(drops) and all(code == "label_dropped" for code in drops)
        assert result.outcome is (ParseOutcome.RECOVERED if on_purpose else ParseOutcome.FAILED)


@FAST
@given(st.lists(finding_items(), min_size=1, max_size=8))
def test_a_python_literal_reads_like_its_json(items: list[object]) -> None:
    """The same items written with repr() (single quotes, None, True) recover to the same findings
    as when written as JSON, with the literal's note on top; the drop accounting holds either way."""
    assume("nan" not in repr(items) and "inf" not in repr(items))  # no literal for them in Python
    as_json = recover_findings(json.dumps(items))
    as_python = recover_findings(repr(items))
    check_findings(as_python)
    assert len(as_python.findings) + drop_count(as_python) == len(items)
    assert as_python.findings == as_json.findings
    if repr(items) != json.dumps(items):
        assert "output_python_literal" in [n.code for n in as_python.notes]


statuses = (
    st.sampled_from(["present", "absent", "uncertain", "negated", "possible", "Yes", "weird", ""])
    | st.booleans()
    | st.none()
)
spans = (
    st.sampled_from(["left pleural effusion", "No pneumothorax", "possible nodule", "NODULE", "banana", " "])
    | st.text(no_backticks, max_size=6)
    | st.none()
)
offsets = st.none() | st.integers(-3, 120)


@st.composite
def mention_items(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_scalars.filter(lambda v: not isinstance(v, str) or "`" not in v))
    fields = {
        "label": draw(labels),
        "status": draw(statuses),
        "span": draw(spans),
        "start": draw(offsets),
        "end": draw(offsets),
        "laterality": draw(st.sampled_from(["left", "Right", "both", "up", None])),
    }
    return {k: v for k, v in fields.items() if v is not None or draw(st.booleans())}


@FAST
@given(st.lists(mention_items(), max_size=8), forms)
def test_notes_account_for_every_dropped_mention(items: list[object], how: str) -> None:
    result = recover_mentions(dress(json.dumps(items), "mentions", how), DRAFT)
    check_mentions(result, DRAFT)
    assert len(result.mentions) + drop_count(result) == len(items)


@FAST
@given(st.lists(st.sampled_from(list(ParseOutcome))))
def test_tally_adds_up(outcomes: list[ParseOutcome]) -> None:
    integrity = tally(outcomes)
    assert integrity.total == len(outcomes)
    assert integrity.clean == outcomes.count(ParseOutcome.CLEAN)
    assert integrity.recovered == outcomes.count(ParseOutcome.RECOVERED)
    assert integrity.failed == outcomes.count(ParseOutcome.FAILED)
