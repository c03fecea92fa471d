"""How a trial's result becomes a record: its state and cause, its logs on disk, its row.

One path for the study, promote and reproduce alike, so every command classifies a
result the same way (``reproduce --no-record`` computes the same row and does not store it).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments import noise
from experiments.mlperf import PUBLISHED, REPLAY, SHORT, SIMULATED
from experiments.records import Records
from tuner.accuracy.floor import AccuracyFloor
from tuner.accuracy.planner import accuracy_key
from tuner.trial import TrialConfig, TrialResult

# Fidelities whose figures were not measured on a device by this run: no logs to write.
NOT_MEASURED = (REPLAY, PUBLISHED, SIMULATED)


def classify(result: TrialResult, floor: float) -> tuple[str, str | None]:
    """(state, cause): failed (no measurement), infeasible (INVALID or below the floor),
    or complete."""
    if not result.ok:
        return "failed", result.cause
    if not result.valid:
        return "infeasible", result.cause or "LoadGen run INVALID"
    low, high = result.accuracy_low, result.accuracy_high
    if low is not None and high is not None and low < floor <= high:
        return "undecided", (f"accuracy {result.accuracy:.4f} [{low:.4f}, {high:.4f}] "
                             f"straddles floor {floor:.4f}")
    if result.accuracy is not None and (high if high is not None else result.accuracy) < floor:
        return "infeasible", f"accuracy {result.accuracy:.4f} below floor {floor:.4f}"
    return "complete", result.cause


def log_folder(study: str, trial: int, fidelity: str, subdir: str = "") -> Path:
    """Where a record's logs go, relative to the run dir: ``trials/<study>/<trial>/<fidelity>``
    (plus a scenario or a reproduce count for promotion and reproduce runs)."""
    rel = Path("trials") / study / f"{trial:05d}" / fidelity
    return rel / subdir if subdir else rel


def write_logs(run_dir: Path, rel: Path, logs: dict[str, str]) -> str:
    for name, text in logs.items():
        path = run_dir / rel / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(rel)


def make_row(tcfg: TrialConfig, result: TrialResult, *, floor: float, objective: str,
             fidelity: str, log_dir: str, node_sigma: float = noise.PRIOR_SIGMA) -> dict[str, Any]:
    state, cause = classify(result, floor)
    sigma = noise.record_sigma(float(result.system.get("windows_log_sd") or 0.0),
                               result.windows, node_sigma)
    bounds = {}
    for column, value in (("latency_ms", result.latency_ms), ("qps", result.qps)):
        low, high = noise.prediction(value, sigma) if value else (None, None)
        bounds.update(zip(noise.BOUNDS[column], (low, high)))
    return {
        "study": tcfg.study, "trial": tcfg.trial, "state": state, "fidelity": fidelity,
        "platform": tcfg.platform, "node": result.node, "backend": tcfg.backend,
        "model": result.model_name, "scenario": tcfg.scenario, "objective": objective,
        "params": json.dumps(tcfg.params, sort_keys=True),
        # an INVALID run may log no latency as 0: never a real figure
        "latency_ms": result.latency_ms or None, "p90_latency_ms": result.p90_latency_ms or None,
        "qps": result.qps, **bounds, "windows": result.windows,
        "measured_for": tcfg.measured_for, "repeat_of": tcfg.repeat_of,
        "accuracy": result.accuracy,
        "accuracy_metric": result.accuracy_metric,
        "accuracy_extras": json.dumps(result.accuracy_extras) if result.accuracy_extras else None,
        "accuracy_source": result.accuracy_source, "accuracy_low": result.accuracy_low,
        "accuracy_high": result.accuracy_high, "accuracy_samples": result.accuracy_total,
        "accuracy_key": accuracy_key(tcfg), "accuracy_from": result.accuracy_from,
        "accuracy_floor": floor,
        "valid": bool(result.valid), "cause": cause, "started_at": result.started_at,
        "duration_s": result.duration_s, "log_dir": log_dir,
        "config": json.dumps(tcfg.to_dict(), sort_keys=True, default=str),
        "system": json.dumps({**result.system, "settings": result.settings}, default=str),
        "source": result.source,
    }


class Recorder:
    """Turns results into rows of a run's records (and their logs into files)."""

    def __init__(self, run_dir: Path, records: Records, floor: AccuracyFloor,
                 noise_prior: float = noise.PRIOR_SIGMA):
        self.run_dir, self.records, self.floor = Path(run_dir), records, floor
        self.noise_prior = float(noise_prior)
        for row in records.rows:
            floor.observe(row)

    def row(self, tcfg: TrialConfig, result: TrialResult, objective: str, *,
            subdir: str = "", store: bool = True, fidelity: str | None = None) -> dict[str, Any]:
        """The record of ``result``; stored (logs written, row added) unless ``store`` is
        false. The fidelity is the one given (reproduce), else the result's own (replay,
        simulated), else the config's."""
        fidelity = fidelity or result.fidelity or tcfg.fidelity.name
        log_dir = ""
        if store and fidelity not in NOT_MEASURED:
            log_dir = write_logs(self.run_dir, log_folder(tcfg.study, tcfg.trial, fidelity,
                                                          subdir), result.logs)
        speed = objective if objective in noise.BOUNDS else "latency_ms"
        same = [r for r in self.records.rows if r["fidelity"] == fidelity]
        sigma = noise.node_sigma(same, speed, self.noise_prior).get(result.node, self.noise_prior)
        row = make_row(tcfg, result, floor=self.floor.value(tcfg.study), objective=objective,
                       fidelity=fidelity, log_dir=log_dir, node_sigma=sigma)
        if fidelity != SHORT:  # promotion closes the loop: did the short interval hold?
            row["within_short_interval"] = noise.within_short_interval(
                self.records.rows, row, speed, self.noise_prior)
        if store:
            self.records.add(row)
            self.floor.observe(row)
        return row
