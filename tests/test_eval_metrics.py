"""Evaluation metrics against hand-computed cases: IoU, one-to-one box matching, localisation rate and
precision, flag precision/recall, and exact binomial intervals (against published values and the
binomial sum itself)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.eval.boxes import iou_matrix
from auditor.eval.metrics import (
    BoxScores,
    FlagScore,
    Proportion,
    betainc,
    binom_cdf,
    ci_list,
    clopper_pearson,
    flag_scores,
    macro_f1,
    match_boxes,
    mcnemar_exact,
    presence_prf,
)

A = np.array([[0.0, 0.0, 0.2, 0.2]])


def boxes(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


# --- IoU and matching -------------------------------------------------------------------------------------


def test_iou_by_hand() -> None:
    # 0.2x0.2 boxes offset by 0.1 in x: intersection 0.1*0.2 = 0.02, union 0.04+0.04-0.02 = 0.06
    m = iou_matrix(A, boxes((0.1, 0.0, 0.3, 0.2), (0.5, 0.5, 0.6, 0.6), (0.0, 0.0, 0.2, 0.2)))
    assert m.shape == (1, 3)
    assert m[0].tolist() == pytest.approx([1 / 3, 0.0, 1.0])


def test_iou_empty_shapes() -> None:
    assert iou_matrix(boxes(), A).shape == (0, 1)
    assert iou_matrix(A, boxes()).shape == (1, 0)


def test_greedy_matching_is_one_to_one_and_takes_the_best_pair_first() -> None:
    gold = boxes((0.0, 0.0, 0.2, 0.2), (0.05, 0.0, 0.25, 0.2))
    pred = boxes((0.05, 0.0, 0.25, 0.2))  # identical to gold[1], IoU 0.6 with gold[0]
    assert match_boxes(gold, pred, 0.3) == [(1, 0, pytest.approx(1.0))]


def test_greedy_documented_difference_from_hungarian() -> None:
    """Greedy takes the single best pair (g0-p0, IoU 0.818) and then g1-p1 is below threshold (0.333): one
    match. The Hungarian optimum would pair g0-p1 and g1-p0 (0.667 each): two. The metric is documented
    as greedy, COCO-style, and this pins it."""
    g0, g1 = (0.10, 0.0, 0.60, 0.4), (0.25, 0.0, 0.75, 0.4)
    p0, p1 = (0.15, 0.0, 0.65, 0.4), (0.00, 0.0, 0.50, 0.4)
    ious = iou_matrix(boxes(g0, g1), boxes(p0, p1))
    assert ious.ravel().tolist() == pytest.approx([9 / 11, 8 / 12, 8 / 12, 5 / 15])
    pairs = match_boxes(boxes(g0, g1), boxes(p0, p1), 0.5)
    assert [(g, p) for g, p, _ in pairs] == [(0, 0)]


def test_box_scores_by_hand() -> None:
    s3, s5 = BoxScores(0.3), BoxScores(0.5)
    # image 1: one gold, two predictions: IoU 1/3 (matched at 0.3 only) and 0 (never matched)
    gold1 = A
    pred1 = boxes((0.1, 0.0, 0.3, 0.2), (0.7, 0.7, 0.9, 0.9))
    # image 2: two gold boxes, no prediction (e.g. the grounding failed): both count as missed
    gold2 = boxes((0.0, 0.0, 0.1, 0.1), (0.5, 0.5, 0.6, 0.6))
    for s in (s3, s5):
        s.add(gold1, pred1)
        s.add(gold2, boxes())
    assert (s3.gold_boxes, s3.pred_boxes, s3.matched) == (3, 2, 1)
    assert s3.rate.value == pytest.approx(1 / 3)
    assert s3.precision.value == pytest.approx(1 / 2)
    assert s3.mean_iou == pytest.approx(1 / 3)
    assert (s5.matched, s5.rate.value, s5.precision.value, s5.mean_iou) == (0, 0.0, 0.0, None)
    d = s3.as_dict()
    assert d["rate"] == {"value": 0.3333, "k": 1, "n": 3, "ci95": ci_list(*clopper_pearson(1, 3))}


def test_box_rate_without_gold_is_not_a_number() -> None:
    s = BoxScores(0.3)
    assert s.rate.value is None and s.rate.as_dict()["ci95"] == [0.0, 1.0]


# --- presence (existing API kept) -------------------------------------------------------------------------


def test_presence_prf_and_macro_by_hand() -> None:
    s = presence_prf([True, True, False, None, False], [True, False, True, True, False])
    assert (s.tp, s.fp, s.fn, s.tn, s.excluded) == (1, 1, 1, 1, 1)
    assert (s.precision, s.recall, s.f1) == (0.5, 0.5, 0.5)
    perfect = presence_prf([True], [True])
    assert macro_f1([s, perfect]) == pytest.approx(0.75)


# --- flags ------------------------------------------------------------------------------------------------


def test_flag_scores_by_hand() -> None:
    expected = [
        {("URGENT", "pneumothorax"), ("MISSING", "pneumothorax")},
        {("UNSUPPORTED", "cardiomegaly")},
        set(),
    ]
    produced = [
        {("URGENT", "pneumothorax")},  # MISSING not raised: one false negative
        {("UNSUPPORTED", "cardiomegaly"), ("UNSUPPORTED", "nodule_mass")},  # one extra: false positive
        {("MISSING", "pleural_effusion")},  # a flag nobody expected
    ]
    s = flag_scores(expected, produced, ("MISSING", "UNSUPPORTED", "URGENT"))
    assert (s["MISSING"].tp, s["MISSING"].fp, s["MISSING"].fn) == (0, 1, 1)
    assert (s["UNSUPPORTED"].precision, s["UNSUPPORTED"].recall, s["UNSUPPORTED"].n) == (0.5, 1.0, 1)
    assert (s["URGENT"].precision, s["URGENT"].recall) == (1.0, 1.0)
    assert FlagScore().precision is None and FlagScore().recall is None


def test_flag_scores_need_one_produced_set_per_item() -> None:
    with pytest.raises(ValueError):
        flag_scores([set()], [], ("MISSING",))


# --- exact binomial intervals -----------------------------------------------------------------------------

# Published Clopper-Pearson 95% values (e.g. R's binom.test, statsmodels method="beta").
KNOWN = [
    (4, 9, 0.1370, 0.7880),
    (3, 9, 0.0749, 0.7007),
    (0, 10, 0.0, 0.3085),
    (10, 10, 0.6915, 1.0),
    (5, 10, 0.1871, 0.8129),
    (1, 1, 0.025, 1.0),
    (0, 1, 0.0, 0.975),
    (50, 100, 0.3983, 0.6017),
]


@pytest.mark.parametrize(("k", "n", "lo", "hi"), KNOWN)
def test_clopper_pearson_known_values(k: int, n: int, lo: float, hi: float) -> None:
    got = clopper_pearson(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_clopper_pearson_edges() -> None:
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        clopper_pearson(5, 4)


def _binom_sum(k: int, n: int, p: float) -> float:
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_clopper_pearson_solves_the_binomial_tails(kn: tuple[int, int]) -> None:
    """The bounds are where the exact binomial tails equal alpha/2 (checked by summing the pmf)."""
    k, n = kn
    lo, hi = clopper_pearson(k, n)
    if k > 0:
        assert 1 - _binom_sum(k - 1, n, lo) == pytest.approx(0.025, abs=1e-7)
    if k < n:
        assert _binom_sum(k, n, hi) == pytest.approx(0.025, abs=1e-7)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_betainc_and_binom_cdf_known_values() -> None:
    assert betainc(1, 1, 0.3) == pytest.approx(0.3)  # uniform
    assert betainc(2, 3, 0.4) == pytest.approx(0.5248)  # 1 - sum_{j<2} C(4,j) .4^j .6^(4-j)
    assert betainc(0.5, 0.5, 0.5) == pytest.approx(0.5)  # symmetric arcsine
    assert binom_cdf(7, 20, 0.3) == pytest.approx(_binom_sum(7, 20, 0.3), rel=1e-12)
    assert binom_cdf(-1, 5, 0.5) == 0.0 and binom_cdf(5, 5, 0.5) == 1.0


def test_mcnemar_exact() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(1, 0) == 1.0  # one discordant pair is no evidence
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)


def test_proportion_dict_never_rounds_a_bound_onto_the_edge() -> None:
    d = Proportion(7426, 7426).as_dict()
    assert d["ci95"][0] < 1.0
    assert Proportion(4, 9).as_dict()["ci95"] == [0.137, 0.788]
