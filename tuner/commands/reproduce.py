"""``python -m tuner reproduce RUN_DIR TRIAL``: re-measure one record's exact configuration.

The record's ``TrialConfig`` (its ``config`` JSON: same fidelity, same platform, same
dispatch path) is measured again; the old and new figures are printed side by side, and the
new record is stored with fidelity ``reproduce`` (logs under
``trials/<study>/<trial>/reproduce/<k>/``) unless ``--no-record``, which computes the same
row and stores nothing. Reproduce rows never enter a front or a submission: they are
evidence of run-to-run spread.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from experiments.mlperf import COMPLIANT, REDUCED, REPRODUCE, SHORT
from experiments.selection import parse_pick
from tuner.fleet.dispatch import RayDispatcher
from tuner.commands.remeasure import (Print, dispatch_for, load_run_config, measure_all, objective_of,
                             recorder, run_timeout_s, shown)
from tuner.trial import TrialConfig, TrialResult


FIGURES = ("state", "valid", "latency_ms", "p90_latency_ms", "qps", "accuracy", "node",
           "duration_s")


def find_record(rows: list[dict[str, Any]], pick: str, fidelity: str | None) -> dict[str, Any]:
    """The record to reproduce: --fidelity's, else the compliant one, else the short one."""
    study, number = parse_pick(pick)
    found = [r for r in rows if r["trial"] == number and study in (None, r["study"])]
    if len({r["study"] for r in found}) > 1:
        raise ValueError(f"trial {pick!r} is in several studies: use STUDY:N")
    for wanted in ([fidelity] if fidelity else [COMPLIANT, SHORT, REDUCED]):
        matches = [r for r in found if r["fidelity"] == wanted]
        if matches:
            return matches[-1]  # the latest measurement of that fidelity
    raise ValueError(f"no record for trial {pick!r}"
                     + (f" at fidelity {fidelity!r}" if fidelity else ""))


def side_by_side(old: dict[str, Any], new: dict[str, Any]) -> str:
    lines = [f"{'':16}{'recorded':>16}{'reproduced':>16}{'change':>10}"]
    for key in FIGURES:
        a, b = old.get(key), new.get(key)
        change = (f"{100 * (b - a) / a:+.1f}%" if isinstance(a, float) and isinstance(b, float)
                  and a and key != "duration_s" else "")
        lines.append(f"{key:16}{shown(a):>16}{shown(b):>16}{change:>10}")
    return "\n".join(lines)


def reproduce(run_dir: str | Path, pick: str, fidelity: str | None = None, record: bool = True,
              dispatcher: RayDispatcher | None = None, timeout_s: float | None = None,
              out: Print = print) -> tuple[dict[str, Any], dict[str, Any]]:
    """Re-measure a record's exact TrialConfig; returns (old row, new row)."""
    cfg = load_run_config(run_dir)
    rec = recorder(cfg)
    old = find_record(rec.records.rows, pick, fidelity)
    tcfg = TrialConfig.from_dict(json.loads(old["config"]))
    # a reproduction measures: an earlier trial's accuracy is not taken again
    tcfg.accuracy = replace(tcfg.accuracy, inherit=None)
    timeout_s = timeout_s or run_timeout_s(cfg, tcfg.fidelity)
    out(f"reproducing {old['study']} #{old['trial']} [{old['fidelity']}] {old['scenario']} "
        f"{old['model']} on platform {old['platform']} (recorded on node {old['node']})")
    dispatcher, own = dispatch_for(cfg, dispatcher, [old])
    results: list[TrialResult] = []
    try:
        measure_all(dispatcher, [tcfg], timeout_s, lambda _t, r: results.append(r))
    finally:
        if own:
            dispatcher.shutdown()
    (result,) = results
    count = sum(r["fidelity"] == REPRODUCE and r["study"] == old["study"]
                and r["trial"] == old["trial"] for r in rec.records.rows)
    # The same path as every record; --no-record computes the row and stores nothing.
    new = rec.row(tcfg, result, objective_of(old), subdir=str(count + 1), store=record,
                  fidelity=REPRODUCE)
    out(side_by_side(old, new))
    inside = new.get("within_short_interval")
    if inside is not None:
        out(f"{'inside' if inside else 'OUTSIDE'} the recorded configuration's 90% interval "
            "(its short runs)")
    if new.get("cause"):
        out(f"cause: {new['cause']}")
    return old, new
