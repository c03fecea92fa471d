"""Samplers by name.

``make_sampler(kind, seed, space=...)`` is what a study asks for (``study.sampler``):

- ``front`` (default): ``FrontSampler``, a surrogate model that asks for the point most
  likely to be on the true latency/accuracy front; never repeats a measured point.
- ``tpe``: Optuna's multivariate, grouped TPE (the earlier default).
- ``nsga2``: Optuna's NSGA-II.
- ``random``: a random order of the space's points without repeats (a fair baseline).
- ``grid``: the space's points in grid order, without repeats (the exhaustive baseline).

The point samplers' base (``PointSampler``) lives in ``point_sampler``; this module sits
above it and above ``front_sampler``, which import nothing of it (no import cycle).
"""
from __future__ import annotations

import optuna
from optuna.samplers import BaseSampler

from search_spaces.accuracy import AccuracyBook
from search_spaces.front_sampler import FrontSampler
from search_spaces.point_sampler import GridOrderSampler, PointSampler, RandomOrderSampler
from search_spaces.space import SearchSpace

SAMPLERS = ("front", "tpe", "nsga2", "random", "grid")
DEFAULT_SAMPLER = "front"


def make_sampler(kind: str, seed: int | None, space: SearchSpace | None = None,
                 warm_start=None, known_accuracy=None, **options) -> BaseSampler:
    """The sampler named ``kind`` (one of ``SAMPLERS``). ``space`` is needed by the point
    samplers (front, random, grid); ``warm_start`` (a ``WarmStart`` plan) gives the front
    sampler its latency prior and its known accuracies; ``known_accuracy`` (an
    ``AccuracyBook`` shared by a fleet's platform studies, a mapping accuracy key ->
    accuracy, or a callable returning one) tells it which accuracies are known already
    (see ``front_sampler``). A space with a float dimension gets TPE for front/random/grid;
    the other samplers ignore ``warm_start`` and ``known_accuracy``."""
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
    prior = warm_start.prior if warm_start is not None else None
    if warm_start is not None and warm_start.known_accuracy:
        if known_accuracy is None:
            known_accuracy = AccuracyBook()
        if isinstance(known_accuracy, AccuracyBook):
            known_accuracy.merge(warm_start.known_accuracy)
        else:  # a plain mapping or a provider: ask both, the caller's figures first
            known_accuracy = _chained(known_accuracy, warm_start.known_accuracy)
    return FrontSampler(space, seed, prior=prior, known_accuracy=known_accuracy, **options)


def _chained(first, second):
    def known():
        base = first() if callable(first) else first
        return {**second, **base}
    return known


__all__ = ["DEFAULT_SAMPLER", "SAMPLERS", "GridOrderSampler", "PointSampler",
           "RandomOrderSampler", "make_sampler"]
