"""Scripted generations through recovery: every repair is visible and nothing is dropped silently."""

from __future__ import annotations

import json
import time

import pytest

from auditor.labels import Label
from auditor.recovery import (
    MAX_INPUT_CHARS,
    BoxFormat,
    RecoveredFindings,
    RecoveredMentions,
    recover_findings,
    recover_mentions,
    strip_reasoning,
    tally,
)
from auditor.schema import Integrity, ParseOutcome

CLEAN, RECOVERED, FAILED = ParseOutcome.CLEAN, ParseOutcome.RECOVERED, ParseOutcome.FAILED
NODULE = '{"label": "nodule_mass", "box_2d": [0.1, 0.2, 0.3, 0.4]}'
EFFUSION = '{"label": "pleural_effusion", "box_2d": [0.5, 0.1, 0.9, 0.45]}'
DRAFT = "Small left pleural effusion. No pneumothorax.  Possible  nodule in the right upper lobe."


def codes(result: RecoveredFindings | RecoveredMentions) -> list[str]:
    return [n.code for n in result.notes]


def summary(result: RecoveredFindings) -> list[tuple[str, list[float] | None]]:
    return [(f.label.value, f.box.as_list() if f.box else None) for f in result.findings]


# --- Where the JSON is ------------------------------------------------------------------------------

LOCATION_CASES = [
    pytest.param(f"[{NODULE}]", CLEAN, [], id="bare-array"),
    pytest.param(f"  \n[{NODULE}]\n", CLEAN, [], id="bare-array-whitespace"),
    pytest.param(f"```json\n[{NODULE}]\n```", CLEAN, [], id="whole-fence-json"),
    pytest.param(f"```\n[{NODULE}]\n```", CLEAN, [], id="whole-fence-plain"),
    pytest.param(NODULE, CLEAN, [], id="single-object"),
    pytest.param(f'{{"findings": [{NODULE}]}}', CLEAN, [], id="wrapped-findings"),
    pytest.param(f'{{"results": [{NODULE}]}}', CLEAN, [], id="wrapped-results"),
    pytest.param(f'{{"boxes_found": [{NODULE}], "comment": "ok"}}', CLEAN, [], id="wrapped-unknown-key"),
    pytest.param(
        f"Here are the findings:\n```json\n[{NODULE}]\n```\nLet me know.",
        RECOVERED,
        ["output_recovered"],
        id="fence-in-prose",
    ),
    pytest.param(
        f"Boxes use the format [y0, x0, y1, x1] scaled to [0, 1]. Answer: [{NODULE}] as requested.",
        RECOVERED,
        ["output_recovered"],
        id="narration-with-decoy-brackets",
    ),
    pytest.param(
        f'[{NODULE}, {{"label": "pleural_effusion", "box_',
        RECOVERED,
        ["output_truncated_salvaged"],
        id="truncated-array",
    ),
    pytest.param(
        f'{{"findings": [{NODULE}, {{"label": "cardiomeg',
        RECOVERED,
        ["output_truncated_salvaged"],
        id="truncated-wrapped-array",
    ),
    pytest.param(json.dumps(f"[{NODULE}]"), RECOVERED, ["output_recovered"], id="json-in-json-string"),
]


@pytest.mark.parametrize(("raw", "outcome", "expected_codes"), LOCATION_CASES)
def test_json_is_found(raw: str, outcome: ParseOutcome, expected_codes: list[str]) -> None:
    result = recover_findings(raw)
    assert result.outcome is outcome
    assert codes(result) == expected_codes
    assert summary(result) == [("nodule_mass", [0.2, 0.1, 0.4, 0.3])]


def test_empty_list_is_clean() -> None:
    result = recover_findings("[]")
    assert (result.findings, result.notes, result.outcome) == ([], [], CLEAN)


def test_decoy_list_of_numbers_is_not_an_answer() -> None:
    result = recover_findings("The box was [0.1, 0.2, 0.3, 0.4] I think.")
    assert result.outcome is FAILED
    assert codes(result) == ["output_unparseable"]


def test_last_answer_wins_over_an_earlier_example() -> None:
    raw = 'Format: [{"label": "cardiomegaly", "box_2d": [0, 0, 1, 1]}]. My answer: [' + NODULE + "]"
    assert [f.label for f in recover_findings(raw).findings] == [Label.NODULE_MASS]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("I could not find anything to report.", id="prose-only"),
        pytest.param('{"comment": "nothing"}', id="object-without-items"),
        pytest.param("42", id="bare-number"),
        pytest.param('[{"label": "nodule_mass", "box_', id="truncated-first-item"),
    ],
)
def test_no_usable_json_fails_with_a_note(raw: str) -> None:
    result = recover_findings(raw)
    assert result.outcome is FAILED
    assert result.findings == []
    assert codes(result)[-1] == "output_unparseable"


@pytest.mark.parametrize(
    "raw",
    [None, b"\xff\xfe\x00garbage", 17, 3.5, object(), ["not", "items", 1], {"x": 1}],
    ids=["none", "bad-bytes", "int", "float", "object", "python-list", "python-dict"],
)
def test_odd_inputs_never_raise(raw: object) -> None:
    assert recover_findings(raw).outcome in set(ParseOutcome)
    assert recover_mentions(raw, DRAFT).outcome in set(ParseOutcome)


def test_bytes_are_decoded() -> None:
    result = recover_findings(f"[{NODULE}]".encode())
    assert (result.outcome, summary(result)) == (CLEAN, [("nodule_mass", [0.2, 0.1, 0.4, 0.3])])


def test_none_fails_with_a_note() -> None:
    result = recover_findings(None)
    assert result.outcome is FAILED
    assert codes(result) == ["output_unparseable"]


@pytest.mark.parametrize(
    "raw",
    ["[" * 100_000, "{" * 100_000, '[{"a": 1},' * 20_000, "[1," * 60_000, "\x00\x1f<think>" * 20_000],
    ids=["deep-lists", "deep-objects", "nested-truncated", "long-truncated", "control-chars"],
)
def test_hostile_inputs_fail_fast(raw: str) -> None:
    began = time.perf_counter()
    result = recover_findings(raw)
    mentions = recover_mentions(raw, DRAFT)
    assert time.perf_counter() - began < 2.0  # generous: a guard against quadratic scans, not a benchmark
    assert result.outcome is FAILED
    assert mentions.outcome is FAILED


def test_huge_input_is_truncated_with_a_note() -> None:
    raw = f"[{NODULE}]" + " " * (MAX_INPUT_CHARS + 10)
    result = recover_findings(raw)
    assert codes(result) == ["input_truncated"]
    assert result.outcome is RECOVERED
    assert len(result.findings) == 1


# --- Reasoning traces -------------------------------------------------------------------------------


def test_closed_think_block_is_expected_behaviour() -> None:
    result = recover_findings(f"<think>Looking at [y0, x0] boxes... {EFFUSION}</think>\n[{NODULE}]")
    assert (result.outcome, codes(result)) == (CLEAN, [])
    assert [f.label for f in result.findings] == [Label.NODULE_MASS]


def test_lone_closing_think_keeps_only_the_answer() -> None:
    result = recover_findings(f"The draft says {EFFUSION} maybe.\n</think>\n[{NODULE}]")
    assert (result.outcome, codes(result)) == (CLEAN, [])
    assert [f.label for f in result.findings] == [Label.NODULE_MASS]


def test_unterminated_think_has_nothing_usable() -> None:
    result = recover_findings(f"<think>I should answer [{NODULE}] but")
    assert result.outcome is FAILED
    assert codes(result) == ["reasoning_unterminated", "output_unparseable"]


def test_final_answer_marker_is_a_recovery() -> None:
    raw = f"Let me reason. Example: [{EFFUSION}].\n**Final Answer:**\n[{NODULE}]"
    result = recover_findings(raw)
    assert result.outcome is RECOVERED
    assert codes(result) == ["reasoning_stripped"]
    assert [f.label for f in result.findings] == [Label.NODULE_MASS]


@pytest.mark.parametrize(
    ("raw", "text", "expected_codes"),
    [
        ("<think>a</think>B", "B", []),
        ("a</think>B", "B", []),
        ("<THINK>a</Think>B", "B", []),
        ("x<think>a</think>B", "xB", ["reasoning_stripped"]),
        ("<think>a</think>B<think>c</think>D", "BD", ["reasoning_stripped"]),
        ("a</think>b</think>C", "C", ["reasoning_stripped"]),
        ("x<think>a", "x", ["reasoning_unterminated"]),
        ("thinking. final answer: A. **Final Answer:** B", "B", ["reasoning_stripped"]),
        ("plain", "plain", []),
    ],
)
def test_strip_reasoning(raw: str, text: str, expected_codes: list[str]) -> None:
    stripped, notes = strip_reasoning(raw)
    assert stripped == text
    assert [n.code for n in notes] == expected_codes
    assert all(n.stage == "draft" for n in notes)


def test_final_answer_inside_a_clean_document_is_left_alone() -> None:
    draft = "Final answer: no pneumothorax."
    span = "Final answer: no pneumothorax"
    raw = json.dumps([{"label": "pneumothorax", "status": "absent", "span": span, "start": 0, "end": 29}])
    result = recover_mentions(raw, draft)
    assert (result.outcome, codes(result)) == (CLEAN, [])
    assert [m.span for m in result.mentions] == [span]


# --- Labels -----------------------------------------------------------------------------------------


def test_off_label_names_are_mapped_or_dropped_with_notes() -> None:
    items = [
        {"label": "Effusion", "box_2d": [0.5, 0.1, 0.9, 0.45]},
        {"label": "Nodule/Mass", "box_2d": [0.1, 0.2, 0.3, 0.4]},
        {"label": "atelectasis", "box_2d": [0.1, 0.1, 0.2, 0.2]},
        {"label": "banana", "box_2d": [0.1, 0.1, 0.2, 0.2]},
    ]
    result = recover_findings(json.dumps(items))
    assert result.outcome is RECOVERED
    assert sorted(codes(result)) == ["label_dropped", "label_mapped", "label_mapped", "label_unknown"]
    assert [f.label for f in result.findings] == [Label.PLEURAL_EFFUSION, Label.NODULE_MASS]


@pytest.mark.parametrize("key", ["label", "finding", "name", "class", "Label"])
def test_label_key_aliases(key: str) -> None:
    result = recover_findings(json.dumps([{key: "cardiomegaly", "bbox": [0.3, 0.3, 0.7, 0.8]}]))
    assert [f.label for f in result.findings] == [Label.CARDIOMEGALY]


def test_all_items_unusable_is_a_failure() -> None:
    result = recover_findings('[{"label": "banana"}, {"box": [0, 0, 1, 1]}, 7]')
    assert result.outcome is FAILED
    assert codes(result) == ["label_unknown", "item_malformed", "item_malformed", "output_unparseable"]


def test_out_of_scope_beside_an_unusable_item_is_still_a_failure() -> None:
    """A misspelt pneumothorax must not turn into 'nothing among the six' and lose its URGENT flag."""
    result = recover_findings(
        '[{"label": "atelectasis"}, {"label": "pneumothrax", "box_2d": [0.1, 0.1, 0.3, 0.3]}]'
    )
    assert result.outcome is FAILED
    assert codes(result) == ["label_dropped", "label_unknown", "output_unparseable"]


def test_only_out_of_scope_labels_is_an_answer_not_a_failure() -> None:
    """Atelectasis and edema are known labels dropped on purpose: "nothing among the six"."""
    result = recover_findings('[{"label": "atelectasis"}, {"label": "edema"}]')
    assert result.outcome is RECOVERED
    assert result.findings == []
    assert codes(result) == ["label_dropped", "label_dropped"]
    mixed = recover_findings('[{"label": "atelectasis"}, {"box": [0, 0, 1, 1]}, 7]')
    assert mixed.outcome is FAILED  # an unusable item might have been a finding


def test_no_finding_beside_a_real_finding_loses() -> None:
    result = recover_findings(f'[{{"label": "no_finding", "box_2d": []}}, {NODULE}]')
    assert [f.label for f in result.findings] == [Label.NODULE_MASS]
    assert codes(result) == ["no_finding_conflict"]
    assert result.outcome is RECOVERED


def test_no_finding_alone_is_clean_and_boxless() -> None:
    result = recover_findings('[{"label": "no_finding", "box_2d": null}]')
    assert (result.outcome, summary(result)) == (CLEAN, [("no_finding", None)])


def test_no_finding_with_a_real_box_drops_the_box_with_a_note() -> None:
    result = recover_findings('[{"label": "no_finding", "box_2d": [0.1, 0.1, 0.5, 0.5]}]')
    assert summary(result) == [("no_finding", None)]
    assert codes(result) == ["box_dropped"]


def test_duplicates_are_dropped_with_a_note() -> None:
    result = recover_findings(f"[{NODULE}, {EFFUSION}, {NODULE}]")
    assert [f.label for f in result.findings] == [Label.PLEURAL_EFFUSION, Label.NODULE_MASS]
    assert codes(result) == ["duplicate_dropped"]


def test_findings_come_out_in_canonical_order() -> None:
    items = [
        {"label": "nodule_mass", "box_2d": [0.6, 0.6, 0.7, 0.7]},
        {"label": "pneumothorax", "box_2d": [0.1, 0.1, 0.5, 0.4]},
        {"label": "nodule_mass", "box_2d": [0.1, 0.1, 0.2, 0.2]},
    ]
    result = recover_findings(json.dumps(items))
    assert summary(result) == [
        ("pneumothorax", [0.1, 0.1, 0.4, 0.5]),
        ("nodule_mass", [0.1, 0.1, 0.2, 0.2]),
        ("nodule_mass", [0.6, 0.6, 0.7, 0.7]),
    ]


# --- Boxes ------------------------------------------------------------------------------------------

BOX_CASES = [
    pytest.param([0.1, 0.2, 0.3, 0.4], BoxFormat(), [0.2, 0.1, 0.4, 0.3], [], id="native-yxyx"),
    pytest.param([0.2, 0.1, 0.4, 0.3], BoxFormat("xyxy"), [0.2, 0.1, 0.4, 0.3], [], id="xyxy"),
    pytest.param(["0.1", "0.2", "0.3", "0.4"], BoxFormat(), [0.2, 0.1, 0.4, 0.3], [], id="numeric-strings"),
    pytest.param([100, 200, 300, 400], BoxFormat(scale=1000), [0.2, 0.1, 0.4, 0.3], [], id="scale-1000"),
    pytest.param(
        [100, 200, 300, 400], BoxFormat(), [0.2, 0.1, 0.4, 0.3], ["box_rescaled"], id="per-mille-at-scale-1"
    ),
    pytest.param(
        [0, 200, 300, 1000], BoxFormat(), [0.2, 0.0, 1.0, 0.3], ["box_rescaled"], id="per-mille-edge-zero"
    ),
    pytest.param([-0.1, 0.2, 0.3, 1.2], BoxFormat(), [0.2, 0.0, 1.0, 0.3], ["box_clipped"], id="clipped"),
    pytest.param([0.3, 0.4, 0.1, 0.2], BoxFormat(), [0.2, 0.1, 0.4, 0.3], ["box_reordered"], id="reversed"),
    pytest.param(
        {"x0": 0.2, "y0": 0.1, "x1": 0.4, "y1": 0.3}, BoxFormat(), [0.2, 0.1, 0.4, 0.3], [], id="named"
    ),
    pytest.param([0.1, 0.2, 0.1, 0.4], BoxFormat(), None, ["box_dropped"], id="degenerate"),
    pytest.param([0.5, 0.5, 0.5, 0.5], BoxFormat(), None, ["box_dropped"], id="point"),
    pytest.param([0.1, 0.2, 0.3], BoxFormat(), None, ["box_dropped"], id="three-values"),
    pytest.param(["a", 0.2, 0.3, 0.4], BoxFormat(), None, ["box_dropped"], id="non-numeric"),
    pytest.param([True, 0.2, 0.3, 0.4], BoxFormat(), None, ["box_dropped"], id="boolean"),
    pytest.param("0.1 0.2 0.3 0.4", BoxFormat(), None, ["box_dropped"], id="string"),
    pytest.param(None, BoxFormat(), None, ["box_missing"], id="null"),
    pytest.param([], BoxFormat(), None, ["box_missing"], id="empty"),
]


@pytest.mark.parametrize(("box", "fmt", "expected", "expected_codes"), BOX_CASES)
def test_boxes(box: object, fmt: BoxFormat, expected: list[float] | None, expected_codes: list[str]) -> None:
    result = recover_findings(json.dumps([{"label": "pneumothorax", "box_2d": box}]), fmt)
    assert [f.label for f in result.findings] == [Label.PNEUMOTHORAX]
    got = result.findings[0].box
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert got.as_list() == pytest.approx(expected)
    assert codes(result) == expected_codes
    assert result.outcome is (RECOVERED if expected_codes else CLEAN)


def test_missing_box_key_is_noted() -> None:
    result = recover_findings('[{"label": "cardiomegaly"}]')
    assert summary(result) == [("cardiomegaly", None)]
    assert codes(result) == ["box_missing"]


def test_non_finite_values_are_dropped() -> None:
    result = recover_findings('[{"label": "pneumothorax", "box_2d": [NaN, 0.1, 0.2, Infinity]}]')
    assert summary(result) == [("pneumothorax", None)]
    assert codes(result) == ["box_dropped"]


@pytest.mark.parametrize("kwargs", [{"scale": 0.0}, {"scale": float("nan")}, {"order": "xxyy"}])
def test_box_format_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BoxFormat(**kwargs)  # type: ignore[arg-type]


# --- Mentions ---------------------------------------------------------------------------------------


def mention_summary(result: RecoveredMentions) -> list[tuple[str, str, str, int, int]]:
    return [(m.label.value, m.status, m.span, m.start, m.end) for m in result.mentions]


MENTION_CASES = [
    pytest.param(
        {
            "label": "pleural_effusion",
            "status": "present",
            "span": "left pleural effusion",
            "start": 6,
            "end": 27,
        },
        ("pleural_effusion", "present", "left pleural effusion", 6, 27),
        [],
        id="exact-with-offsets",
    ),
    pytest.param(
        {"label": "pleural_effusion", "status": "present", "span": "left pleural effusion"},
        ("pleural_effusion", "present", "left pleural effusion", 6, 27),
        [],
        id="exact-without-offsets",
    ),
    pytest.param(
        {
            "label": "pleural_effusion",
            "status": "present",
            "span": "left pleural effusion",
            "start": 2,
            "end": 3,
        },
        ("pleural_effusion", "present", "left pleural effusion", 6, 27),
        ["span_relocated"],
        id="wrong-offsets-relocated",
    ),
    pytest.param(
        {"label": "nodule_mass", "status": "uncertain", "span": "possible nodule"},
        ("nodule_mass", "uncertain", "Possible  nodule", 47, 63),
        ["span_relocated"],
        id="case-and-whitespace",
    ),
    pytest.param(
        {"label": "pneumothorax", "status": "absent", "span": "no tension pneumothorax"},
        None,
        ["span_dropped", "output_unparseable"],
        id="not-verbatim-dropped",
    ),
    pytest.param(
        {"label": "pneumothorax", "status": "negated", "span": "No pneumothorax"},
        ("pneumothorax", "absent", "No pneumothorax", 29, 44),
        ["status_mapped"],
        id="status-negated",
    ),
    pytest.param(
        {"label": "pneumothorax", "status": "maybe-ish", "span": "No pneumothorax"},
        None,
        ["status_unknown", "output_unparseable"],
        id="status-unknown",
    ),
    pytest.param(
        {"label": "atelectasis", "status": "present", "span": "left"},
        None,
        ["label_dropped"],
        id="label-dropped",
    ),
    pytest.param(
        {"label": "pneumothorax", "status": "absent"},
        None,
        ["item_malformed", "output_unparseable"],
        id="no-span",
    ),
]


@pytest.mark.parametrize(("item", "expected", "expected_codes"), MENTION_CASES)
def test_mentions(
    item: dict[str, object], expected: tuple[str, str, str, int, int] | None, expected_codes: list[str]
) -> None:
    result = recover_mentions(json.dumps([item]), DRAFT)
    assert mention_summary(result) == ([expected] if expected else [])
    assert codes(result) == expected_codes
    dropped_on_purpose = expected_codes == ["label_dropped"]
    failed = expected is None and not dropped_on_purpose
    assert result.outcome is (FAILED if failed else RECOVERED if expected_codes else CLEAN)
    assert all(n.stage == "draft" for n in result.notes)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("positive", "present"),
        ("Yes", "present"),
        (True, "present"),
        ("affirmed", "present"),
        ("negative", "absent"),
        ("denied", "absent"),
        (False, "absent"),
        ("not_present", "absent"),
        ("possible", "uncertain"),
        ("probable", "uncertain"),
        ("hedged", "uncertain"),
        ("Equivocal", "uncertain"),
        ("UNCERTAIN", "uncertain"),
    ],
)
def test_status_synonyms(status: object, expected: str) -> None:
    raw = json.dumps([{"label": "pleural_effusion", "status": status, "span": "pleural effusion"}])
    result = recover_mentions(raw, DRAFT)
    assert [m.status for m in result.mentions] == [expected]
    assert codes(result) == ["status_mapped"]


def test_relocation_prefers_the_occurrence_nearest_the_given_start() -> None:
    draft = "effusion here. effusion there. effusion everywhere."
    raw = json.dumps([{"label": "pleural_effusion", "status": "present", "span": "effusion", "start": 33}])
    result = recover_mentions(raw, draft)
    assert [(m.start, m.end) for m in result.mentions] == [(31, 39)]
    assert codes(result) == ["span_relocated"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [("Left", "left"), ("RIGHT", "right"), ("both", "bilateral"), ("bilateral", "bilateral"), ("up", None)],
)
def test_laterality(given: str, expected: str | None) -> None:
    item = {"label": "pleural_effusion", "status": "present", "span": "pleural effusion", "laterality": given}
    result = recover_mentions(json.dumps([item]), DRAFT)
    assert [m.laterality for m in result.mentions] == [expected]


def test_mentions_ordered_and_deduplicated() -> None:
    items = [
        {"label": "nodule_mass", "status": "uncertain", "span": "nodule"},
        {"label": "pneumothorax", "status": "absent", "span": "No pneumothorax"},
        {"label": "pneumothorax", "status": "absent", "span": "No pneumothorax"},
    ]
    result = recover_mentions(json.dumps({"mentions": items}), DRAFT)
    assert [m.label for m in result.mentions] == [Label.PNEUMOTHORAX, Label.NODULE_MASS]
    assert codes(result) == ["duplicate_dropped"]


def test_nemotron_style_generation() -> None:
    raw = (
        "We need to map the draft. 'No pneumothorax' is a negation [absent].\n</think>\n\n"
        '```json\n{"mentions": [{"label": "pneumothorax", "status": "absent", '
        '"span": "No pneumothorax", "start": 29, "end": 44}]}\n```'
    )
    result = recover_mentions(raw, DRAFT)
    assert (result.outcome, codes(result)) == (CLEAN, [])
    assert mention_summary(result) == [("pneumothorax", "absent", "No pneumothorax", 29, 44)]


def test_empty_mentions_clean() -> None:
    result = recover_mentions('{"mentions": []}', "Heart size normal.")
    assert (result.mentions, result.notes, result.outcome) == ([], [], CLEAN)


# --- Tally ------------------------------------------------------------------------------------------


def test_tally_adds_up() -> None:
    outcomes = [
        recover_findings(f"[{NODULE}]").outcome,
        recover_findings(f"Sure: [{NODULE}]").outcome,
        recover_findings("nothing").outcome,
        recover_mentions("[]", DRAFT).outcome,
    ]
    assert tally(outcomes) == Integrity(total=4, clean=2, recovered=1, failed=1)
    assert tally([]) == Integrity(total=0, clean=0, recovered=0, failed=0)


# --- Python literals instead of JSON (habits of code-trained models) ---------------------------------

PY_HABITS = [
    ("single quotes", "[{'label': 'nodule_mass', 'box_2d': [0.1, 0.2, 0.3, 0.4]}]"),
    ("trailing commas", '[{"label": "nodule_mass", "box_2d": [0.1, 0.2, 0.3, 0.4],},]'),
    ("None for a missing box", "[{'label': 'nodule_mass', 'box_2d': [0.1, 0.2, 0.3, 0.4], 'note': None}]"),
    ("True/False values", "[{'label': 'nodule_mass', 'box_2d': [0.1, 0.2, 0.3, 0.4], 'certain': True}]"),
    ("JSON keywords mixed in", "[{'label': 'nodule_mass', 'box_2d': [0.1, 0.2, 0.3, 0.4], 'x': null}]"),
    ("a tuple for the box", "[{'label': 'nodule_mass', 'box_2d': (0.1, 0.2, 0.3, 0.4)}]"),
    ("in a python fence", "```python\n[{'label': 'nodule_mass', 'box_2d': [0.1, 0.2, 0.3, 0.4]}]\n```"),
    (
        "inside prose",
        "The findings are [{'label': 'nodule_mass', 'box_2d': [0.1, 0.2, 0.3, 0.4]}] as listed.",
    ),
]


@pytest.mark.parametrize(("habit", "raw"), PY_HABITS, ids=[h for h, _ in PY_HABITS])
def test_python_literal_habits_are_recovered_with_a_note(habit: str, raw: str) -> None:
    result = recover_findings(raw)
    assert result.outcome is ParseOutcome.RECOVERED, habit
    assert [f.label for f in result.findings] == [Label.NODULE_MASS]
    assert result.findings[0].box is not None
    assert "output_python_literal" in [n.code for n in result.notes]


def test_python_literal_mentions_keep_verbatim_spans() -> None:
    draft = "Mild cardiomegaly. No pneumothorax."
    raw = "[{'label': 'cardiomegaly', 'status': 'present', 'span': 'Mild cardiomegaly'},]"
    result = recover_mentions(raw, draft)
    assert result.outcome is ParseOutcome.RECOVERED
    assert [(m.label, m.span, m.start) for m in result.mentions] == [
        (Label.CARDIOMEGALY, "Mild cardiomegaly", 0)
    ]


def test_json_wins_over_a_literal_and_code_never_runs() -> None:
    clean = recover_findings('[{"label": "cardiomegaly", "box_2d": [0.4, 0.3, 0.8, 0.7]}]')
    assert clean.outcome is ParseOutcome.CLEAN and not clean.notes
    hostile = recover_findings("[__import__('os').system('echo pwned')]")
    assert hostile.outcome is ParseOutcome.FAILED
    assert "output_unparseable" in [n.code for n in hostile.notes]


def test_unclosed_literals_fail_cleanly() -> None:
    # 20,000 unclosed openers: a scan without its work budget would take many minutes here
    result = recover_findings("[{'a': " * 20_000)
    assert result.outcome is ParseOutcome.FAILED
