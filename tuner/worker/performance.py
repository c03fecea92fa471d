"""A trial's performance measurement: LoadGen runs in windows until the figure is steady.

A search trial measures ``windows`` LoadGen performance runs back to back (each a share of
the fidelity's minimum duration, so the trial costs what one run did), in the same process
with the same settings, and keeps going, up to ``max_windows``, while the last three
disagree by more than ``stability`` (perf_analyzer's rule, 10%). Its headline figure is the
median window's own LoadGen figure, and ``performance/`` holds that window's logs (what
every reader of a record finds); every window's logs are kept as ``performance_window_<n>/``.
A compliant run is one window: LoadGen's own rules.

A window that ends INVALID because LoadGen was told the wrong expected speed (a harness miss)
is recalibrated from its own log and run again, up to ``harness_retries`` times; earlier
attempts are kept as ``..._attempt_<n>/``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from experiments import loadgen_logs, noise
from experiments.mlperf import scenario as scenario_facts
from tuner.trial import Fidelity, TrialConfig
from tuner.worker.oracle import SystemUnderTest, calibrate, harness_miss, recalibrate
from tuner.worker.steadiness import NodeWatch

PERFORMANCE = "performance"


def window_fidelity(fidelity: Fidelity) -> Fidelity:
    """One window's share of the run: the minimum (and maximum) duration split in ``windows``;
    the query count floor stays (early stopping needs it in every window)."""
    k = max(1, int(fidelity.windows))
    if k == 1:
        return fidelity
    share = (lambda ms: None if ms is None else max(1, math.ceil(int(ms) / k)))
    return replace(fidelity, min_duration_ms=share(fidelity.min_duration_ms),
                   max_duration_ms=share(fidelity.max_duration_ms))


@dataclass
class Window:
    folder: Path
    conf: str
    metrics: Any  # loadgen_logs.PerformanceMetrics
    attempts: list[tuple[Path, str]] = field(default_factory=list)
    steadiness: dict = field(default_factory=dict)


def objective_of(metrics, scenario: str) -> float | None:
    return metrics.qps if scenario_facts(scenario).throughput else metrics.latency_ms


class PerformanceRuns:
    """The windows of one trial. ``conf_for(calibration)`` makes a window's user.conf;
    ``timings`` adds up where the time went."""

    def __init__(self, cfg: TrialConfig, oracle, sut_args: dict, samples, work: Path,
                 timings, conf_for: Callable, calib, respond, probe, batch_size: int,
                 per_query: int):
        self.cfg, self.oracle, self.sut_args, self.samples = cfg, oracle, sut_args, samples
        self.work, self.timings, self.conf_for, self.calib = work, timings, conf_for, calib
        self.respond, self.probe = respond, probe
        self.batch_size, self.per_query = batch_size, per_query
        self.windows: list[Window] = []
        self.retries: list[dict] = []  # each harness miss, recalibrated

    def run(self, conf: str) -> list[Window]:
        fidelity = self.cfg.fidelity
        first, most = max(1, int(fidelity.windows)), max(1, int(fidelity.max_windows))
        while True:
            window = self._window(conf, len(self.windows) + 1)
            self.windows.append(window)
            conf = window.conf  # a recalibrated plan carries over to the next window
            figures = self.figures()
            if not window.metrics.valid or len(self.windows) >= max(first, most):
                break
            if len(self.windows) >= first and (
                    len(figures) < noise.STEADY_WINDOWS
                    or noise.steady(figures, float(fidelity.stability))):
                break
        return self.windows

    def figures(self) -> list[float]:
        scenario = self.cfg.scenario
        return [f for w in self.windows if w.metrics.valid
                and (f := objective_of(w.metrics, scenario))]

    def headline(self) -> Window:
        """The median valid window; an INVALID one (after its retries) if any: a run
        that was INVALID a third of the time is not a VALID figure."""
        valid = [w for w in self.windows if w.metrics.valid]
        if len(valid) < len(self.windows):
            return next(w for w in reversed(self.windows) if not w.metrics.valid)
        scenario = self.cfg.scenario
        figures = [objective_of(w.metrics, scenario) or 0.0 for w in valid]
        return valid[noise.median_window(figures)]

    def _window(self, conf: str, n: int) -> Window:
        cfg, scenario, timings = self.cfg, self.cfg.scenario, self.timings
        attempts: list[tuple[Path, str]] = []
        watch = NodeWatch().start()
        while True:
            out = self.work / f"{PERFORMANCE}_window_{n}_attempt_{len(attempts) + 1}"
            loading = self.samples.load_s
            part = PERFORMANCE if not attempts else "performance_retry"
            with timings.part(part):
                with SystemUnderTest(**self.sut_args) as sut:
                    self.oracle.run(sut, "performance", out)
            # LoadGen loads the QSL before its clock starts: that is trial overhead
            loaded = self.samples.load_s - loading
            timings["sample_loading"] = timings.get("sample_loading", 0.0) + loaded
            timings[part] -= loaded
            attempts.append((out, conf))
            detail = loadgen_logs.read_detail(out)
            metrics = loadgen_logs.performance_metrics(detail, scenario)
            if metrics.valid or len(attempts) > int(cfg.harness_retries) \
                    or not harness_miss(scenario, metrics.invalid_reason):
                return Window(out, conf, metrics, attempts, watch.stop())
            fresh = calibrate(self.respond, self.probe, self.batch_size, self.per_query,
                              budget_s=0.05) if scenario == "Offline" else None
            self.calib = recalibrate(detail, scenario, self.per_query, self.calib, fresh)
            conf = self.conf_for(self.calib)
            self.oracle.replan(self.calib)
            self.retried(metrics.invalid_reason)

    def retried(self, reason: str | None) -> None:
        self.retries.append({
            "reason": reason, "calibrated_latency_ms": self.calib.latency_s * 1e3,
            "calibrated_qps": self.calib.throughput})

    def collect(self, result) -> str | None:
        """Every window's logs into the result; ``performance/`` is the headline window's.
        Returns why the run never steadied, if it did not."""
        head = self.headline()
        single = len(self.windows) == 1
        attempt_no = 0
        for n, window in enumerate(self.windows, start=1):
            for i, (folder, conf) in enumerate(window.attempts, start=1):
                last = i == len(window.attempts)
                if single:  # one window: the layout of a compliant run, as before
                    if last:
                        continue
                    attempt_no += 1
                    prefix = f"{PERFORMANCE}_attempt_{attempt_no}"
                else:
                    prefix = f"{PERFORMANCE}_window_{n}" + ("" if last else f"_attempt_{i}")
                _collect(folder, prefix, result)
                if not last:
                    result.logs[f"{prefix}/user.conf"] = conf
        _collect(head.folder, PERFORMANCE, result)
        scenario = self.cfg.scenario
        figures = self.figures()
        result.system["performance_attempts"] = sum(len(w.attempts) for w in self.windows)
        result.system["windows"] = [
            {"figure": objective_of(w.metrics, scenario), "valid": w.metrics.valid,
             "latency_ms": w.metrics.latency_ms, "qps": w.metrics.qps, **w.steadiness}
            for w in self.windows]
        result.system["windows_log_sd"] = noise.log_sd(figures)
        result.system["steadiness"] = _worst(self.windows)
        if self.retries:
            result.settings["retries"] = self.retries
        result.windows = len(figures) or len(self.windows)
        if len(self.windows) > 1 and len(figures) >= noise.STEADY_WINDOWS and \
                not noise.steady(figures, float(self.cfg.fidelity.stability)):
            return (f"unsteady: the last {noise.STEADY_WINDOWS} of {len(figures)} "
                               f"windows differ by {noise.spread_text(figures)} (stability "
                               f"{float(self.cfg.fidelity.stability):.0%})")
        return None


def _worst(windows: list[Window]) -> dict:
    """The node at its least steady over the windows: most other load, lowest clock."""
    facts = [w.steadiness for w in windows if w.steadiness]
    if not facts:
        return {}
    out = dict(facts[-1])
    for key, pick in (("other_cpu", max), ("loadavg_1m", max), ("cpu_pressure_avg10", max),
                      ("cpu_mhz_min", min), ("throttled_now", max)):
        values = [f[key] for f in facts if key in f]
        if values:
            out[key] = pick(values)
    return out


def _collect(log_dir: Path, prefix: str, result) -> None:
    for name in (loadgen_logs.DETAIL, loadgen_logs.SUMMARY, loadgen_logs.ACCURACY):
        path = log_dir / name
        if path.exists():
            result.logs[f"{prefix}/{name}"] = path.read_text()
