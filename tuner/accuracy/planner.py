"""The driver's accuracy planner: what was measured, and how each trial's accuracy pass runs.
Accuracy belongs to the model and the runtime, not the device. (The search's own view of
it, what the samplers know per point, is ``search_spaces.AccuracyBook``, fed from the same
records.)

An accuracy key names what decides a model's outputs: the workload (dataset and its
count), the model parameters, the runtime, and the runtime knobs that may change outputs
(every knob but the runtime's ``OUTPUT_INVARIANT_KNOBS``: thread counts, say). The platform
is not part of it, so every platform study of a fleet, and every later run in the same run
directory, shares what one trial measured.

For each trial the planner writes ``TrialConfig.accuracy`` (``tuner.accuracy.passes`` runs it):

- the key was measured before, with an accuracy log on disk: inherit its figure after a
  spot check (the first ``spot_check_samples`` responses in the fixed shuffled order must
  be identical byte for byte);
- another trial is measuring the key right now: ``HOLD`` (the driver submits the trial once
  that one is recorded, so the fleet measures each key once);
- else a sequential pass against the floor, paired with the study's fp32 reference when
  its responses are on disk (``tuner.accuracy.reference``), with the study's front so far
  (a trial surely dominated by one of its points stops scoring).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import backends
from experiments import loadgen_logs, pareto, sequential
from experiments.objectives import OBJECTIVES
from tuner.accuracy.plan import AccuracyPlan, Front, Inherit, PairedReference
from tuner.accuracy.reference import Fp32Reference

HOLD = "hold"
MAX_PAIRED = 4096  # reference responses shipped with a trial, at most (sequential order)


class Trial(Protocol):
    """What the planner reads of a trial (a ``tuner.trial.TrialConfig``, which sits above
    this package: its ``accuracy`` field holds the plan made here)."""

    study: str
    trial: int
    workload: dict[str, Any]
    model: dict[str, Any]
    backend: str
    knobs: dict[str, Any]
    accuracy_sample_count: int | None


def accuracy_key(tcfg: Trial) -> str:
    """The record's ``accuracy_key``: a hash of what decides a model's outputs."""
    try:
        invariant = backends.get(tcfg.backend).OUTPUT_INVARIANT_KNOBS
    except KeyError:  # a replayed table's runtime name
        invariant = frozenset()
    knobs = {k: v for k, v in sorted(tcfg.knobs.items()) if k not in invariant}
    payload = json.dumps({"workload": tcfg.workload, "model": tcfg.model,
                          "runtime": tcfg.backend, "knobs": knobs,
                          "samples": tcfg.accuracy_sample_count}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class AccuracyPlanner:
    """``reference``: the studies' fp32 reference, the floor's own (``AccuracyFloor``),
    which the recorder feeds with every row; the planner only reads it (None: an empty one,
    so no pass is paired)."""

    def __init__(self, run_dir: Path, fidelity_cfg, rows: list[dict[str, Any]],
                 reference: Fp32Reference | None = None):
        self.run_dir = Path(run_dir)
        self.sequential = bool(fidelity_cfg.sequential_accuracy)
        self.share = bool(fidelity_cfg.share_accuracy)
        self.confidence = float(fidelity_cfg.accuracy_confidence)
        self.width = float(fidelity_cfg.accuracy_width)
        self.min_samples = int(fidelity_cfg.sequential_min_samples)
        self.spot_samples = int(fidelity_cfg.spot_check_samples)
        self.known: dict[str, dict[str, Any]] = {}
        self.inflight: dict[str, int] = {}  # key -> trial number measuring it
        self.reference = reference if reference is not None else Fp32Reference()
        # study -> its feasible search points (trial, speed, sure accuracy), for its front
        self._feasible: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            self.observe(row)

    # --- what was measured ---------------------------------------------------------
    def observe(self, row: dict[str, Any]) -> None:
        speed = row.get(row.get("objective") or "")
        if row.get("state") == "complete" and row.get("fidelity", "short") == "short" \
                and speed is not None and row.get("accuracy") is not None:
            # an estimate counts at its low end: a point is only ever beaten by a sure figure
            sure = row["accuracy_low"] if row.get("accuracy_low") is not None else row["accuracy"]
            self._feasible.setdefault(row["study"], []).append(
                {"trial": row.get("trial"), "state": "complete", "objective": row["objective"],
                 row["objective"]: float(speed), "accuracy": float(sure)})
        key = row.get("accuracy_key")
        if key and self.inflight.get(key) is not None and row.get("accuracy_source") != "inherited":
            self.inflight.pop(key, None)
        if row.get("accuracy") is None or not key or not row.get("log_dir") \
                or row.get("accuracy_source") not in ("measured", "estimated") \
                or row.get("state") == "failed":
            return
        best = self.known.get(key)
        if best is None or (row.get("accuracy_samples") or 0) > (best.get("accuracy_samples") or 0):
            self.known[key] = row

    def release(self, key: str) -> None:
        """A trial of ``key`` ended without a measurement: others may measure it."""
        self.inflight.pop(key, None)

    # --- how a trial measures ------------------------------------------------------
    def plan(self, tcfg: Trial, floor: float | None) -> AccuracyPlan | str:
        """The trial's plan, or ``HOLD``."""
        key = accuracy_key(tcfg)
        if self.share:
            source = self.known.get(key)
            spot = self._responses(source, self.spot_samples) if source else None
            if spot:
                return replace(self._pass(tcfg, floor), inherit=Inherit(
                    f"{source['study']}/{source['trial']}", source["accuracy"],
                    source.get("accuracy_metric"), source.get("accuracy_low"),
                    source.get("accuracy_high"), spot))
            if key in self.inflight:
                return HOLD
        self.inflight[key] = tcfg.trial
        return self._pass(tcfg, floor)

    def _pass(self, tcfg: Trial, floor: float | None) -> AccuracyPlan:
        plan = AccuracyPlan(sequential=self.sequential, floor=floor,
                            confidence=self.confidence, width=self.width,
                            min_samples=self.min_samples)
        front = self._front(tcfg.study)
        if self.sequential and front:
            plan.front = front
        ref = self.reference.paired(tcfg.study)
        if self.sequential and ref is not None:
            responses = self._responses(ref, MAX_PAIRED)
            if responses:
                plan.reference = PairedReference(f"{ref['study']}/{ref['trial']}",
                                                 ref["accuracy"], responses)
        return plan

    def _front(self, study: str) -> Front | None:
        """The study's feasible, non-dominated (speed, accuracy) points so far."""
        points = self._feasible.get(study)
        if not points:
            return None
        column = points[-1]["objective"]
        return Front(column, OBJECTIVES[column].maximize,
                     [[p[column], p["accuracy"]] for p in pareto.front(points, column)])

    def _responses(self, row: dict[str, Any], limit: int) -> dict[str, str] | None:
        """The row's first ``limit`` responses in the fixed shuffled order, as hex."""
        path = self.run_dir / row["log_dir"] / "accuracy" / loadgen_logs.ACCURACY
        if not path.is_file():
            return None
        logged = loadgen_logs.read_accuracy_log(path)
        dataset = int(json.loads(row.get("system") or "{}").get("dataset_size") or len(logged))
        cap = json.loads(row.get("config") or "{}").get("accuracy_sample_count")
        total = min(dataset, int(cap)) if cap else dataset  # the order the pass used
        count = row.get("accuracy_samples") or len(logged)
        order = sequential.shuffled_order(total)[:min(limit, count)]
        if not all(int(i) in logged for i in order):
            return None
        return {str(int(i)): logged[int(i)].hex() for i in order}
