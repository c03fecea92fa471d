"""The accuracy floor of a study: a fixed figure, else a fraction of its fp32 reference."""
from __future__ import annotations

from typing import Any

from tuner.accuracy.reference import Fp32Reference


class AccuracyFloor:
    """A fixed figure, else ``fraction`` x the study's fp32 reference recorded so far
    (MLPerf's "99% of the reference"; ``Fp32Reference`` says which rows count). The
    reference is the one the accuracy planner pairs with: fed here, by the recorder."""

    def __init__(self, fixed: float | None, fraction: float):
        self.fixed, self.fraction = fixed, float(fraction)
        self.reference = Fp32Reference()

    def observe(self, row: dict[str, Any]) -> None:
        self.reference.observe(row)

    def value(self, study: str) -> float:
        if self.fixed is not None:
            return self.fixed
        return self.fraction * (self.reference.best(study) or 0.0)
