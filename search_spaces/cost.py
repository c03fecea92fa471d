"""What a point costs to measure, so a search buys the front with the least device time.

A trial's cost is the device seconds it took (the driver tells it as the trial's user
attribute ``duration_s``). The runtime decides most of it: on the default digits study an
untuned TVM trial (compile, slow accuracy pass) took ~30 s where an ONNX Runtime or LiteRT
trial took ~1.5 s. So a point's expected cost is the median duration of its runtime's
trials so far (a runtime not yet tried: the median of all trials), and the front sampler
ranks points by P(on the front) x P(feasible) per expected second, the expected
improvement per unit cost of Snoek et al. (2012). Without durations (a replayed table)
every point costs the same and nothing changes.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from search_spaces.space import BACKEND

COST_ATTR = "duration_s"


def expected_costs(points: Sequence[Mapping[str, Any]],
                   measured: Iterable[tuple[Mapping[str, Any], float]]) -> np.ndarray:
    """Per point, its runtime's median trial duration so far, relative to the median of
    all trials (1.0 where nothing is known); ``measured``: (params, duration_s) pairs."""
    by_runtime: dict[Any, list[float]] = {}
    every: list[float] = []
    for params, seconds in measured:
        if seconds is not None and np.isfinite(seconds) and seconds > 0:
            by_runtime.setdefault(params.get(BACKEND), []).append(float(seconds))
            every.append(float(seconds))
    if not every:
        return np.ones(len(points))
    overall = float(np.median(every))
    median = {runtime: float(np.median(v)) for runtime, v in by_runtime.items()}
    return np.array([median.get(p.get(BACKEND), overall) / overall for p in points])


def trial_cost(trial) -> float | None:
    """The device seconds a told trial took, if the driver said."""
    value = trial.user_attrs.get(COST_ATTR)
    return float(value) if value is not None else None
