"""One platform's study as the driver steps it: its Optuna study, its target, the points it
measured, and why it stopped."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna

from tuner.study.plan import PlatformPlan
from tuner.study.scheduler import Lane
from tuner.trial import TrialConfig

# Proposals in a row that repeat measured points before a study counts its space as used
# up even where the space's size is unknown (float dimensions).
MAX_REPEATS_IN_A_ROW = 200


@dataclass
class PlatformStudy:
    plan: PlatformPlan
    name: str
    study: optuna.Study
    target: int  # trials to finish in total, earlier runs included
    finished: int = 0
    best: str = ""
    measured: dict[tuple, int] = field(default_factory=dict)  # space.key -> trial number
    repeats_in_a_row: int = 0
    cached: int = 0  # proposals answered from the records
    size: int | None = None  # points in its space (None: a float dimension, no grid)
    ended: str = ""  # why the study stopped before its target
    lane: Lane | None = None  # its devices in the scheduler
    # asked trials waiting for another trial measuring the same accuracy key
    held: list[tuple[Any, TrialConfig]] = field(default_factory=list)

    @property
    def platform(self) -> str:
        return self.plan.platform

    def check_exhausted(self) -> None:
        """End the study when its finite space is measured, or proposals keep repeating."""
        if self.size is not None and len(self.measured) >= self.size and not self.lane.inflight:
            self.ended = f"space exhausted: all {self.size} points measured"
        elif self.repeats_in_a_row >= MAX_REPEATS_IN_A_ROW:
            self.ended = (f"space exhausted: {MAX_REPEATS_IN_A_ROW} proposals in a row were "
                          "points already measured")
