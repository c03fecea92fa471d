"""What Optuna is told of a record: its objectives (or their penalties), its constraints
(feasible when every one is <= 0, Optuna's convention) and what the samplers read beside
them (its state, cause and device time)."""
from __future__ import annotations

from typing import Any

import optuna

from experiments.objectives import ACCURACY
from experiments.objectives import objective as objective_of
from search_spaces.cost import COST_ATTR


def tell(study: optuna.Study, trial: optuna.trial.Trial, row: dict[str, Any], objective: str,
         costs_device_time: bool) -> None:
    """``costs_device_time``: the row was measured now on a device (a replay's answer or a
    repeat answered from the records costs nothing). A row with no measurement is told each
    objective's penalty (worse than any real value), so the sampler learns the region is
    bad (a FAIL state would be ignored and proposed again)."""
    speed, accuracy = row[objective], row["accuracy"]
    measured = row["state"] != "failed" and speed is not None and accuracy is not None
    values = [speed, accuracy] if measured else [objective_of(objective).penalty,
                                                 ACCURACY.penalty]
    floor = row["accuracy_floor"] or 0.0
    # an undecided point (its interval straddles the floor) is told by the low end of its
    # interval: not feasible until shown to be
    low = row.get("accuracy_low") if row["state"] == "undecided" else None
    told = low if low is not None else (accuracy if accuracy is not None else 0.0)
    trial.set_constraint("accuracy_floor", floor - told)
    trial.set_constraint("loadgen_valid", 0.0 if row["valid"] else 1.0)
    trial.set_user_attr("state", row["state"])
    if costs_device_time and row.get("duration_s") is not None:
        trial.set_user_attr(COST_ATTR, float(row["duration_s"]))  # what the next points cost
    if row["cause"]:
        trial.set_user_attr("cause", row["cause"][:500])
    study.tell(trial, values, skip_if_finished=True)
