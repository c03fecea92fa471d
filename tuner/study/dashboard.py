"""python -m tuner dashboard RUN_DIR: optuna-dashboard on a run's journal, feasible front only.

optuna-dashboard (0.21) misreads a constrained study in two ways. Its best trials (the
"Best Trials" card, the trial list's best filter, ``best_trials`` in its API) are the
front of every complete trial, constraints aside (optuna/optuna-dashboard#772); and its
Pareto-front plot reads only the classic ``constraints`` list of a trial, while Optuna 5's
``set_constraint`` stores one ``constraints:<name>`` attr per constraint. The journal keeps
the named form only: the front sampler reads the accuracy floor by name, and a classic copy
beside it would count every constraint twice (Optuna merges both forms). So this view
serves the dashboard with the classic list added to each trial it reads and its best trials
computed over the feasible trials, as ``study.best_trials`` does. Nothing is written to the
journal by the view itself.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

CLASSIC = "constraints"  # the system attr optuna-dashboard reads


def with_classic_constraints(trial):
    """The trial as the dashboard should see it: its constraints also as the classic list."""
    named = trial.constraints  # Optuna's reading of both forms, by name
    if not named or CLASSIC in trial.system_attrs:
        return trial
    out = copy.copy(trial)
    out._system_attrs = {**trial.system_attrs, CLASSIC: [named[k] for k in sorted(named)]}
    return out


def feasible(trials):
    return [t for t in trials if all(v <= 0.0 for v in t.constraints.values())]


def _patch_dashboard():
    """Make optuna-dashboard's own views constraint-aware (idempotent); the names patched
    are the module globals its request handlers look up at each call."""
    try:
        from optuna_dashboard import _app
    except ImportError:
        raise SystemExit("error: optuna-dashboard is not installed: pip install optuna-dashboard")
    if getattr(_app, "_tuner_feasible", False):
        return _app
    if not all(hasattr(_app, n) for n in ("get_trials", "get_pareto_front_trials")):
        import optuna_dashboard

        raise SystemExit(f"error: optuna-dashboard {optuna_dashboard.__version__} is not "
                         "the layout this view knows (0.21): pip install optuna-dashboard==0.21.0")
    read_trials, front = _app.get_trials, _app.get_pareto_front_trials
    _app.get_trials = lambda *a, **k: [with_classic_constraints(t) for t in read_trials(*a, **k)]
    _app.get_pareto_front_trials = lambda trials, directions: front(feasible(trials), directions)
    _app._tuner_feasible = True
    return _app


def feasible_app(storage):
    """optuna-dashboard's WSGI app over ``storage``, its front the feasible one."""
    from optuna_dashboard import wsgi

    _patch_dashboard()
    return wsgi(storage)


def open_run(run_dir: str | Path):
    from tuner.study.journal import JOURNAL, open_journal

    run_dir = Path(run_dir)
    if not (run_dir / JOURNAL).is_file():
        raise SystemExit(f"error: no {JOURNAL} in {run_dir} (is it a tuner run dir?)")
    return open_journal(run_dir)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tuner dashboard",
        description="optuna-dashboard on a run's study.journal, with only feasible trials "
                    "on its front and among its best trials")
    parser.add_argument("run_dir", help="the run directory (holds study.journal)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    storage = open_run(args.run_dir)
    _patch_dashboard()
    from optuna_dashboard import run_server

    print(f"optuna-dashboard on {args.run_dir}: http://{args.host}:{args.port}/", file=sys.stderr)
    run_server(storage, host=args.host, port=args.port)
    return 0
