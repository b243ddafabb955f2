"""Pure metrics (numpy only): presence P/R/F1 and macro-F1, box localisation, audit flag P/R, and
exact binomial intervals.

Gold cells may be ``None`` (ambiguous): such rows are left out of that label's score, and the
number left out is reported beside the score so that nobody mistakes a smaller N for the full set.
Every rate that rests on a count is kept as its count (`Proportion`) with an exact Clopper-Pearson
interval, because 4/9 against 3/9 is not a finding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from auditor.eval.boxes import FloatArray, iou_matrix


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1 for one label, with the confusion counts they came from."""

    tp: int
    fp: int
    fn: int
    tn: int
    excluded: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        return self.tp + self.fn

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "support": self.support,
            "excluded": self.excluded,
        }


def presence_prf(gold: Sequence[bool | None], predicted: Sequence[bool]) -> PRF:
    """Binary presence scores; rows whose gold is None are excluded and counted."""
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} rows, predicted {len(predicted)}")
    known = np.array([g is not None for g in gold], dtype=bool)
    g = np.array([bool(x) for x in gold], dtype=bool)[known]
    p = np.asarray(predicted, dtype=bool)[known]
    return PRF(
        tp=int(np.sum(g & p)),
        fp=int(np.sum(~g & p)),
        fn=int(np.sum(g & ~p)),
        tn=int(np.sum(~g & ~p)),
        excluded=int(np.sum(~known)),
    )


def macro_f1(scores: Sequence[PRF]) -> float:
    """Unweighted mean F1 over labels."""
    return float(np.mean([s.f1 for s in scores])) if scores else 0.0


# --- Exact binomial intervals ----------------------------------------------------------------------
# scipy is not a dependency: the regularized incomplete beta is computed by its continued fraction
# (Lentz's method), and the Clopper-Pearson bounds, which are beta quantiles, by bisection on it.

_EPS = 1e-15
_TINY = 1e-300


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction for I_x(a, b) (converges fast for x < (a + 1) / (a + b + 2))."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), exactly via I_{1-p}(n - k, k + 1)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return betainc(n - k, k + 1, 1.0 - p)


def beta_ppf(q: float, a: float, b: float) -> float:
    """The q-quantile of Beta(a, b) by bisection on `betainc` (monotone in x), to 1e-12."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for a binomial proportion k/n (conservative: coverage >= confidence).

    Lower bound: the p at which P(X >= k) = alpha/2; upper: the p at which P(X <= k) = alpha/2. With
    n = 0 nothing is known and the interval is [0, 1].
    """
    if not (0 <= k <= n):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1.0 - confidence
    lower = 0.0 if k == 0 else beta_ppf(alpha / 2, k, n - k + 1)
    upper = 1.0 if k == n else beta_ppf(1 - alpha / 2, k + 1, n - k)
    return lower, upper


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts (binomial test at p = 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binom_cdf(min(only_a, only_b), n, 0.5))


def ci_list(lo: float, hi: float) -> list[float]:
    """An interval for JSON: four decimals, but never rounded onto 0 or 1 unless it is exactly there."""
    return [_near_edge(round(lo, 4), lo), _near_edge(round(hi, 4), hi)]


def _near_edge(rounded: float, exact: float) -> float:
    if rounded in (0.0, 1.0) and exact != rounded:
        return float(f"{exact:.2g}") if rounded == 0.0 else 1.0 - float(f"{1.0 - exact:.2g}")
    return rounded


@dataclass(frozen=True)
class Proportion:
    """k successes out of n, with its exact 95% interval: how a small-N rate must be shown."""

    k: int
    n: int

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    def ci95(self) -> tuple[float, float]:
        return clopper_pearson(self.k, self.n)

    def as_dict(self) -> dict[str, object]:
        value = self.value
        return {
            "value": None if value is None else round(value, 4),
            "k": self.k,
            "n": self.n,
            "ci95": ci_list(*self.ci95()),
        }


# --- Boxes ----------------------------------------------------------------------------------------


def match_boxes(gold: FloatArray, pred: FloatArray, threshold: float) -> list[tuple[int, int, float]]:
    """One-to-one matching of same-label boxes, GREEDY by IoU (COCO-style), at IoU >= threshold.

    Pairs are taken in descending IoU (ties: lower gold index, then lower prediction index), each
    box used at most once. Greedy can differ from the Hungarian optimum on contrived overlaps; it is
    the detection-evaluation convention and what the published table used. Returns (gold, pred, iou).
    """
    if len(gold) == 0 or len(pred) == 0:
        return []
    ious = iou_matrix(gold, pred)
    gi, pi = np.nonzero(ious >= threshold)
    order = sorted(zip(gi.tolist(), pi.tolist(), strict=True), key=lambda ij: (-ious[ij], ij[0], ij[1]))
    used_g: set[int] = set()
    used_p: set[int] = set()
    pairs = []
    for g, p in order:
        if g not in used_g and p not in used_p:
            used_g.add(g)
            used_p.add(p)
            pairs.append((g, p, float(ious[g, p])))
    return pairs


@dataclass
class BoxScores:
    """Localisation at one IoU threshold over a whole run: gold boxes found, predictions that hit."""

    threshold: float
    gold_boxes: int = 0
    pred_boxes: int = 0
    matched: int = 0
    iou_sum: float = 0.0

    def add(self, gold: FloatArray, pred: FloatArray) -> None:
        """One image's boxes of one label (gold and predicted)."""
        pairs = match_boxes(gold, pred, self.threshold)
        self.gold_boxes += len(gold)
        self.pred_boxes += len(pred)
        self.matched += len(pairs)
        self.iou_sum += sum(iou for _, _, iou in pairs)

    @property
    def rate(self) -> Proportion:
        """Localisation rate: matched gold boxes / gold boxes."""
        return Proportion(self.matched, self.gold_boxes)

    @property
    def precision(self) -> Proportion:
        """Box precision: matched predicted boxes / predicted boxes."""
        return Proportion(self.matched, self.pred_boxes)

    @property
    def mean_iou(self) -> float | None:
        return self.iou_sum / self.matched if self.matched else None

    def as_dict(self) -> dict[str, object]:
        mean = self.mean_iou
        return {
            "threshold": self.threshold,
            "rate": self.rate.as_dict(),
            "precision": self.precision.as_dict(),
            "mean_iou_matched": None if mean is None else round(mean, 4),
            "gold_boxes": self.gold_boxes,
            "pred_boxes": self.pred_boxes,
            "matched": self.matched,
        }


# --- Audit flags ------------------------------------------------------------------------------------

FlagKey = tuple[str, str]
"""(kind, label) of a flag, e.g. ("MISSING", "pneumothorax")."""


@dataclass
class FlagScore:
    """Precision and recall of one flag kind against the flags a synthetic draft was built to raise."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def n(self) -> int:
        """How many flags of this kind were expected."""
        return self.tp + self.fn

    def as_dict(self) -> dict[str, object]:
        p, r = self.precision, self.recall
        return {
            "precision": None if p is None else round(p, 4),
            "recall": None if r is None else round(r, 4),
            "n": self.n,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision_ci95": ci_list(*clopper_pearson(self.tp, self.tp + self.fp)),
            "recall_ci95": ci_list(*clopper_pearson(self.tp, self.n)),
        }


def flag_scores(
    expected: Sequence[Iterable[FlagKey]], produced: Sequence[Iterable[FlagKey]], kinds: Sequence[str]
) -> dict[str, FlagScore]:
    """Per kind: a produced flag is a true positive when the same (kind, label) was expected on that item."""
    if len(expected) != len(produced):
        raise ValueError(f"expected has {len(expected)} items, produced {len(produced)}")
    scores = {k: FlagScore() for k in kinds}
    for exp, got in zip(expected, produced, strict=True):
        e, g = set(exp), set(got)
        for kind, _ in e | g:
            if kind not in scores:
                scores[kind] = FlagScore()
        for kind, _ in e & g:
            scores[kind].tp += 1
        for kind, _ in g - e:
            scores[kind].fp += 1
        for kind, _ in e - g:
            scores[kind].fn += 1
    return scores
