"""Search spaces: typed, conditional dimensions turned into Optuna suggestions, and the
samplers and warm start that search them; what is known of accuracy (``AccuracyBook``)."""
from search_spaces.accuracy import AccuracyBook
from search_spaces.samplers import DEFAULT_SAMPLER, SAMPLERS, make_sampler
from search_spaces.space import BACKEND, Dim, SearchSpace, TrialParams, canonical
from search_spaces.warm_start import WarmStart, plan_warm_start, project

__all__ = ["AccuracyBook", "BACKEND", "DEFAULT_SAMPLER", "Dim", "SAMPLERS", "SearchSpace",
           "TrialParams", "WarmStart", "canonical", "make_sampler", "plan_warm_start",
           "project"]
