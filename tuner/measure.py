"""One trial on one node: build the variant, load the runtime, let LoadGen measure it.

``measure`` is what a Ray worker runs. It never raises for a trial-level problem: a crash
of the runtime, an INVALID LoadGen run or a missing runtime all come back as a
``TrialResult`` with ``ok``/``valid`` false and the cause, so the study goes on.
"""
from __future__ import annotations

import platform as _platform
import socket
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

import backends
from experiments import loadgen_logs
from experiments.check import benchmark_of
from experiments.mlperf import scenario as scenario_facts
from tuner.oracle import LoadGenOracle, SystemUnderTest, calibrate, user_conf
from tuner.trial import TrialConfig, TrialResult
from tuner.workloads import create as create_workload

CALIBRATION_SAMPLES = 32


def measure(cfg: TrialConfig) -> TrialResult:
    started = time.time()
    result = TrialResult(ok=False, node=socket.gethostname(), platform=cfg.platform,
                         started_at=started)
    try:
        with tempfile.TemporaryDirectory(prefix="tuner-trial-") as tmp:
            _measure_into(cfg, Path(tmp), result)
            result.ok = True
    except backends.BackendUnavailable as exc:
        result.cause = f"runtime unavailable: {exc}"
    except Exception as exc:  # noqa: BLE001 - a trial's failure is data, not a crash
        result.cause = f"{type(exc).__name__}: {exc}"
        result.logs["error.txt"] = traceback.format_exc()
    result.duration_s = time.time() - started
    return result


def _measure_into(cfg: TrialConfig, work: Path, result: TrialResult) -> None:
    workload = create_workload(cfg.workload, cache_dir=cfg.cache_dir)
    variant = workload.variant(**cfg.model)
    result.model_name = variant.name
    benchmark = benchmark_of(workload.loadgen_model) or workload.loadgen_model
    backend_cls = backends.get(cfg.backend)
    model_path = workload.model_file(variant, backend_cls.model_format)
    backend = backends.load(cfg.backend, str(model_path), cfg.knobs, cfg.cache_dir)
    result.system = {"hostname": socket.gethostname(), "python": _platform.python_version(),
                     "runtime": cfg.backend, "runtime_version": backend_cls.version(),
                     "model_file": model_path.name,
                     # what the packer needs, recorded here so packing never rebuilds a
                     # workload: the variant's precision, the MLPerf benchmark, the
                     # dataset size and the measurements.json facts
                     "precision": variant.precision, "benchmark": benchmark,
                     "dataset_size": int(workload.total_sample_count),
                     "weights": workload.weights_description(variant, cfg.backend)}
    try:
        def predict(batch: np.ndarray) -> np.ndarray:
            return workload.postprocess(backend.predict(batch))

        total = workload.total_sample_count
        # fidelity.accuracy_sample_count shortens the accuracy run only: the performance
        # run keeps the whole sample set LoadGen draws its queries from.
        accuracy_total = min(total, int(cfg.accuracy_sample_count or total))
        probe = workload.load_samples(list(range(min(CALIBRATION_SAMPLES, total))), variant)
        backend.warmup(probe[:1])
        scenario = cfg.scenario
        batch_size = int(cfg.scenario_options.get("batch_size", 1))
        facts = scenario_facts(scenario)
        per_query = facts.samples_per_query
        calib = calibrate(predict, probe, batch_size, per_query)
        conf = user_conf(workload.loadgen_model, scenario, cfg.fidelity, calib,
                         server_load=float(cfg.scenario_options.get("server_load", 0.5)),
                         server_latency_ms=cfg.scenario_options.get("server_latency_ms"),
                         performance_sample_count=cfg.scenario_options.get(
                             "performance_sample_count"))
        oracle = LoadGenOracle(workload.loadgen_model, scenario, conf, work)
        result.settings = {"user_conf": conf, "calibrated_latency_ms": calib.latency_s * 1e3,
                           "calibrated_qps": calib.throughput, "batch_size": batch_size}
        sut_args = dict(predict=predict, total_count=total,
                        load_samples=lambda idx: workload.load_samples(idx, variant),
                        performance_count=total, batch_size=batch_size,
                        threaded=facts.threaded)

        with SystemUnderTest(**sut_args) as sut:
            perf_dir = oracle.run(sut, "performance", work / "performance")
        _collect(perf_dir, "performance", result)
        metrics = loadgen_logs.performance_metrics(loadgen_logs.read_detail(perf_dir), scenario)
        result.valid = metrics.valid
        result.latency_ms, result.p90_latency_ms = metrics.latency_ms, metrics.p90_latency_ms
        result.qps = metrics.qps
        if not metrics.valid:
            result.cause = f"LoadGen INVALID: {metrics.invalid_reason or 'no reason logged'}"
        elif metrics.errors:
            result.cause = "LoadGen logged errors: " + "; ".join(metrics.errors)

        if cfg.run_accuracy:
            # Accuracy mode covers every sample of the QSL once; batching speeds it up.
            sut_args.update(batch_size=max(batch_size, per_query), threaded=True,
                            total_count=accuracy_total, performance_count=accuracy_total)
            with SystemUnderTest(**sut_args) as sut:
                acc_dir = oracle.run(sut, "accuracy", work / "accuracy")
            _collect(acc_dir, "accuracy", result)
            responses = loadgen_logs.read_accuracy_log(acc_dir / loadgen_logs.ACCURACY)
            acc = loadgen_logs.top1_accuracy(responses, workload.labels)
            result.accuracy, result.accuracy_good, result.accuracy_total = acc.top1, acc.good, acc.total
            result.logs["accuracy/accuracy.txt"] = acc.mlperf_text() + "\n"
        result.logs["user.conf"] = conf
    finally:
        backend.close()


def _collect(log_dir: Path, prefix: str, result: TrialResult) -> None:
    for name in (loadgen_logs.DETAIL, loadgen_logs.SUMMARY, loadgen_logs.ACCURACY):
        path = log_dir / name
        if path.exists():
            result.logs[f"{prefix}/{name}"] = path.read_text()
