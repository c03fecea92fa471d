"""What crosses the wire: a trial's configuration and its result, as plain picklable data.

The driver builds a ``TrialConfig`` from an Optuna trial; a worker on a node of the right
platform turns it into a ``TrialResult``. Nothing else travels between them: models are
built and cached on the worker, LoadGen logs come back as text.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from experiments.mlperf import COMPLIANT, SHORT
from tuner.accuracy.plan import AccuracyPlan


@dataclass
class Fidelity:
    """How long LoadGen measures. ``compliant`` keeps LoadGen's own rules (600 s)."""

    name: str = SHORT
    min_duration_ms: int | None = 1000
    min_query_count: int | None = 64
    max_duration_ms: int | None = None
    # The run is measured in this many LoadGen runs (windows) back to back, each a share of
    # the duration, and up to max_windows while the last three disagree by more than
    # stability (tuner.worker.performance); a compliant run is one window.
    windows: int = 1
    max_windows: int = 1
    stability: float = 0.10

    @property
    def compliant(self) -> bool:
        return self.min_duration_ms is None and self.min_query_count is None

    @classmethod
    def compliant_run(cls) -> "Fidelity":
        return cls(COMPLIANT, None, None, None, windows=1, max_windows=1)


@dataclass
class TrialConfig:
    study: str
    trial: int
    platform: str
    workload: dict[str, Any]  # the workload config: {"name": ..., **kwargs}
    model: dict[str, Any]  # the variant: width, resolution, precision, ...
    backend: str
    knobs: dict[str, Any]  # the backend's options
    scenario: str  # LoadGen scenario name: SingleStream | MultiStream | Offline | Server
    scenario_options: dict[str, Any] = field(default_factory=dict)  # batch_size, ...
    fidelity: Fidelity = field(default_factory=Fidelity)
    run_accuracy: bool = True
    accuracy_sample_count: int | None = None  # None: the whole validation set
    # How the accuracy pass runs (set by the driver's accuracy planner)
    accuracy: AccuracyPlan = field(default_factory=AccuracyPlan)
    cache_dir: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the Optuna params, verbatim
    # A performance run that ends INVALID because LoadGen's expected latency/QPS was wrong
    # is recalibrated from its own log and run again this many times (tuner.worker.measure).
    harness_retries: int = 1
    # Multiplies the calibrated latency (divides the throughput) LoadGen plans with: 1.0
    # but in fault tests, which set it far off to force a harness miss.
    calibration_scale: float = 1.0
    # Why it is measured: search (an asked point) | race (a near-front point again, beside
    # its rival) | canary (the node's fixed reference) | recheck (again, after a drift);
    # repeat_of names the configuration's first trial, node_id pins it to one Ray node.
    measured_for: str = "search"
    repeat_of: int | None = None
    node_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialConfig":
        data = dict(data)
        data["fidelity"] = Fidelity(**data.get("fidelity", {}))
        data["accuracy"] = AccuracyPlan.from_dict(data.get("accuracy"))
        return cls(**data)


@dataclass
class TrialResult:
    ok: bool  # measured end to end (the run may still be INVALID: see ``valid``)
    cause: str | None = None  # why not ok, or why INVALID
    valid: bool = False  # LoadGen's result_validity of the performance run
    latency_ms: float | None = None  # the scenario's headline latency
    p90_latency_ms: float | None = None
    qps: float | None = None
    windows: int = 1  # LoadGen runs the figure is the median of (tuner.worker.performance)
    accuracy: float | None = None
    accuracy_metric: str | None = None  # the workload's metric name: top1 | mAP | AUC
    accuracy_good: int | None = None
    accuracy_total: int | None = None
    accuracy_extras: dict[str, float] = field(default_factory=dict)  # e.g. AP50
    accuracy_source: str | None = None  # measured | estimated | inherited
    accuracy_low: float | None = None  # estimated: the interval of the whole-set figure
    accuracy_high: float | None = None
    accuracy_from: str | None = None  # inherited: "<study>/<trial>" of the measurement
    node: str = ""
    platform: str = ""
    model_name: str = ""
    started_at: float = 0.0
    duration_s: float = 0.0
    system: dict[str, Any] = field(default_factory=dict)  # node facts + runtime versions
    settings: dict[str, Any] = field(default_factory=dict)  # calibrated LoadGen settings
    logs: dict[str, str] = field(default_factory=dict)  # relative path -> file text
    # Set only when the figures were not measured on a device by this run: "replay"
    # (answered from a table) or "simulated"; None means the config's own fidelity.
    fidelity: str | None = None
    source: str | None = None  # where replayed/imported figures came from (JSON or path)

    def figure(self, column: str) -> float | None:
        """The figure a record's objective column holds (``tuner.study.outcome.make_row``:
        an INVALID run's latency of 0 is no figure)."""
        return {"latency_ms": self.latency_ms or None, "qps": self.qps}.get(column)

    @classmethod
    def lost(cls, cause: str, platform: str, started_at: float) -> "TrialResult":
        """No result came back (crash, timeout, node lost): only the cause is known."""
        import time

        return cls(ok=False, cause=cause, platform=platform, started_at=started_at,
                   duration_s=time.time() - started_at)
