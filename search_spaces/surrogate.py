"""A small Gaussian-process surrogate over a space's points (numpy only).

Points become feature vectors that keep the space's shape: an ordered dimension (widths,
resolutions, thread counts) is one number on its own scale (log where every value is
positive, so 0.25 -> 0.5 is as far as 0.5 -> 1.0), an unordered one (precision, runtime,
family) is one-hot, and a conditional dimension that is inactive is a separate "off" flag
rather than a made-up value. Each dimension has one length scale (automatic relevance),
fitted by marginal likelihood on a coarse grid. The accuracy model is fitted over the
dims that affect accuracy only (an ``Encoder`` of ``space.accuracy_dims()``), so it need
not learn that thread counts do not matter.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.linalg import solve_triangular

from search_spaces.space import SearchSpace, canonical

LENGTH_SCALES = (0.15, 0.4, 1.0, 2.5, 1e3)  # 1e3: the dimension does not matter
NOISE = 1e-3  # relative to the standardised variance: replayed or short-run figures
LINEAR = 0.5  # measured: the whole front sooner on both published devices (benchmark)


class Encoder:
    """params dict -> feature vector; column groups per dimension (one length scale each).
    ``dims``: only these of the space's dims (the accuracy model's: ``accuracy_dims()``)."""

    def __init__(self, space: SearchSpace, dims: Sequence | None = None):
        self.space = space
        self.groups: list[list[int]] = []
        self._plan: list[tuple] = []
        col = 0
        for dim in (space.dims if dims is None else dims):
            cols: list[int] = []
            if dim.is_ordered:
                lo, hi, log = _range(dim)
                self._plan.append(("ordered", dim, lo, hi, log, col))
                cols.append(col)
                col += 1
            else:
                index = {canonical(c): i for i, c in enumerate(dim.choices)}
                self._plan.append(("onehot", dim, index, col))
                cols.extend(range(col, col + len(index)))
                col += len(index)
            if dim.when:
                self._plan.append(("flag", dim, col))
                cols.append(col)
                col += 1
            self.groups.append(cols)
        self.width = col

    def encode(self, points: Sequence[Mapping[str, Any]]) -> np.ndarray:
        out = np.zeros((len(points), self.width))
        for row, params in enumerate(points):
            for step in self._plan:
                kind, dim = step[0], step[1]
                value = params.get(dim.name)
                present = dim.name in params and (not dim.when or dim.active(params))
                if kind == "ordered" and present:
                    _, _, lo, hi, log, col = step
                    out[row, col] = _position(value, dim, lo, hi, log)
                elif kind == "onehot" and present:
                    _, _, index, col = step
                    i = index.get(canonical(value))
                    if i is not None:  # a foreign value this space lacks: no column set
                        out[row, col + i] = 1.0 / math.sqrt(2.0)
                elif kind == "flag":
                    out[row, step[2]] = 0.0 if present else 1.0
        return out


def _range(dim) -> tuple[float, float, bool]:
    if dim.type == "categorical":
        values = [v for v in dim.choices if _number(v) is not None]
        if len(values) < len(dim.choices) or not values:  # ordered names: use the rank
            return 0.0, max(len(dim.choices) - 1, 1), False
        nums = [float(v) for v in values]
    else:
        nums = [float(dim.low), float(dim.high)]
    log = min(nums) > 0
    lo, hi = (math.log(min(nums)), math.log(max(nums))) if log else (min(nums), max(nums))
    return lo, (hi if hi > lo else lo + 1.0), log


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _position(value: Any, dim, lo: float, hi: float, log: bool) -> float:
    """0..1 across the dimension's range (a foreign value outside it extrapolates)."""
    num = _number(value)
    if num is None or (dim.type == "categorical" and any(_number(c) is None for c in dim.choices)):
        ranks = {canonical(c): i for i, c in enumerate(dim.choices)}
        return ranks.get(canonical(value), 0) / (hi - lo)
    x = math.log(num) if log and num > 0 else num
    return (x - lo) / (hi - lo)


class GP:
    """Matérn-5/2 GP with per-group length scales, on standardised targets, with an
    optional prior mean column (a warm start's foreign prediction) whose weight is fitted
    and kept only where it raises the marginal likelihood."""

    def __init__(self, groups: list[list[int]], scales: np.ndarray | None = None,
                 linear: float | None = None):
        self.groups = groups
        self.scales = scales if scales is not None else np.full(len(groups), 1.0)
        self.linear = LINEAR if linear is None else linear  # weight of a linear term: trends extrapolate from few points

    def _scaled(self, x: np.ndarray, scales: np.ndarray) -> np.ndarray:
        per_col = np.ones(x.shape[1])
        for g, cols in enumerate(self.groups):
            per_col[cols] = scales[g]
        return x / per_col

    def _kernel(self, a: np.ndarray, b: np.ndarray, scales: np.ndarray) -> np.ndarray:
        a_raw, b_raw = a, b
        a, b = self._scaled(a, scales), self._scaled(b, scales)
        d2 = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)
        r = np.sqrt(5.0 * d2)
        k = (1.0 + r + r * r / 3.0) * np.exp(-r)
        if self.linear:
            k = k + self.linear * ((a_raw - 0.5) @ (b_raw - 0.5).T)
        return k

    def _nll(self, scales: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        k = self._kernel(x, x, scales) + NOISE * np.eye(len(x))
        try:
            chol = np.linalg.cholesky(k)
        except np.linalg.LinAlgError:
            return math.inf
        w = solve_triangular(chol, y, lower=True)  # y' K^-1 y = |L^-1 y|^2
        return 0.5 * float(w @ w) + float(np.log(np.diag(chol)).sum())

    def fit(self, x: np.ndarray, y: np.ndarray, prior: np.ndarray | None = None,
            sweeps: int = 1) -> "GP":
        self.x = x
        self.prior_weight, self.offset = 0.0, float(y.mean())
        self.std = float(y.std()) or 1.0
        resid = y
        if prior is not None and len(y) >= 3:
            # mean = a + b * prior, b kept only if it explains the data (likelihood test below)
            design = np.stack([np.ones(len(y)), prior], 1)
            a, b = np.linalg.lstsq(design, y, rcond=None)[0]
            if b > 0:
                with_prior = y - (a + b * prior)
                if self._better(x, with_prior, y - y.mean()):
                    self.offset, self.prior_weight, resid = float(a), float(b), y - b * prior
                    self.std = float(with_prior.std()) or self.std
        self.z = (resid - self.offset) / self.std
        if len(y) >= 3:
            self._fit_scales(x, self.z, sweeps)
        k = self._kernel(x, x, self.scales) + NOISE * np.eye(len(x))
        self.chol = np.linalg.cholesky(k)
        self.alpha = _cho_solve(self.chol, self.z)
        return self

    def _better(self, x: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
        """Residuals a fit the data better than b (each standardised, same length scales)."""
        sa, sb = a.std() or 1.0, b.std() or 1.0
        return (self._nll(self.scales, x, a / sa) + len(a) * math.log(sa)
                < self._nll(self.scales, x, b / sb) + len(b) * math.log(sb))

    def _fit_scales(self, x: np.ndarray, z: np.ndarray, sweeps: int) -> None:
        if not sweeps:  # keep the given scales (and skip a factorisation)
            return
        best = self._nll(self.scales, x, z)
        for _ in range(sweeps):
            for g in range(len(self.groups)):
                for value in LENGTH_SCALES:
                    trial = self.scales.copy()
                    trial[g] = value
                    nll = self._nll(trial, x, z)
                    if nll < best - 1e-9:
                        best, self.scales = nll, trial

    def posterior(self, xs: np.ndarray, prior: np.ndarray | None = None,
                  joint: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance (joint) or variance (marginal), in the target's units."""
        ks = self._kernel(xs, self.x, self.scales)
        mean = ks @ self.alpha
        v = solve_triangular(self.chol, ks.T, lower=True)
        base = self.offset + (self.prior_weight * prior if prior is not None else 0.0)
        if joint:
            cov = self._kernel(xs, xs, self.scales) - v.T @ v
            return base + self.std * mean, self.std ** 2 * cov
        # k(x, x): the Matérn part is 1 at distance 0, the linear part |x - 0.5|^2
        prior_var = 1.0 + self.linear * ((xs - 0.5) ** 2).sum(1)
        var = np.maximum(prior_var - (v * v).sum(0), 1e-12)
        return base + self.std * mean, self.std ** 2 * var


def _cho_solve(chol: np.ndarray, y: np.ndarray) -> np.ndarray:
    """K^-1 y from K's lower Cholesky factor: two triangular solves, O(n^2)."""
    return solve_triangular(chol.T, solve_triangular(chol, y, lower=True), lower=False)
