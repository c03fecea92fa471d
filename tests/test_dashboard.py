"""optuna-dashboard on a run's journal shows exactly the feasible front, read through its
own JSON API (plain WSGI calls, no server), on a study told by the driver's own ``_tell``."""
from __future__ import annotations

import io
import json
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from tuner.study.telling import tell
from tuner.study.journal import open_journal

pytest.importorskip("optuna_dashboard")

FLOOR = 0.9
# (latency_ms, accuracy, valid, state): the unconstrained front would be 1, 4 and 6
POINTS = [(10.0, 0.95, True, "complete"),
          (5.0, 0.85, True, "infeasible"),  # under the floor
          (20.0, 0.97, True, "complete"),
          (8.0, 0.92, True, "complete"),
          (3.0, 0.99, False, "infeasible"),  # an INVALID LoadGen run
          (12.0, 0.93, True, "complete"),  # dominated by trial 0
          (None, None, False, "failed")]
FEASIBLE_FRONT = [0, 2, 3]


def told_study(run_dir):
    storage = open_journal(run_dir)
    study = optuna.create_study(study_name="s.x8664", storage=storage,
                                directions=["minimize", "maximize"])
    for latency, accuracy, valid, state in POINTS:
        row = {"latency_ms": latency, "accuracy": accuracy, "valid": valid, "state": state,
               "accuracy_floor": FLOOR, "cause": None if state == "complete" else state}
        tell(study, study.ask(), row, "latency_ms", costs_device_time=True)
    return storage, study


def get(app, path: str):
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, headers, exc=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


def best_numbers(app) -> list[int]:
    (study,) = get(app, "/api/studies")["study_summaries"]
    detail = get(app, f"/api/studies/{study['study_id']}")
    return sorted(t["number"] for t in detail["best_trials"]), detail


def test_the_dashboard_lists_exactly_the_feasible_front(tmp_path):
    from optuna_dashboard import wsgi

    from tuner.study.dashboard import feasible_app, open_run

    storage, study = told_study(tmp_path)
    assert sorted(t.number for t in study.best_trials) == FEASIBLE_FRONT  # Optuna's own
    plain, _ = best_numbers(wsgi(storage))
    assert set(plain) - set(FEASIBLE_FRONT), "plain optuna-dashboard reads the front right now"

    best, detail = best_numbers(feasible_app(open_run(tmp_path)))
    assert best == FEASIBLE_FRONT
    # the Pareto-front plot (drawn in the browser) splits trials by the classic list
    by_number = {t["number"]: t["constraints"] for t in detail["trials"]}
    feasible = sorted(n for n, c in by_number.items() if c and all(v <= 0 for v in c))
    assert feasible == [0, 2, 3, 5]


def test_dashboard_command_refuses_a_folder_without_a_journal(tmp_path):
    from tuner.study.dashboard import main

    with pytest.raises(SystemExit, match="no study.journal"):
        main([str(tmp_path)])
