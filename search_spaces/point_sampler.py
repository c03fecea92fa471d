"""The base of samplers that pick a whole point of a finite space, and two baselines.

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
