"""FrontSampler: ask for the point most likely to be on the true front.

A finite space's unmeasured points are scored by the probability that each lies on the
true Pareto front of the whole space (every measured point counts; every unmeasured one
is drawn jointly from a Gaussian-process posterior per objective, ``surrogate.GP``),
times the probability it is feasible where some trials were not. Recall of the front is
what device time buys, so this is the quantity to maximise directly; it needs no
reference point and is unchanged by any monotone rescaling of an objective.

Which objective depends on what: accuracy is a function of the accuracy key only (model
dims, the runtime, its output-changing knobs: ``SearchSpace.accuracy_key``), latency of
every dim and the platform. So the accuracy GP (and the GPs of accuracy constraints, e.g.
the driver's ``accuracy_floor`` = floor - accuracy) is fitted over the accuracy dims, on
one observation per accuracy key, and a point whose key is known -- measured in this
study, or in the ``known_accuracy`` the driver hands over -- takes that figure with no
sampling noise: it is uncertain in latency only (and its floor verdict is settled once the
floor is known from any measured trial).

API for the driver:

- ``FrontSampler(space, seed, known_accuracy=book)`` (``make_sampler(...,
  known_accuracy=book)``): ``book`` an ``AccuracyBook`` (shared by every platform study of
  a fleet; the sampler adds its own measured accuracies to it, after each trial), a plain
  mapping accuracy key -> accuracy (read only), or a callable returning such a mapping
  (asked at every ask). Keys from ``space.accuracy_key(params)``.
- ``accuracy_objective``: the accuracy objective's name in ``study.metric_names`` or its
  index (default "accuracy"; the last of two objectives when names are unset), None when
  no objective is accuracy. ``accuracy_constraints``: names of constraints of the form
  floor - accuracy (default ``("accuracy_floor",)``).
- ``prior``: a warm start's records of other platforms (``WarmStart.prior``): their
  latencies become a prior mean (``warm_start.prior_columns``, weighted by a fit on this
  study's trials, kept only where it explains them); their accuracies arrive as known
  through ``WarmStart.known_accuracy`` (``make_sampler`` merges them into the book).

Measured points are never proposed again (``PointSampler``); one measured again by the
driver counts once, by its last (pooled) figure. The first ``n_startup`` (2 given a latency
prior or known accuracies) are spread out (maximin; first one random).
``cost_aware``: points are ranked per expected device second (``search_spaces.cost``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search_spaces.cost import expected_costs, trial_cost
from search_spaces.front import (PENALTY_ABS, constraints_met, fit_subset, front_probability,
                                 joint_draws, measured, p_below, real)
from search_spaces.point_sampler import PointSampler
from search_spaces.space import SearchSpace
from search_spaces.surrogate import GP, Encoder
from search_spaces.warm_start import prior_columns

MAX_CANDIDATES = 256  # unmeasured points scored per ask (a random subset beyond that)
SAMPLES = 96  # joint posterior draws per ask
MAX_OBSERVED = 300  # trials a GP is fitted on (``_fit_subset``): bounds an ask's cost
REFIT_ALWAYS_BELOW, REFIT_GROWTH = 100, 1.1  # refit at every ask below; then on 10% growth
Known = Mapping[tuple, float] | Callable[[], Mapping[tuple, float]]


class FrontSampler(PointSampler):
    def __init__(self, space: SearchSpace, seed: int | None = None, *, n_startup: int = 4,
                 samples: int = SAMPLES, prior: Sequence[dict[str, Any]] | None = None,
                 known_accuracy: Known | None = None,
                 accuracy_objective: str | int | None = "accuracy",
                 accuracy_constraints: Collection[str] = ("accuracy_floor",),
                 cost_aware: bool = True):
        super().__init__(space, seed)
        self.encoder = Encoder(space)
        self.features = self.encoder.encode(self.points)
        self.acc_encoder = Encoder(space, space.accuracy_dims())
        self.acc_keys = [space.accuracy_key(p) for p in self.points]
        self._acc_features: dict[tuple, np.ndarray] = {}
        self.n_startup, self.samples, self.cost_aware = n_startup, samples, cost_aware
        self.known_accuracy, self.accuracy_objective = known_accuracy, accuracy_objective
        self.accuracy_constraints = set(accuracy_constraints)
        self._prior_records = list(prior or [])
        self._prior: list[np.ndarray] | None = None  # per objective, at every point
        self._scales: dict[tuple, np.ndarray] = {}  # model -> last fitted length scales
        self._fitted_n: dict[tuple, int] = {}  # model -> trials at its last length-scale fit
        self._verdicts: dict[int, tuple[bool, bool]] = {}  # trial id -> (measured, feasible)

    # --- the choice --------------------------------------------------------------------
    def choose(self, study: optuna.Study, trials: list[FrozenTrial], free: list[int]) -> int:
        signs, acc, obs, modelled, known = self._state(study, trials)
        if self._prior is None and self._prior_records:
            self._prior = prior_columns(self._prior_records, self.encoder, self.features, signs)
        if self._starting(modelled, known):
            return self._spread(obs, free)
        cand = free if len(free) <= MAX_CANDIDATES else list(
            self._rng.choice(free, MAX_CANDIDATES, replace=False))
        front, feasible, _ = self._evaluate(obs, modelled, cand, known, acc, signs)
        score = front * feasible
        if self.cost_aware:  # per expected device second
            score = score / expected_costs([self.points[c] for c in cand],
                                           [(t.params, trial_cost(t)) for _, t in obs])
        score += 1e-9 * self._rng.rand(len(cand))  # random tie-break
        return int(cand[int(np.argmax(score))])

    def _starting(self, modelled, known: Mapping[tuple, float]) -> bool:
        told = {self.acc_keys[i] for i, _ in modelled}  # known from elsewhere: not these
        informed = bool(self._prior_records) or any(k not in told for k in known)
        return len(modelled) < max(min(self.n_startup, 2) if informed else self.n_startup, 2)

    def spreading(self, study: optuna.Study) -> bool:
        """Whether the next ask spreads points out (start-up) rather than asking the models."""
        trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        return self._starting(*self._state(study, trials)[3:])

    def explain(self, study: optuna.Study) -> list[dict[str, Any]]:
        """Every point not yet measured, as the next ask sees it (once past start-up):
        ``params``, ``front`` (P(on the true front)), ``feasible`` (P(constraints met)),
        and ``accuracy`` / ``accuracy_sd`` (the accuracy model's mean and spread in told
        units, sd 0 where the accuracy is known)."""
        trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        signs, acc, obs, modelled, known = self._state(study, trials)
        cand = sorted(set(range(len(self.points))) - {i for i, _ in obs})
        front, feasible, draws = self._evaluate(obs, modelled, cand, known, acc, signs)
        out = [{"params": self.points[c], "front": float(front[n]),
                "feasible": float(feasible[n])} for n, c in enumerate(cand)]
        if acc is not None:
            told = signs[acc] * draws[acc]
            told = np.exp(told) if self._logs[acc] else told
            for n, row in enumerate(out):
                row.update(accuracy=float(told[:, n].mean()), accuracy_sd=float(told[:, n].std()))
        return out

    def _state(self, study: optuna.Study, trials: list[FrozenTrial]) -> tuple:
        signs = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions]
        acc = self._accuracy_index(study)
        last = {i: t for t in sorted(trials, key=lambda t: t.number)  # a pooled re-tell wins
                if (i := self.trial_index(t)) is not None}
        obs = sorted(last.items(), key=lambda it: it[1].number)
        modelled = [(i, t) for i, t in obs if self._verdict(t)[0]]
        return signs, acc, obs, modelled, self._known(modelled, acc)

    def _evaluate(self, obs, modelled, cand, known, acc, signs):
        """(P(front), P(feasible), draws per objective) of the candidates."""
        raw = np.array([t.values for _, t in modelled], dtype=float)
        self._logs = logs = [bool((raw[:, j] > 0).all()) and (
            j != acc or all(v > 0 for v in known.values())) for j in range(len(signs))]
        ys = np.stack([self._y(raw[:, j], signs[j], logs[j]) for j in range(len(signs))], 1)
        feasible_obs = np.array([self._verdict(t)[1] for _, t in modelled])
        fit_on = fit_subset(ys, feasible_obs, self._rng, MAX_OBSERVED)
        fit_obs = obs
        if len(obs) > MAX_OBSERVED:  # with the latest failures, which the constraints learn from
            failed = [o for o in obs if not self._verdict(o[1])[0]]
            fit_obs = [modelled[k] for k in fit_on] + failed[-MAX_OBSERVED // 4:]
        idx = [modelled[k][0] for k in fit_on]
        draws = []
        for j in range(len(signs)):
            if j == acc:
                known_y = {k: float(self._y(np.array([v]), signs[j], logs[j])[0])
                           for k, v in known.items()}
                draws.append(self._accuracy_draws(cand, known_y, ("objective", j)))
                continue
            prior = self._prior[j] if self._prior is not None else None
            gp = GP(self.encoder.groups, self._scales.get(("objective", j)))
            gp.fit(self.features[idx], ys[fit_on, j], None if prior is None else prior[idx],
                   sweeps=self._sweeps(("objective", j), len(idx)))
            self._scales[("objective", j)] = gp.scales
            mean, cov = gp.posterior(self.features[cand],
                                     None if prior is None else prior[cand])
            draws.append(joint_draws(mean, cov, self._rng, self.samples))
        # every measured point counts as a rival, whatever the GPs were fitted on
        front = front_probability(np.stack(draws, -1), ys[feasible_obs])
        return front, self._feasibility(fit_obs, cand, known, acc), draws

    @staticmethod
    def _y(raw: np.ndarray, sign: float, log: bool) -> np.ndarray:
        """A told value in "smaller is better" units, log where every value is positive."""
        return sign * (np.log(raw) if log else raw)

    def _accuracy_index(self, study: optuna.Study) -> int | None:
        want, n = self.accuracy_objective, len(study.directions)
        if want is None or n < 2:
            return None
        if isinstance(want, int):
            return want % n
        names = study.metric_names
        if names is None:
            return n - 1  # the driver's and the benchmark's order: speed, accuracy
        return names.index(want) if want in names else None

    def _known(self, modelled, acc: int | None) -> dict[tuple, float]:
        """accuracy key -> accuracy: the given, overridden by this study's own (mean per key)."""
        if acc is None:
            return {}
        given = self.known_accuracy() if callable(self.known_accuracy) else self.known_accuracy
        own: dict[tuple, list[float]] = {}
        for i, t in modelled:
            own.setdefault(self.acc_keys[i], []).append(float(t.values[acc]))
        return {**dict(given or {}), **{k: sum(v) / len(v) for k, v in own.items()}}

    def after_trial(self, study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        """Adds a measured accuracy to a shared ``AccuracyBook`` (other studies read it)."""
        super().after_trial(study, trial, state, values)
        add = getattr(self.known_accuracy, "add", None)
        acc = self._accuracy_index(study)
        if add is None or acc is None or state != TrialState.COMPLETE or not values:
            return
        if trial.user_attrs.get("state") == "failed" or not real(values):
            return
        index = self.trial_index(trial)
        key = self.acc_keys[index] if index is not None else self.space.accuracy_key(trial.params)
        add(key, float(values[acc]), f"{study.study_name}#{trial.number}")

    def _acc_x(self, keys: Sequence[tuple]) -> np.ndarray:
        missing = [k for k in keys if k not in self._acc_features]
        if missing:
            for k, row in zip(missing, self.acc_encoder.encode([dict(k) for k in missing])):
                self._acc_features[k] = row
        return np.array([self._acc_features[k] for k in keys]).reshape(len(keys), -1)

    def _key_gp(self, values: Mapping[tuple, float], model: tuple) -> GP:
        """A GP over the accuracy dims on one value per accuracy key (at most MAX_OBSERVED)."""
        keys = list(values)
        if len(keys) > MAX_OBSERVED:
            keys = [keys[k] for k in self._rng.choice(len(keys), MAX_OBSERVED, replace=False)]
        gp = GP(self.acc_encoder.groups, self._scales.get(model))
        gp.fit(self._acc_x(keys), np.array([values[k] for k in keys]),
               sweeps=self._sweeps(model, len(keys)))
        self._scales[model] = gp.scales
        return gp

    def _accuracy_draws(self, cand: list[int], known_y: dict[tuple, float],
                        model: tuple) -> np.ndarray:
        """(samples, candidates): a known key's value in every draw; the unknown keys drawn
        jointly, once per key, so points sharing a key share its draw."""
        keys = [self.acc_keys[i] for i in cand]
        out = np.array([known_y.get(k, 0.0) for k in keys])[None, :].repeat(self.samples, 0)
        unknown = sorted({k for k in keys if k not in known_y})
        if unknown:
            mean, cov = self._key_gp(known_y, model).posterior(self._acc_x(unknown))
            drawn = joint_draws(mean, cov, self._rng, self.samples)
            col = {k: c for c, k in enumerate(unknown)}
            where = [c for c, k in enumerate(keys) if k in col]
            out[:, where] = drawn[:, [col[keys[c]] for c in where]]
        return out

    def _verdict(self, trial: FrozenTrial) -> tuple[bool, bool]:
        """(measured, feasible) of a finished trial, judged once (not at every ask)."""
        verdict = self._verdicts.get(trial._trial_id)
        if verdict is None:
            is_measured = measured(trial)
            verdict = (is_measured, is_measured and constraints_met(trial))
            if trial.state.is_finished():
                self._verdicts[trial._trial_id] = verdict
        return verdict

    def _sweeps(self, model: tuple, n: int, first: int = 2) -> int:
        """Length-scale sweeps for a GP on ``n`` trials: ``first``, then one at every ask while
        the study is small, later once the trials grew by a tenth (a refit is costly)."""
        last = self._fitted_n.get(model)
        if last is not None and n >= REFIT_ALWAYS_BELOW and n < REFIT_GROWTH * last:
            return 0
        self._fitted_n[model] = n
        return first if last is None else 1

    def _spread(self, obs, free: list[int]) -> int:
        """Start-up: the free point farthest from everything measured or chosen (with a
        prior too: measuring its front first found this platform's differences later)."""
        taken = [i for i, _ in obs] + [self._index[self.space.key(p)]
                                       for p in self._chosen.values()]
        if not taken:
            return int(free[self._rng.randint(len(free))])
        d = ((self.features[free][:, None, :] - self.features[taken][None, :, :]) ** 2).sum(-1)
        nearest = d.min(1) + 1e-9 * self._rng.rand(len(free))
        return int(free[int(np.argmax(nearest))])

    def _feasibility(self, obs, cand: list[int], known: dict, acc: int | None) -> np.ndarray:
        """P(every constraint <= 0), one GP per constraint on its told values; a trial with no
        measurement counts as violating every constraint but the accuracy ones, modelled
        per accuracy key over the accuracy dims (``_accuracy_feasibility``)."""
        prob = np.ones(len(cand))
        names = {n for _, t in obs for n in (t.constraints or {})}
        accuracy = sorted(names & self.accuracy_constraints) if acc is not None else []
        general = sorted(names - set(accuracy))
        if not general and any(not self._verdict(t)[0] for _, t in obs):
            general = [None]  # no constraint says it: learn where trials fail to measure
        for name in general:
            idx, vals = [], []
            for i, t in obs:
                value = (t.constraints or {}).get(name) if name is not None else 0.0
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
            prob *= p_below(-mean, np.sqrt(var + 1e-4 * (vals.std() ** 2 or 1.0)))
        for name in accuracy:
            prob *= self._accuracy_feasibility(name, obs, cand, known, acc)
        return prob

    def _accuracy_feasibility(self, name: str, obs, cand: list[int], known: dict,
                              acc: int) -> np.ndarray:
        """P(floor - accuracy <= 0) per candidate: settled where its key was told the
        constraint; where only its accuracy is known, against the floor (told constraint +
        accuracy: constant, or a GP over the accuracy dims); else a GP of the constraint."""
        told: dict[tuple, list[float]] = {}
        floors: dict[tuple, list[float]] = {}
        for i, t in obs:
            value = (t.constraints or {}).get(name)
            if value is None or not self._verdict(t)[0]:
                continue
            told.setdefault(self.acc_keys[i], []).append(float(value))
            floors.setdefault(self.acc_keys[i], []).append(float(value) + t.values[acc])
        keys, prob = [self.acc_keys[i] for i in cand], np.ones(len(cand))
        if not told:
            return prob
        told_m = {k: float(np.mean(v)) for k, v in told.items()}
        floor_m = {k: float(np.mean(v)) for k, v in floors.items()}
        floor_vals = np.array(list(floor_m.values()))
        const = floor_vals.max() - floor_vals.min() <= 1e-9 * (abs(floor_vals).max() + 1.0)
        by_floor = [c for c, k in enumerate(keys) if k not in told_m and k in known]
        if by_floor and const:
            prob[by_floor] = [float(floor_vals[0] - known[keys[c]] <= 0) for c in by_floor]
        elif by_floor:
            mean, var = self._key_gp(floor_m, ("floor", name)).posterior(
                self._acc_x([keys[c] for c in by_floor]), joint=False)
            have = np.array([known[keys[c]] for c in by_floor])
            prob[by_floor] = p_below(have - mean, np.sqrt(var + 1e-12))
        rest = [c for c, k in enumerate(keys) if k not in told_m and k not in known]
        vals = np.array(list(told_m.values()))
        if rest and len(vals) >= 2 and not (vals <= 0).all():
            mean, var = self._key_gp(told_m, ("constraint", name)).posterior(
                self._acc_x([keys[c] for c in rest]), joint=False)
            prob[rest] = p_below(-mean, np.sqrt(var + 1e-4 * (vals.std() ** 2 or 1.0)))
        for c, k in enumerate(keys):
            if k in told_m:
                prob[c] = float(told_m[k] <= 0)
        return prob


__all__ = ["FrontSampler", "front_probability"]
