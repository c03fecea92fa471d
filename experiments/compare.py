"""Fronts of other runs (imported published results, earlier runs) to draw beside a run's own.

A study's own front is compared with the other runs' fronts of the same task and kind of
device: the same accuracy metric (never mAP beside top-1) and speed objective, on the same
platform where the other run has one, else on every platform (a different device, named as
such in the legend).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from experiments.emulated import is_emulated_platform
from experiments import pareto
from experiments.mlperf import PROMOTED, REPRODUCE
from experiments.objectives import DEFAULT_METRIC, metric_of

NOT_SEARCH = (*PROMOTED, REPRODUCE)  # re-measurements of points a search already found


@dataclass
class OtherFront:
    run: str  # the other run's folder name
    study: str
    platform: str
    objective: str
    rows: list[dict[str, Any]]
    same_platform: bool = True
    metric: str = DEFAULT_METRIC  # the accuracy metric

    @property
    def label(self) -> str:
        where = "" if self.same_platform else " (other device)"
        return f"{self.study} [{self.run}]{where}"


def load(run_dirs: Iterable[str | Path]) -> list[OtherFront]:
    """Every study front of each run (its search rows: short, replay, published)."""
    from experiments.records import read

    out = []
    for run_dir in run_dirs:
        rows = read(run_dir).to_pylist()
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if r["fidelity"] not in NOT_SEARCH:
                groups.setdefault(r["study"], []).append(r)
        for study, group in sorted(groups.items()):
            objective = group[0]["objective"]
            front = pareto.front(group, objective)
            if front:
                out.append(OtherFront(Path(run_dir).resolve().name, study,
                                      group[0]["platform"], objective, front,
                                      metric=metric_of(group)))
    return out


def matching(others: list[OtherFront], platform: str, objective: str,
             metric: str = DEFAULT_METRIC) -> list[OtherFront]:
    """The other fronts to draw beside a study of ``platform`` optimising ``objective``
    with accuracy ``metric``."""
    # an emulated platform's latencies and a device's are never drawn as comparable
    alike = [o for o in others if o.objective == objective and o.metric == metric
             and is_emulated_platform(o.platform) == is_emulated_platform(platform)]
    same = [o for o in alike if o.platform == platform]
    if same:
        return same
    return [OtherFront(o.run, o.study, o.platform, o.objective, o.rows, same_platform=False,
                       metric=o.metric) for o in alike]
