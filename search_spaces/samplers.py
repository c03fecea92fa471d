"""Samplers by name, and the base of those that pick a whole point of a finite space.

``make_sampler(kind, seed, space=...)`` is what a study asks for (``study.sampler``):

- ``front`` (default): ``FrontSampler``, a surrogate model that asks for the point most
  likely to be on the true latency/accuracy front; never repeats a measured point.
- ``tpe``: Optuna's multivariate, grouped TPE (the earlier default).
- ``nsga2``: Optuna's NSGA-II.
- ``random``: a random order of the space's points without repeats (a fair baseline).
- ``grid``: the space's points in grid order, without repeats (the exhaustive baseline).

Lifecycle of a ``PointSampler`` (Optuna calls it so): ``before_trial`` picks the whole
point (every active dimension) for the new trial, unless the trial was enqueued;
``SearchSpace.suggest`` then asks dimension by dimension and ``sample_independent``
answers from that point; ``after_trial`` forgets it. Picking the whole point at once is
what lets a sampler respect conditional dimensions and skip points already measured.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from search_spaces.space import SearchSpace

SAMPLERS = ("front", "tpe", "nsga2", "random", "grid")
DEFAULT_SAMPLER = "front"


class PointSampler(BaseSampler):
    """Base: choose one whole point per trial from the space's points (see module doc)."""

    def __init__(self, space: SearchSpace, seed: int | None = None):
        if not space.is_finite():
            raise ValueError(f"{type(self).__name__}: the space has a float dimension; "
                             "use study.sampler=tpe")
        self.space = space
        self.points = space.grid()
        self.keys = [space.key(p) for p in self.points]
        self._index = {k: i for i, k in enumerate(self.keys)}
        self._rng = np.random.RandomState(seed)
        self._fallback = RandomSampler(seed=seed)
        self._chosen: dict[int, dict[str, Any]] = {}
        self._finished: dict[int, int | None] = {}  # trial id -> point index, once final

    # --- what subclasses provide -------------------------------------------------------
    def choose(self, study: optuna.Study, trials: list[FrozenTrial],
               free: list[int]) -> int:
        """Index (into ``self.points``) of the next point, from the ``free`` indices (never
        measured nor in flight; never empty)."""
        raise NotImplementedError

    # --- Optuna's interface ------------------------------------------------------------
    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if "fixed_params" in trial.system_attrs:  # enqueued (a warm start): Optuna answers
            return
        trials = study.get_trials(deepcopy=False)
        taken = {self.trial_index(t) for t in trials
                 if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
                 and t.params}
        taken |= {self._index.get(self.space.key(p)) for p in self._chosen.values()}
        free = sorted(set(range(len(self.points))) - taken)
        if not free:  # exhausted: a repeat, which the driver answers from its records
            self._chosen[trial._trial_id] = self.points[self._rng.randint(len(self.points))]
            return
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        self._chosen[trial._trial_id] = self.points[self.choose(study, done, free)]

    def trial_index(self, trial: FrozenTrial) -> int | None:
        """Index of a trial's point in ``self.points`` (None: not one of them); remembered
        once the trial is finished (a study of 1000 trials would otherwise re-key every
        trial at every ask)."""
        if trial._trial_id in self._finished:
            return self._finished[trial._trial_id]
        index = self._index.get(self.space.key(trial.params))
        if trial.state.is_finished():
            self._finished[trial._trial_id] = index
        return index

    def sample_independent(self, study, trial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        point = self._chosen.get(trial._trial_id) or {}
        if param_name in point:
            value = point[param_name]
            if param_distribution._contains(param_distribution.to_internal_repr(value)):
                return value
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._chosen.pop(trial._trial_id, None)

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._fallback.reseed_rng()


class RandomOrderSampler(PointSampler):
    """Each point once, in a random order: the baseline a search must beat."""

    def choose(self, study, trials, free) -> int:
        return free[self._rng.randint(len(free))]


class GridOrderSampler(PointSampler):
    """Each point once, in the space's grid order: what measuring everything costs."""

    def choose(self, study, trials, free) -> int:
        return free[0]


def make_sampler(kind: str, seed: int | None, space: SearchSpace | None = None,
                 warm_start=None, **options) -> BaseSampler:
    """The sampler named ``kind`` (one of ``SAMPLERS``). ``space`` is needed by the point
    samplers (front, random, grid); ``warm_start`` (a ``WarmStart`` plan) gives the front
    sampler its prior. A space with a float dimension gets TPE for front/random/grid."""
    if kind not in SAMPLERS:
        raise ValueError(f"study.sampler: unknown sampler {kind!r} (choose from "
                         f"{', '.join(SAMPLERS)})")
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if kind == "tpe" or space is None or not space.is_finite():
        # group=True: TPE models each set of co-occurring (conditional) dims jointly;
        # constant_liar: parallel trials in flight are not proposed twice.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          constant_liar=True, n_startup_trials=8)
    if kind == "random":
        return RandomOrderSampler(space, seed)
    if kind == "grid":
        return GridOrderSampler(space, seed)
    from search_spaces.front_sampler import FrontSampler

    prior = warm_start.prior if warm_start is not None else None
    return FrontSampler(space, seed, prior=prior, **options)
