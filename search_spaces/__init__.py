"""Search spaces: typed, conditional dimensions turned into Optuna suggestions."""
from search_spaces.space import BACKEND, Dim, SearchSpace, TrialParams

__all__ = ["BACKEND", "Dim", "SearchSpace", "TrialParams"]
