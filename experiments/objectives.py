"""The objectives of a study, as data: which record column, its unit, which way is better.

One table for the driver (Optuna's directions and metric names), the fronts, the reports,
the fleet page, the results table and promotion. The accuracy objective is the task's own
metric (top1, mAP, AUC), named in each record's ``accuracy_metric``; its column is always
``accuracy`` (a fraction in 0-1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class Objective:
    column: str  # the records' column
    label: str  # what axes and tables call it
    unit: str
    maximize: bool
    penalty: float  # what an unmeasured trial is told (the worst value)

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"

    def axis_title(self) -> str:
        better = "higher" if self.maximize else "lower"
        unit = f"{self.unit}, " if self.unit else ""
        return f"{self.label} ({unit}{better} is better)"

    def best(self, values: Iterable[float]) -> float:
        return (max if self.maximize else min)(values)


LATENCY = Objective("latency_ms", "latency", "ms", maximize=False, penalty=1e9)
THROUGHPUT = Objective("qps", "throughput", "samples/s", maximize=True, penalty=0.0)
ACCURACY = Objective("accuracy", "accuracy", "", maximize=True, penalty=0.0)
OBJECTIVES = {o.column: o for o in (LATENCY, THROUGHPUT, ACCURACY)}
DEFAULT_METRIC = "top1"  # records written before the metric was named were classification


def objective(column: str) -> Objective:
    return OBJECTIVES[column]


def metric_of(rows: Iterable[dict[str, Any]]) -> str:
    """The accuracy metric of a set of records (one study is one task)."""
    for row in rows:
        if row.get("accuracy_metric"):
            return str(row["accuracy_metric"])
    return DEFAULT_METRIC


def accuracy_title(metric: str) -> str:
    """The accuracy axis of a report: the task's metric by name."""
    return f"{metric} (higher is better)"
