"""The progress bar of a study run: trials done per platform, the best so far, time left."""
from __future__ import annotations

from typing import Any

from experiments.mlperf import REPLAY, SHORT
from experiments.objectives import metric_of
from experiments.objectives import objective as objective_of


class StudyProgress:
    def __init__(self, studies: list[Any], console=None, enabled: bool = True):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("left"),
                             TimeRemainingColumn(), console=console, disable=not enabled)
        self._studies = studies
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> "StudyProgress":
        self._bar.__enter__()
        self._tasks = {ps.name: self._bar.add_task(ps.name, total=ps.target,
                                                   completed=ps.finished)
                       for ps in self._studies}
        return self

    def update(self, ps: Any) -> None:
        extra = f" ({ps.cached} repeats answered from the records)" if ps.cached else ""
        self._bar.update(self._tasks[ps.name], completed=ps.finished, total=ps.target,
                         description=f"{ps.name} {ps.best}{extra}")

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)


def best_text(rows: list[dict[str, Any]], study: str, objective: str) -> str:
    """The progress line's best feasible search result so far, in the task's metric."""
    done = [r for r in rows if r["study"] == study and r["state"] == "complete"
            and r["fidelity"] in (SHORT, REPLAY)]
    if not done:
        return "(no feasible trial yet)"
    speed = objective_of(objective)
    best = (max if speed.maximize else min)(done, key=lambda r: r[objective])
    return f"best {best[objective]:.3g} {speed.unit} @ {metric_of(done)} {best['accuracy']:.3f}"
