"""Curation of a grounding corpus (pure logic): hand-computed IoUs for the same-label merge and the
cross-label rule, the seeded downsampling and split, and properties that every count adds up and that
targets come back through recovery unchanged."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from auditor.eval.chestx_det import chestx_det_items
from auditor.labels import FINDING_LABELS, Label, dataset_label
from auditor.prompts import Prompt
from auditor.recovery import BoxFormat, recover_findings
from auditor.schema import ParseOutcome
from auditor.train.curate import (
    CurationConfig,
    curate,
    merge_same_label,
    resolve_cross_label,
    stratified_split,
)
from auditor.train.heldout import EVAL_NAMES, as_chestx_det
from auditor.train.records import SftRecord, new_record, parse_format
from auditor.train.targets import TrainFinding, native_box, render_target

E, P, OP, N, C = (
    Label.PLEURAL_EFFUSION,
    Label.PNEUMOTHORAX,
    Label.LUNG_OPACITY_CONSOLIDATION,
    Label.NODULE_MASS,
    Label.CARDIOMEGALY,
)
PROMPT = Prompt("find", "test-v1")
FMT = BoxFormat()
FAST = settings(max_examples=150, deadline=None)


def rec(
    id: str, *findings: tuple[Label, tuple[float, float, float, float]], group: str | None = None
) -> SftRecord:
    return new_record(
        id=id,
        source="test",
        image=f"/images/{id}.png",
        group=group or id,
        findings=[TrainFinding(lb, box) for lb, box in findings],
        prompt=PROMPT,
        fmt=FMT,
    )


# --- same label: union-find at IoU >= 0.5, mean box -----------------------------------------------------

A = (0.0, 0.0, 0.4, 0.4)
B = (0.1, 0.0, 0.5, 0.4)  # IoU(A, B) = 0.12 / 0.20 = 0.6
C3 = (0.2, 0.0, 0.6, 0.4)  # IoU(B, C3) = 0.6; IoU(A, C3) = 0.08 / 0.24 = 1/3


@pytest.mark.parametrize(
    ("boxes", "expected"),
    [
        ([A, B], [(0.05, 0.0, 0.45, 0.4)]),  # IoU 0.6: one region, the mean box
        ([A, B, C3], [(0.1, 0.0, 0.5, 0.4)]),  # a chain: A and C3 join through B although IoU(A, C3) = 1/3
        ([A, C3], [A, C3]),  # IoU 1/3: two regions
        ([(0.0, 0.0, 0.375, 1.0), (0.125, 0.0, 0.5, 1.0)], [(0.0625, 0.0, 0.4375, 1.0)]),  # exactly 0.5
        ([A, (0.6, 0.6, 0.9, 0.9)], [A, (0.6, 0.6, 0.9, 0.9)]),  # disjoint
    ],
)
def test_same_label_boxes_merge_by_hand_computed_iou(
    boxes: list[tuple[float, float, float, float]], expected: list[tuple[float, float, float, float]]
) -> None:
    merged, clusters = merge_same_label([TrainFinding(E, b) for b in boxes], 0.5)
    got = [v for box in sorted(f.box for f in merged) for v in box]
    assert got == pytest.approx([v for box in sorted(expected) for v in box])
    assert sum(n for _, n in clusters) - len(clusters) == len(boxes) - len(merged)


def test_boxes_of_different_labels_never_merge() -> None:
    merged, clusters = merge_same_label([TrainFinding(E, A), TrainFinding(C, B)], 0.5)
    assert len(merged) == 2 and clusters == []


# --- across labels: IoU >= 0.6 keeps the more specific label --------------------------------------------

NOD = (0.0, 0.0, 0.375, 1.0)


@pytest.mark.parametrize(
    ("first", "second", "kept", "ties"),
    [
        ((N, (0.25, 0.25, 0.5, 0.5)), (OP, (0.25, 0.25, 0.5, 0.5625)), {N}, 0),  # IoU 0.0625/0.078125 = 0.8
        ((N, NOD), (OP, (0.0, 0.0, 0.625, 1.0)), {N}, 0),  # IoU 0.375/0.625 = 0.6 exactly: dropped
        ((N, NOD), (OP, (0.0, 0.0, 0.75, 1.0)), {N, OP}, 0),  # IoU 0.5: both stay
        ((OP, (0.0, 0.0, 0.625, 1.0)), (E, NOD), {E}, 0),  # effusion is more specific than opacity
        ((E, NOD), (C, (0.0, 0.0, 0.625, 1.0)), {E, C}, 1),  # equal rank: both stay, one tie counted
        ((N, NOD), (P, NOD), {N, P}, 1),  # the two urgent labels are equally specific
    ],
)
def test_cross_label_overlap_keeps_the_more_specific_label(
    first: tuple[Label, tuple[float, float, float, float]],
    second: tuple[Label, tuple[float, float, float, float]],
    kept: set[Label],
    ties: int,
) -> None:
    found = [TrainFinding(*first), TrainFinding(*second)]
    out, dropped, tie_count = resolve_cross_label(found, 0.6)
    assert {f.label for f in out} == kept
    assert tie_count == ties
    assert len(out) + len(dropped) == 2
    for finding, by, iou in dropped:
        assert by in kept and finding.label not in kept and iou >= 0.6


def test_the_report_counts_each_merge_and_drop() -> None:
    """Three readers' effusion boxes (a chain) plus an opacity over a nodule, and a normal image."""
    records = [
        rec("img1", (E, A), (E, B), (E, C3), (N, (0.6, 0.6, 0.8, 0.8)), (OP, (0.6, 0.6, 0.8, 0.82))),
        rec("img2"),
    ]
    result = curate(records, CurationConfig(heldout=0.0))
    report = result.report.as_json()
    assert report["boxes"]["in"] == 5
    assert report["boxes"]["merged_away"] == 2
    assert report["boxes"]["dropped_cross_label"] == 1
    assert report["boxes"]["out"] == 2
    assert report["boxes"]["per_label"]["pleural_effusion"] == {
        "in": 3,
        "merged_away": 2,
        "dropped_cross_label": 0,
        "out": 1,
    }
    assert report["merged"] == [{"id": "img1", "label": "pleural_effusion", "boxes": 3}]
    assert [d["kept_label"] for d in report["dropped_cross_label"]] == ["nodule_mass"]
    img1 = next(r for r in result.train if r.id == "img1")
    assert [f.label for f in img1.findings] == [E, N]
    assert '"lung_opacity_consolidation"' not in img1.target()


# --- which images stay -----------------------------------------------------------------------------------


def _corpus(n_pos: int, n_normal: int, label: Label = E) -> list[SftRecord]:
    pos = [rec(f"p{i}", (label, (0.1, 0.1, 0.3, 0.3))) for i in range(n_pos)]
    return pos + [rec(f"n{i}") for i in range(n_normal)]


def test_normals_are_downsampled_to_the_ratio_with_a_seed() -> None:
    records = _corpus(4, 10)
    first = curate(records, CurationConfig(normal_ratio=1.0, heldout=0.0, seed=1))
    again = curate(records, CurationConfig(normal_ratio=1.0, heldout=0.0, seed=1))
    other = [curate(records, CurationConfig(normal_ratio=1.0, heldout=0.0, seed=s)) for s in range(2, 8)]
    assert len(first.report.dropped_normal) == 6
    assert sum(r.normal for r in first.train) == 4
    assert first.report.dropped_normal == again.report.dropped_normal
    assert any(o.report.dropped_normal != first.report.dropped_normal for o in other)
    everything = curate(records, CurationConfig(normal_ratio=None, heldout=0.0))
    assert len(everything.train) == 14


def test_a_label_cap_never_drops_a_pneumothorax() -> None:
    records = _corpus(3, 0, E) + [rec(f"ptx{i}", (P, (0.5, 0.1, 0.9, 0.4))) for i in range(3)]
    result = curate(records, CurationConfig(max_per_label=1, heldout=0.0))
    kept = Counter(f.label for r in result.train for f in r.findings)
    assert kept == {E: 1, P: 3}
    assert len(result.report.dropped_over_cap) == 2


def test_the_split_is_stratified_by_label_set_and_keeps_patients_whole() -> None:
    records = [rec(f"e{i}", (E, A)) for i in range(10)]
    records += [rec(f"c{i}", (C, B)) for i in range(10)]
    records += [rec("same_a", (N, A), group="patient7"), rec("same_b", (N, A), (E, B), group="patient7")]
    train, heldout, strata = stratified_split(records, 0.2, seed=0)
    assert strata["pleural_effusion"] == {"train": 8, "heldout": 2}
    assert strata["cardiomegaly"] == {"train": 8, "heldout": 2}
    assert strata["nodule_mass+pleural_effusion"] == {"train": 2, "heldout": 0}  # one group: stays in train
    assert {r.id for r in train} & {r.id for r in heldout} == set()
    assert len(train) + len(heldout) == len(records)


# --- properties: counts add up, pneumothorax always kept ---------------------------------------------------

coords = st.floats(0.0, 0.95, allow_nan=False)


@st.composite
def findings(draw: st.DrawFn) -> tuple[Label, tuple[float, float, float, float]]:
    x0, y0 = draw(coords), draw(coords)
    w, h = draw(st.floats(0.02, 0.5)), draw(st.floats(0.02, 0.5))
    return draw(st.sampled_from(FINDING_LABELS)), (x0, y0, min(1.0, x0 + w), min(1.0, y0 + h))


@st.composite
def corpora(draw: st.DrawFn) -> list[SftRecord]:
    n = draw(st.integers(0, 25))
    return [
        rec(f"i{i}", *draw(st.lists(findings(), max_size=5)), group=f"g{draw(st.integers(0, 12))}")
        for i in range(n)
    ]


@FAST
@given(
    corpora(),
    st.none() | st.floats(0.0, 3.0),
    st.none() | st.integers(1, 4),
    st.floats(0.0, 0.5),
    st.integers(0, 5),
)
def test_curation_counts_add_up(
    records: list[SftRecord], ratio: float | None, cap: int | None, heldout: float, seed: int
) -> None:
    config = CurationConfig(normal_ratio=ratio, max_per_label=cap, heldout=heldout, seed=seed)
    result = curate(records, config)
    report = result.report.as_json()
    boxes, images = report["boxes"], report["images"]
    assert boxes["in"] == sum(len(r.findings) for r in records)
    assert boxes["in"] == boxes["merged_away"] + boxes["dropped_cross_label"] + boxes["out"]
    for tally in boxes["per_label"].values():
        assert tally["in"] == tally["merged_away"] + tally["dropped_cross_label"] + tally["out"]
    if cap is None:  # only the cap drops images that still carry boxes
        assert boxes["out"] == sum(len(r.findings) for r in [*result.train, *result.heldout])
    assert images["in"] == images["dropped_normal"] + images["dropped_over_cap"] + images["kept"]
    assert images["kept"] == images["train"] + images["heldout"]
    kept_ids = {r.id for r in [*result.train, *result.heldout]}
    assert {r.id for r in records if any(f.label is P for f in r.findings)} <= kept_ids
    if ratio is not None:
        positives = sum(not r.normal for r in [*result.train, *result.heldout])
        assert sum(r.normal for r in [*result.train, *result.heldout]) <= ratio * positives
    train_groups, held_groups = {r.group for r in result.train}, {r.group for r in result.heldout}
    assert train_groups & held_groups == set()


# --- targets: what recovery reads, and back -----------------------------------------------------------------

formats = st.sampled_from([BoxFormat("yxyx", 1.0), BoxFormat("xyxy", 1.0), BoxFormat("yxyx", 1000.0)])


@FAST
@given(st.lists(findings(), max_size=6), formats)
def test_a_target_recovers_to_its_findings(
    found: list[tuple[Label, tuple[float, float, float, float]]], fmt: BoxFormat
) -> None:
    items = [TrainFinding(lb, box) for lb, box in found]
    keys = [(f.label, tuple(native_box(f.box, fmt))) for f in items]
    assume(len(set(keys)) == len(keys))  # two boxes equal after rounding are one answer to recovery
    recovered = recover_findings(render_target(items, fmt), fmt)
    assert recovered.outcome is ParseOutcome.CLEAN and recovered.notes == []
    if not items:
        assert [f.label for f in recovered.findings] == [Label.NO_FINDING]
        return
    unit = 1.5 / fmt.scale if fmt.scale != 1 else 0.0015
    got = sorted((f.label, [round(v, 9) for v in f.box.as_list()]) for f in recovered.findings if f.box)
    want = []
    for f in items:
        n = [v / fmt.scale for v in native_box(f.box, fmt)]
        xyxy = [n[1], n[0], n[3], n[2]] if fmt.order == "yxyx" else n
        assert xyxy == pytest.approx(list(f.box), abs=unit)  # rounding moves a box by at most a unit
        want.append((f.label, [round(v, 9) for v in xyxy]))
    assert got == sorted(want)


def test_targets_use_the_prompts_contract() -> None:
    finding = [TrainFinding(E, (0.12, 0.45, 0.48, 0.86))]
    assert (
        render_target(finding, FMT) == '[{"label": "pleural_effusion", "box_2d": [0.45, 0.12, 0.86, 0.48]}]'
    )
    assert render_target(finding, BoxFormat("yxyx", 1000)) == (
        '[{"label": "pleural_effusion", "box_2d": [450, 120, 860, 480]}]'
    )
    assert render_target([], FMT) == '[{"label": "no_finding"}]'
    assert native_box((0.9996, 0.0, 1.0, 0.5), FMT) == [0.0, 0.999, 0.5, 1.0]  # never collapsed
    assert parse_format("xyxy@1000") == BoxFormat("xyxy", 1000.0)


def test_a_record_survives_json() -> None:
    one = rec("x", (N, (0.1, 0.2, 0.3, 0.4)), (E, A))
    back = SftRecord.from_json(one.as_json())
    assert back == one
    assert one.as_json()["messages"][1]["content"][0]["text"] == one.target()


# --- the held-out split as a dataset `eval` reads ----------------------------------------------------------


def test_eval_names_map_back_to_their_labels() -> None:
    for label in FINDING_LABELS:
        assert dataset_label("chestx-det", EVAL_NAMES[label]).label is label


def test_the_heldout_file_reads_back_as_the_same_gold() -> None:
    from pathlib import Path

    records = [rec("a", (N, (0.1, 0.2, 0.3, 0.4)), (E, A)), rec("b")]
    items, stats = chestx_det_items(as_chestx_det(records, Path("/images")))
    assert [i.image for i in items] == ["a.png", "b.png"]
    assert stats.labels.unknown == Counter()
    for record, item in zip(records, items, strict=True):
        assert item.normal is record.normal
        got = sorted((f.label, f.box.as_list()) for f in item.findings if f.box is not None)
        assert got == sorted((f.label, list(f.box)) for f in record.findings)
