"""Sequential accuracy: score part of the set, stop when the verdict against the floor is
settled at a stated confidence.

A search trial needs one fact about accuracy: is the point above the floor, and roughly
where (to place it on or off the front). Scoring samples in a fixed shuffled order, in
growing chunks, and stopping once the interval for the whole-set figure lies on one side
of the floor (or is narrower than ``width``) costs a fraction of the set on most points.
A point is also placed off the front once a point its study measured is at least as fast
and more accurate than the interval's high end (``dominated_by``): it cannot be on the
front whatever its exact figure.

Intervals, by metric:

- per-sample metrics (classification: each sample right or wrong): Wilson's score interval for the
  proportion, with a finite-population correction (the set is finite; having scored all of
  it, the interval has width 0). Paired with the family's reference, when its per-sample
  results are known, the interval is that of the mean difference (variant - reference) on
  the same samples, added to the reference's whole-set figure: a variant that disagrees with
  its parent on few samples gets a far tighter interval than its accuracy alone.
- set-level metrics (mAP over images, AUC over the pairs of users): not a mean of
  per-sample values, so half-sampling over samples (images; users for DLRM): ``draws``
  random halves scored with the task's own metric, their spread around the estimate taken as
  its standard error (a bootstrap with replacement would score an image twice, which COCO's
  evaluation cannot), also finite-population corrected.

The z-value is two-sided at ``confidence`` (0.99: 2.576), so a settled verdict is wrong
with probability at most about (1 - confidence) / 2 per look; ``benchmarks/
sequential_accuracy.py`` measures the agreement with full-set verdicts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

ABOVE, BELOW, UNDECIDED = "above", "below", "undecided"


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    samples: int  # scored so far

    @property
    def width(self) -> float:
        return self.high - self.low


def z_value(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _fpc(n: int, total: int) -> float:
    """Finite-population correction: no uncertainty left once the whole set is scored."""
    if total <= 1 or n >= total:
        return 0.0
    return math.sqrt((total - n) / (total - 1))


def wilson(good: int, n: int, total: int, confidence: float) -> Interval:
    """Interval for a whole-set proportion from ``good`` of ``n`` scored samples."""
    if n <= 0:
        return Interval(0.0, 0.0, 1.0, 0)
    p = good / n
    z = z_value(confidence) * _fpc(n, total)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n)


def paired(diffs: Sequence[float], reference: float, total: int,
           confidence: float) -> Interval:
    """Interval for a whole-set figure as ``reference`` (the parent's whole-set figure) +
    the mean per-sample difference variant - parent on the samples scored so far. The
    variance of a difference is floored by one disagreement in n, so a run of perfect
    agreement does not claim certainty."""
    d = np.asarray(diffs, dtype=np.float64)
    n = len(d)
    if n == 0:
        return Interval(reference, 0.0, 1.0, 0)
    mean = float(d.mean())
    var = max(float(d.var(ddof=1)) if n > 1 else 1.0, 1.0 / n)
    half = z_value(confidence) * _fpc(n, total) * math.sqrt(var / n)
    est = reference + mean
    return Interval(est, max(0.0, est - half), min(1.0, est + half), n)


def half_sample(score: Callable[[np.ndarray], float], n: int, total: int,
                confidence: float, draws: int = 30, seed: int = 0) -> Interval:
    """Interval of a set-level metric by half-sampling: ``score(positions)`` scores the
    samples at those positions (0..n-1, no repeats: mAP and AUC cannot score an image or a
    pair twice) of what was scored so far. For a mean, an estimate from a random half
    deviates from the estimate from all n by as much as the all-n estimate deviates from the
    truth (variance sigma^2 (1/m - 1/n) = sigma^2 / n at m = n/2), so the deviations' spread
    is the estimate's; its standard deviation times z gives the half-width."""
    if n <= 0:
        return Interval(0.0, 0.0, 1.0, 0)
    estimate = float(score(np.arange(n)))
    if n >= total or n < 4:
        return Interval(estimate, estimate if n >= total else 0.0,
                        estimate if n >= total else 1.0, n)
    rng = np.random.default_rng(seed)
    half = [float(score(np.sort(rng.choice(n, n // 2, replace=False)))) for _ in range(draws)]
    sd = float(np.sqrt(np.mean((np.asarray(half) - estimate) ** 2)))
    w = z_value(confidence) * _fpc(n, total) * sd
    return Interval(estimate, max(0.0, estimate - w), min(1.0, estimate + w), n)


def verdict(interval: Interval, floor: float | None) -> str:
    if floor is None:
        return UNDECIDED
    if interval.low >= floor:
        return ABOVE
    if interval.high < floor:
        return BELOW
    return UNDECIDED


def settled(interval: Interval, floor: float | None, total: int, width: float) -> bool:
    """Stop scoring: the verdict is settled, or the interval is narrow enough to place the
    point on or off the front (``width``), or the whole set is scored."""
    if interval.samples >= total:
        return True
    if floor is not None and verdict(interval, floor) != UNDECIDED:
        return True
    return interval.width <= width


def dominated_by(interval: Interval, speed: float | None, front: Sequence[Sequence[float]],
                 maximize: bool) -> list[float] | None:
    """The first (speed, accuracy) point of ``front`` that is at least as fast as ``speed``
    (higher or lower is better by ``maximize``) and more accurate than ``interval.high``:
    the point is off the front whatever its exact accuracy. None: no such point."""
    if speed is None:
        return None
    for point_speed, point_accuracy in front:
        faster = point_speed >= speed if maximize else point_speed <= speed
        if faster and point_accuracy > interval.high:
            return [point_speed, point_accuracy]
    return None


def chunks(total: int, first: int, growth: float = 2.0) -> list[int]:
    """Cumulative sample counts to look at: first, first*growth, ..., total."""
    out, n = [], max(1, int(first))
    while n < total:
        out.append(n)
        n = int(math.ceil(n * growth))
    out.append(total)
    return out


def shuffled_order(total: int, seed: int = 20261203) -> np.ndarray:
    """The fixed order samples are scored in: the same for every trial, so a parent's
    per-sample results pair with a variant's, and a spot check reuses the first ones."""
    return np.random.default_rng(seed).permutation(total)
