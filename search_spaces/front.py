"""The front sampler's stateless parts: the probability of lying on the Pareto front
from joint posterior draws, the draws, which trials a model is fitted on, and what a told
trial says (measured or a stand-in penalty, constraints met)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

PENALTY_ABS = 1e8  # a told value this large is a stand-in for "no measurement"


def front_probability(draws: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Share of draws in which each candidate is non-dominated (minimisation).

    draws: (samples, candidates, objectives), observed: (n, objectives) feasible measured
    values. A candidate must beat every observed point and every other candidate of the
    same draw: the probability of lying on the front of the whole space."""
    if draws.shape[2] == 2:
        dominated = _dominated_2d(draws, observed)
    else:
        dominated = _dominated_pairwise(draws, observed)
    return 1.0 - dominated.mean(0)


def _dominated_2d(draws: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Two objectives, O(c log c) per draw: sorted by the first objective, a candidate is
    dominated when something before it is no worse in the second. Exact ties (which
    continuous draws do not produce) may count as domination where the pairwise rule
    would not."""
    first, second = draws[..., 0], draws[..., 1]
    order = np.argsort(first, axis=1, kind="stable")
    ranked = np.take_along_axis(second, order, 1)
    best_before = np.minimum.accumulate(ranked, axis=1)
    best_before = np.concatenate([np.full((len(draws), 1), np.inf), best_before[:, :-1]], 1)
    dominated = np.empty_like(ranked, dtype=bool)
    np.put_along_axis(dominated, order, best_before <= ranked, 1)
    if len(observed):
        # the observed staircase: the best second objective among points no worse in the first
        by_first = observed[np.argsort(observed[:, 0], kind="stable")]
        stairs = np.minimum.accumulate(by_first[:, 1])
        below = np.searchsorted(by_first[:, 0], first, side="right")  # observed with o0 <= d0
        best = np.where(below > 0, stairs[np.maximum(below - 1, 0)], np.inf)
        dominated |= best <= second
    return dominated


def _dominated_pairwise(draws: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Any number of objectives, by comparing every pair (s * c * c * m)."""
    s, c, m = draws.shape
    dominated = np.zeros((s, c), dtype=bool)
    if len(observed):
        le = (observed[None, None, :, :] <= draws[:, :, None, :]).all(-1)
        lt = (observed[None, None, :, :] < draws[:, :, None, :]).any(-1)
        dominated |= (le & lt).any(-1)
    chunk = max(1, int(4e7 // max(c * c * m, 1)))  # bound the (s, c, c, m) temporary
    for start in range(0, s, chunk):
        part = draws[start:start + chunk]
        le = (part[:, None, :, :] <= part[:, :, None, :]).all(-1)  # [s, i, k]: k <= i
        lt = (part[:, None, :, :] < part[:, :, None, :]).any(-1)
        dominated[start:start + chunk] |= (le & lt).any(-1)
    return dominated


def fit_subset(ys: np.ndarray, feasible: np.ndarray, rng: np.random.RandomState,
               limit: int) -> np.ndarray:
    """Indices of the measured trials a GP is fitted on: all of them up to ``limit``;
    beyond, the feasible ones nearest the front (fewest points dominating them) for two
    thirds, and a random share of the rest, so a long study's ask stays bounded while the
    model stays sharp where the front is. ys: (n, objectives), smaller is better."""
    n = len(ys)
    if n <= limit:
        return np.arange(n)
    rivals = ys[feasible]
    no_worse = np.ones((n, len(rivals)), bool)  # [i, k]: rival k no worse than i anywhere
    same = no_worse.copy()
    for j in range(ys.shape[1]):  # per objective: 2-D masks, not an [n, n, m] cube
        no_worse &= rivals[None, :, j] <= ys[:, None, j]
        same &= rivals[None, :, j] == ys[:, None, j]
    beaten = (no_worse & ~same).sum(1)  # [i]: feasible points dominating i
    beaten = np.where(feasible, beaten, n) + rng.rand(n)  # random tie-break
    near = np.argsort(beaten)[: 2 * limit // 3]
    rest = np.setdiff1d(np.arange(n), near)
    rest = rng.choice(rest, limit - len(near), replace=False)
    return np.sort(np.concatenate([near, rest]))


def joint_draws(mean: np.ndarray, cov: np.ndarray, rng: np.random.RandomState,
                samples: int) -> np.ndarray:
    """(samples, n) draws of a joint normal; the marginals where cov is not positive
    definite numerically."""
    n = len(mean)
    scale = max(float(np.mean(np.diag(cov))), 1e-12)
    try:
        chol = np.linalg.cholesky(cov + 1e-6 * scale * np.eye(n))
        return mean[None, :] + rng.randn(samples, n) @ chol.T
    except np.linalg.LinAlgError:
        sd = np.sqrt(np.maximum(np.diag(cov), 1e-12))
        return mean[None, :] + rng.randn(samples, n) * sd[None, :]


def p_below(margin: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """P(x <= 0) of a normal x with mean -margin and standard deviation sd."""
    return 0.5 * (1.0 + np.vectorize(math.erf)(margin / (sd * math.sqrt(2.0))))


def real(values: Sequence[float]) -> bool:
    return all(v is not None and math.isfinite(v) and abs(v) < PENALTY_ABS for v in values)


def measured(trial) -> bool:
    """True when the told values are real figures (not the driver's stand-in penalty)."""
    if trial.user_attrs.get("state") == "failed" or trial.values is None:
        return False
    return real(trial.values)


def constraints_met(trial) -> bool:
    constraints = trial.constraints or {}  # Optuna's convention: feasible when all <= 0
    values = constraints.values() if isinstance(constraints, dict) else constraints
    return all(c <= 0.0 for c in values)
