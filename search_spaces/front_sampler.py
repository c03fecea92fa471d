"""FrontSampler: ask for the point most likely to be on the true front.

A finite space's unmeasured points are scored by the probability that each lies on the
true Pareto front of the whole space (every measured point counts; every unmeasured one
is drawn jointly from a Gaussian-process posterior per objective, ``surrogate.GP``),
times the probability it is feasible where some trials were not. Recall of the front is
what device time buys, so this is the quantity to maximise directly; it needs no
reference point and is unchanged by any monotone rescaling of an objective.

Measured points are never proposed again (``PointSampler``). The first ``n_startup``
points are spread out (maximin distance in the feature space, first one random). A warm
start's prior (records of other platforms) gives each objective a prior mean: the other
platforms' prediction for the point, weighted by a fit on this study's own trials and
kept only where it explains them better than none (``GP.fit``), so a dissimilar platform
costs little.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from search_spaces.samplers import PointSampler
from search_spaces.space import SearchSpace
from search_spaces.surrogate import GP, Encoder

MAX_CANDIDATES = 256  # unmeasured points scored per ask (a random subset beyond that)
SAMPLES = 96  # joint posterior draws per ask
MAX_OBSERVED = 300  # trials a GP is fitted on (``_fit_subset``): bounds an ask's cost
REFIT_ALWAYS_BELOW = 100  # trials below which length scales are refitted at every ask
REFIT_GROWTH = 1.1  # above it, refitted once the trials grew by this factor
PENALTY_ABS = 1e8  # a told value this large is a stand-in for "no measurement"


class FrontSampler(PointSampler):
    def __init__(self, space: SearchSpace, seed: int | None = None, *, n_startup: int = 4,
                 samples: int = SAMPLES, prior: Sequence[dict[str, Any]] | None = None):
        super().__init__(space, seed)
        self.encoder = Encoder(space)
        self.features = self.encoder.encode(self.points)
        self.n_startup = n_startup
        self.samples = samples
        self._prior_records = list(prior or [])
        self._prior: list[np.ndarray] | None = None  # per objective, at every point
        self._scales: dict[tuple, np.ndarray] = {}  # model -> last fitted length scales
        self._fitted_n: dict[tuple, int] = {}  # model -> trials at its last length-scale fit
        self._verdicts: dict[int, tuple[bool, bool]] = {}  # trial id -> (measured, feasible)

    # --- the choice --------------------------------------------------------------------
    def choose(self, study: optuna.Study, trials: list[FrozenTrial], free: list[int]) -> int:
        signs = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions]
        obs = [(i, t) for t in trials if (i := self.trial_index(t)) is not None]
        modelled = [(i, t) for i, t in obs if self._verdict(t)[0]]
        if self._prior is None and self._prior_records:
            self._prior = self._prior_columns(signs)
        startup = min(self.n_startup, 2) if self._prior is not None else self.n_startup
        if len(modelled) < max(startup, 2):
            return self._spread(obs, free)
        cand = free if len(free) <= MAX_CANDIDATES else list(
            self._rng.choice(free, MAX_CANDIDATES, replace=False))
        ys, logs = self._targets(modelled, signs)
        feasible_obs = np.array([self._verdict(t)[1] for _, t in modelled])
        fit_on = self._fit_subset(ys, feasible_obs)
        fit_obs = obs
        if len(obs) > MAX_OBSERVED:  # with the latest failures, which the constraints learn from
            failed = [o for o in obs if not self._verdict(o[1])[0]]
            fit_obs = [modelled[k] for k in fit_on] + failed[-MAX_OBSERVED // 4:]
        idx = [modelled[k][0] for k in fit_on]
        draws = []
        for j in range(len(signs)):
            gp = GP(self.encoder.groups, self._scales.get(("objective", j)))
            prior = self._prior[j] if self._prior is not None else None
            gp.fit(self.features[idx], ys[fit_on, j], None if prior is None else prior[idx],
                   sweeps=self._sweeps(("objective", j), len(idx)))
            self._scales[("objective", j)] = gp.scales
            mean, cov = gp.posterior(self.features[cand],
                                     None if prior is None else prior[cand])
            draws.append(self._draw(mean, cov))
        # every measured point counts as a rival, whatever the GPs were fitted on
        score = front_probability(np.stack(draws, -1), ys[feasible_obs])
        score = score * self._feasibility(fit_obs, cand)
        score = score + 1e-9 * self._rng.rand(len(cand))  # random tie-break
        return int(cand[int(np.argmax(score))])

    def _verdict(self, trial: FrozenTrial) -> tuple[bool, bool]:
        """(measured, feasible) of a finished trial, judged once: an ask of a long study
        would otherwise re-read every trial's values and constraints."""
        verdict = self._verdicts.get(trial._trial_id)
        if verdict is None:
            measured = _measured(trial)
            verdict = (measured, measured and _constraints_met(trial))
            if trial.state.is_finished():
                self._verdicts[trial._trial_id] = verdict
        return verdict

    def _sweeps(self, model: tuple, n: int, first: int = 2) -> int:
        """Length-scale sweeps for a GP on ``n`` trials: ``first`` at first, then one at
        every ask while the study is small, and later only once the trials grew by a tenth
        since the last fit (a refit costs dozens of Cholesky factorisations)."""
        last = self._fitted_n.get(model)
        if last is not None and n >= REFIT_ALWAYS_BELOW and n < REFIT_GROWTH * last:
            return 0
        self._fitted_n[model] = n
        return first if last is None else 1

    def _fit_subset(self, ys: np.ndarray, feasible: np.ndarray) -> np.ndarray:
        """Indices of the measured trials the GPs are fitted on: all of them up to
        MAX_OBSERVED; beyond, the feasible ones nearest the front (fewest points dominating
        them) for two thirds, and a random share of the rest, so a long study's ask stays
        bounded while the model stays sharp where the front is."""
        n = len(ys)
        if n <= MAX_OBSERVED:
            return np.arange(n)
        rivals = ys[feasible]
        no_worse = np.ones((n, len(rivals)), bool)  # [i, k]: rival k no worse than i anywhere
        same = no_worse.copy()
        for j in range(ys.shape[1]):  # per objective: 2-D masks, not an [n, n, m] cube
            no_worse &= rivals[None, :, j] <= ys[:, None, j]
            same &= rivals[None, :, j] == ys[:, None, j]
        beaten = (no_worse & ~same).sum(1)  # [i]: feasible points dominating i
        beaten = np.where(feasible, beaten, n) + self._rng.rand(n)  # random tie-break
        near = np.argsort(beaten)[: 2 * MAX_OBSERVED // 3]
        rest = np.setdiff1d(np.arange(n), near)
        rest = self._rng.choice(rest, MAX_OBSERVED - len(near), replace=False)
        return np.sort(np.concatenate([near, rest]))

    def _targets(self, modelled, signs) -> tuple[np.ndarray, list[bool]]:
        """Objective values turned into "smaller is better" and log where all positive."""
        raw = np.array([t.values for _, t in modelled], dtype=float)
        logs = [bool((raw[:, j] > 0).all()) for j in range(raw.shape[1])]
        ys = np.stack([signs[j] * (np.log(raw[:, j]) if logs[j] else raw[:, j])
                       for j in range(raw.shape[1])], 1)
        return ys, logs

    def _draw(self, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
        n = len(mean)
        scale = max(float(np.mean(np.diag(cov))), 1e-12)
        try:
            chol = np.linalg.cholesky(cov + 1e-6 * scale * np.eye(n))
            return mean[None, :] + self._rng.randn(self.samples, n) @ chol.T
        except np.linalg.LinAlgError:  # numerically indefinite: draw the marginals
            sd = np.sqrt(np.maximum(np.diag(cov), 1e-12))
            return mean[None, :] + self._rng.randn(self.samples, n) * sd[None, :]

    def _spread(self, obs, free: list[int]) -> int:
        """Start-up: the free point farthest from everything measured or chosen; with a
        prior, only among the points the other platforms' front predicts."""
        pool = free
        if self._prior is not None:
            predicted = np.stack([p[free] for p in self._prior], 1)
            on_front = front_probability(predicted[None], np.empty((0, predicted.shape[1])))
            pool = [f for f, on in zip(free, on_front) if on > 0.5] or free
        taken = [i for i, _ in obs] + [self._index[self.space.key(p)]
                                       for p in self._chosen.values()]
        if not taken:
            return int(pool[self._rng.randint(len(pool))])
        d = ((self.features[pool][:, None, :] - self.features[taken][None, :, :]) ** 2).sum(-1)
        nearest = d.min(1) + 1e-9 * self._rng.rand(len(pool))
        return int(pool[int(np.argmax(nearest))])

    def _feasibility(self, obs, cand: list[int]) -> np.ndarray:
        """P(every constraint <= 0), one GP per constraint on its told values (an accuracy
        floor's ``floor - accuracy`` is as smooth as accuracy itself); a trial with no
        measurement counts as violating all of them."""
        prob = np.ones(len(cand))
        names = {n for _, t in obs for n in (t.constraints or {})}
        for name in sorted(names):
            idx, vals = [], []
            for i, t in obs:
                value = (t.constraints or {}).get(name)
                measured = self._verdict(t)[0]
                if value is not None or not measured:
                    idx.append(i)
                    vals.append(value if value is not None and measured else 1.0)
            vals = np.array(vals, dtype=float)
            if len(vals) < 2 or (vals <= 0).all():
                continue
            model = ("constraint", name)
            sweeps = self._sweeps(model, len(idx), first=1)
            # a refit starts afresh (one sweep from the default scales is enough here)
            gp = GP(self.encoder.groups, self._scales.get(model) if not sweeps else None)
            gp.fit(self.features[idx], vals, sweeps=sweeps)
            self._scales[model] = gp.scales
            mean, var = gp.posterior(self.features[cand], joint=False)
            z = -mean / np.sqrt(var + 1e-4 * (vals.std() ** 2 or 1.0))
            prob *= 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))
        return prob

    # --- warm start ----------------------------------------------------------------------
    def _prior_columns(self, signs: list[float]) -> list[np.ndarray]:
        """Per objective: the other platforms' standardised prediction at every point
        (one GP per platform, averaged), in this study's "smaller is better" sense."""
        by_platform: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rec in self._prior_records:
            values = rec.get("values")
            if rec.get("feasible", True) and values is not None and all(
                    v is not None and math.isfinite(v) and abs(v) < PENALTY_ABS for v in values):
                by_platform[str(rec.get("platform", ""))].append(rec)
        columns = [np.zeros(len(self.points)) for _ in signs]
        counts = 0
        for recs in by_platform.values():
            if len(recs) < 3:
                continue
            x = self.encoder.encode([r["params"] for r in recs])
            raw = np.array([r["values"] for r in recs], dtype=float)
            for j, sign in enumerate(signs):
                col = raw[:, j]
                y = sign * (np.log(col) if (col > 0).all() else col)
                y = (y - y.mean()) / (y.std() or 1.0)
                gp = GP(self.encoder.groups).fit(x, y, sweeps=2)
                columns[j] += gp.posterior(self.features, joint=False)[0]
            counts += 1
        if not counts:
            return None
        return [c / counts for c in columns]


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


def _measured(trial: FrozenTrial) -> bool:
    """True when the told values are real figures (not the driver's stand-in penalty)."""
    if trial.user_attrs.get("state") == "failed" or trial.values is None:
        return False
    return all(v is not None and math.isfinite(v) and abs(v) < PENALTY_ABS
               for v in trial.values)


def _constraints_met(trial: FrozenTrial) -> bool:
    constraints = trial.constraints or {}  # Optuna's convention: feasible when all <= 0
    values = constraints.values() if isinstance(constraints, dict) else constraints
    return all(c <= 0.0 for c in values)
