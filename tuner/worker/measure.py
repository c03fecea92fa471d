"""One trial on one node: build the variant, load the runtime, let LoadGen measure it.

``measure`` is what a Ray worker runs. It never raises for a trial-level problem: a crash
of the runtime, an INVALID LoadGen run or a missing runtime all come back as a
``TrialResult`` with ``ok``/``valid`` false and the cause, so the study goes on.

The performance measurement is ``tuner.worker.performance``: LoadGen runs in windows until
the figure is steady (a compliant run is one window), each recalibrated and run again after a
harness miss; ``performance/`` holds the headline window's logs (what the packer reads).

``system["timings_s"]`` holds where the trial's time went, part by part.
"""
from __future__ import annotations

import platform as _platform
import socket
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

import backends
from experiments import loadgen_logs
from experiments.mlperf import SHORT, current_benchmark
from experiments.mlperf import scenario as scenario_facts
from tuner.accuracy import passes
from tuner.worker import model_files, server_search
from tuner.worker.oracle import Calibration, LoadGenOracle, SystemUnderTest, calibrate, user_conf
from tuner.worker.performance import PerformanceRuns, window_fidelity
from tuner.trial import TrialConfig, TrialResult
from workloads import create as create_workload

CALIBRATION_SAMPLES = 32
ACCURACY_BATCH = 32  # a search trial's accuracy pass (see _accuracy_plan)


class _SampleCache:
    """Preprocessed samples shared by the trial's calibration, performance and accuracy
    runs (each builds its own SUT, and preprocessing the digits set takes ~70 ms a pass).
    Bounded, so a large dataset's accuracy pass streams past it."""

    def __init__(self, workload, variant, max_bytes: int = 256 << 20):
        self._load = lambda idx: workload.load_samples(idx, variant)
        self._cache: dict[int, object] = {}
        self._bytes, self._max = 0, max_bytes
        self.load_s = 0.0  # time spent preprocessing and gathering samples

    def __call__(self, indices) -> list:
        start = time.perf_counter()
        indices = list(indices)
        missing = [i for i in indices if i not in self._cache]
        fresh: dict[int, object] = {}
        if missing:
            fresh = dict(zip(missing, self._load(missing)))
            size = sum(_nbytes(s) for s in fresh.values())
            if self._bytes + size <= self._max:
                self._cache.update(fresh)
                self._bytes += size
        out = [self._cache[i] if i in self._cache else fresh[i] for i in indices]
        self.load_s += time.perf_counter() - start
        return out


def _nbytes(sample) -> int:
    """A sample's size for the cache bound: arrays, or containers of arrays."""
    if isinstance(sample, np.ndarray):
        return sample.nbytes
    if isinstance(sample, dict):
        return sum(_nbytes(v) for v in sample.values())
    if isinstance(sample, (list, tuple)):
        return sum(_nbytes(v) for v in sample)
    return getattr(sample, "nbytes", 64)


class _Timings(dict):
    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start


def measure(cfg: TrialConfig) -> TrialResult:
    started = time.time()
    result = TrialResult(ok=False, node=socket.gethostname(), platform=cfg.platform,
                         started_at=started)
    timings = _Timings()
    try:
        with tempfile.TemporaryDirectory(prefix="tuner-trial-") as tmp:
            _measure_into(cfg, Path(tmp), result, timings)
            result.ok = True
    except backends.BackendUnavailable as exc:
        result.cause = f"runtime unavailable: {exc}"
    except (model_files.ModelFileError, server_search.ServerBoundError) as exc:
        result.cause = str(exc)
    except Exception as exc:  # noqa: BLE001 - a trial's failure is data, not a crash
        result.cause = f"{type(exc).__name__}: {exc}"
        result.logs["error.txt"] = traceback.format_exc()
    result.duration_s = time.time() - started
    result.system["timings_s"] = {**timings, "measure": result.duration_s}
    return result


def _load_backend(cfg: TrialConfig, workload, variant, backend_cls, result: TrialResult,
                  timings: _Timings):
    """The model file, checked, and a runtime session on it. A damaged cache entry is
    rebuilt once; a file that still does not load fails the trial, naming the file."""
    for attempt in (1, 2):
        with timings.part("model_file"):
            path = workload.model_file(variant, backend_cls.model_format)
        with timings.part("model_check"):
            check = model_files.check(path, workload.cache_dir, cfg.study)
        if check.problem:
            result.system["model_rebuilt"] = check.problem
            with timings.part("model_file"):
                path = workload.model_file(variant, backend_cls.model_format)
                check = model_files.check(path, workload.cache_dir, cfg.study)
        try:
            with timings.part("runtime_session"):
                backend = backends.load(cfg.backend, str(path), cfg.knobs, cfg.cache_dir)
            return path, check.sha256, backend
        except (backends.BackendUnavailable, backends.BackendOptionError):
            raise  # the node or the config, not the model file
        except Exception as exc:  # noqa: BLE001 - the runtime's own parse error
            why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            if attempt == 1 and model_files.is_cached(path, workload.cache_dir):
                model_files.forget(path, workload.cache_dir, cfg.study)
                result.system["model_rebuilt"] = (f"cached model file {path} did not load "
                                                  f"({why}); rebuilt")
                continue
            raise model_files.ModelFileError(
                f"model file {path} does not load in {cfg.backend}: {why}") from exc
    raise AssertionError("unreachable")


def _measure_into(cfg: TrialConfig, work: Path, result: TrialResult, timings: _Timings) -> None:
    with timings.part("workload"):
        workload = create_workload(cfg.workload, cache_dir=cfg.cache_dir)
        variant = workload.variant(**cfg.model)
        result.model_name = variant.name
        benchmark = current_benchmark(workload.loadgen_model)
        backend_cls = backends.get(cfg.backend)
    model_path, model_sha, backend = _load_backend(cfg, workload, variant, backend_cls,
                                                   result, timings)
    with timings.part("facts"):
        _record_facts(cfg, workload, variant, backend_cls, model_path, model_sha, benchmark,
                      result)
    try:
        # the batch knob is in the task's unit (DLRM: pairs); the SUT hands the responder
        # this many samples at a time
        batch_knob = int(cfg.scenario_options.get("batch_size", 1))
        respond = workload.responder(variant, backend.predict, backend.inputs, backend.outputs,
                                     batch_knob)
        batch_size = workload.samples_per_batch(batch_knob)
        total = workload.total_sample_count
        # fidelity.accuracy_sample_count shortens the accuracy run only: the performance
        # run keeps the whole sample set LoadGen draws its queries from.
        accuracy_total = min(total, int(cfg.accuracy_sample_count or total))
        scenario = cfg.scenario
        facts = scenario_facts(scenario)
        per_query = facts.samples_per_query
        samples = _SampleCache(workload, variant)
        with timings.part("warmup"):
            probe = samples(range(min(CALIBRATION_SAMPLES, total)))
            for _ in range(5):  # first-call costs (allocation, JIT) stay out of the figures
                respond(probe[:1])
        with timings.part("calibration"):
            calib = calibrate(respond, probe, batch_size, per_query)
        scale = float(cfg.calibration_scale)  # 1.0 but in fault tests
        calib = Calibration(calib.latency_s * scale, calib.throughput / scale)

        def conf_for(c: Calibration) -> str:
            return user_conf(workload.loadgen_model, scenario, window_fidelity(cfg.fidelity), c,
                             server_load=float(cfg.scenario_options.get("server_load", 0.5)),
                             server_latency_ms=cfg.scenario_options.get("server_latency_ms"),
                             performance_sample_count=cfg.scenario_options.get(
                                 "performance_sample_count"))

        conf = conf_for(calib)
        with timings.part("loadgen_setup"):
            oracle = LoadGenOracle(workload.loadgen_model, scenario, conf, work)
        result.settings = {"user_conf": conf, "calibrated_latency_ms": calib.latency_s * 1e3,
                           "calibrated_qps": calib.throughput, "batch_size": batch_size}
        sut_args = dict(respond=respond, total_count=total,
                        load_samples=samples,
                        performance_count=total, batch_size=batch_size,
                        threaded=facts.threaded)
        if scenario == "Server" and cfg.scenario_options.get("server_search"):
            # promotion: the highest target QPS whose p99 meets the bound, from short runs
            conf = server_search.tune(oracle, sut_args, calib, conf, cfg.scenario_options, result)

        runs = PerformanceRuns(cfg, oracle, sut_args, samples, work, timings, conf_for, calib,
                               respond, probe, batch_size, per_query)
        runs.run(conf)
        head = runs.headline()
        metrics, conf = head.metrics, head.conf
        with timings.part("logs"):
            unsteady = runs.collect(result)
        result.valid = metrics.valid
        result.latency_ms, result.p90_latency_ms = metrics.latency_ms, metrics.p90_latency_ms
        result.qps = metrics.qps
        if metrics.qps and workload.items_per_sample() != 1.0:  # e.g. DLRM: pairs/s beside users/s
            result.system[f"{workload.item_name}s_per_second"] = \
                metrics.qps * workload.items_per_sample()
        attempts = len(head.attempts)
        if not metrics.valid:
            tried = f" (after {attempts} attempts)" if attempts > 1 else ""
            result.cause = f"LoadGen INVALID{tried}: {metrics.invalid_reason or 'no reason logged'}"
        elif metrics.errors:
            result.cause = "LoadGen logged errors: " + "; ".join(metrics.errors)
        elif unsteady:
            result.cause = unsteady

        if cfg.run_accuracy:
            with timings.part("accuracy"):
                acc_scenario, acc_batch = _accuracy_plan(cfg, backend, batch_size, per_query)
                result.system["accuracy_run"] = {"scenario": acc_scenario, "batch_size": acc_batch}
                sut_args.update(batch_size=acc_batch, threaded=True)

                def run(indices: list[int], label: str) -> dict[int, bytes]:
                    def sut(idx):  # a QSL over these dataset indices only
                        return SystemUnderTest(**{**sut_args, "total_count": len(idx),
                                                  "performance_count": len(idx),
                                                  "load_samples": lambda q: samples([idx[i] for i in q])})
                    return passes.run_chunks(oracle, sut, indices, work, acc_scenario, label)

                outcome = _accuracy(cfg, workload, respond, samples, run, accuracy_total, result)
                _record_accuracy(outcome, result, work)
        result.logs["user.conf"] = conf
    finally:
        with timings.part("teardown"):
            backend.close()


def _accuracy(cfg: TrialConfig, workload, respond, samples, run, total: int,
              result: TrialResult) -> passes.AccuracyOutcome:
    """Inherited after an identical spot check, else sequential (search trials), else the
    whole set (promotion, compliant runs, or ``sequential: false``)."""
    plan = cfg.accuracy
    if plan.inherit and cfg.fidelity.name == SHORT:  # promotion always measures
        spot = {int(i): h for i, h in plan.inherit.spot.items() if int(i) < total}
        bad = passes.spot_check(respond, samples, spot)
        if not bad:
            return passes.inherited(plan, len(spot))
        result.system["spot_check_mismatch"] = {"from": plan.inherit.source,
                                                "samples": len(spot), "differ": bad[:20]}
    # a small set is scored whole: its one batched pass costs less than the chunks' LoadGen
    # runs and the interval's re-scoring (30 mAP evaluations a look for detection)
    if plan.sequential and cfg.fidelity.name == SHORT and total >= plan.min_samples:
        if plan.front and result.valid:  # this trial's speed, to place it off the front
            plan = replace(plan, front=replace(plan.front,
                                               own=result.figure(plan.front.objective)))
        out = passes.sequential_pass(workload, run, total, plan)
    else:
        responses = run(list(range(total)), "accuracy")
        score = workload.score(responses)
        out = passes.AccuracyOutcome(score.value, score.metric, passes.MEASURED,
                                       score.count, good=score.good, extras=dict(score.extras),
                                       text=score.text, responses=responses)
    if "spot_check_mismatch" in result.system:
        mismatch = result.system["spot_check_mismatch"]
        out.note = (f"spot check against {mismatch['from']} differed on "
                    f"{len(mismatch['differ'])} of {mismatch['samples']} samples: measured anew")
    return out


def _record_accuracy(out: passes.AccuracyOutcome, result: TrialResult, work: Path) -> None:
    result.accuracy, result.accuracy_metric = out.value, out.metric
    result.accuracy_source, result.accuracy_from = out.source, out.inherited_from
    result.accuracy_low, result.accuracy_high = out.low, out.high
    result.accuracy_good, result.accuracy_total = out.good, out.samples
    result.accuracy_extras = dict(out.extras or {})
    result.logs["accuracy/accuracy.txt"] = out.text + "\n"
    if out.responses is not None:
        result.logs[f"accuracy/{loadgen_logs.ACCURACY}"] = passes.accuracy_log(out.responses)
        last = max(work.glob("accuracy*"), key=lambda d: d.stat().st_mtime, default=None)
        if last is not None and (last / loadgen_logs.DETAIL).exists():
            result.logs[f"accuracy/{loadgen_logs.DETAIL}"] = (last / loadgen_logs.DETAIL).read_text()
    if out.note:
        result.cause = "; ".join(c for c in (result.cause, out.note) if c)


def _record_facts(cfg: TrialConfig, workload, variant, backend_cls, model_path: Path,
                  model_sha: str, benchmark: str, result: TrialResult) -> None:
    result.system.update({
        "hostname": socket.gethostname(), "python": _platform.python_version(),
        "runtime": cfg.backend, "runtime_version": backend_cls.version(),
        "model_file": model_path.name, "model_sha256": model_sha,
        # what the packer needs, recorded here so packing never rebuilds a workload: the
        # variant's precision, the MLPerf benchmark, the dataset size, measurements.json
        "precision": variant.precision, "benchmark": benchmark,
        "dataset_size": int(workload.total_sample_count),
        "weights": workload.weights_description(variant, cfg.backend)})


def _accuracy_plan(cfg: TrialConfig, backend, batch_size: int, per_query: int) -> tuple[str, int]:
    """How the accuracy pass runs. A search trial's pass (fidelity ``short``) runs as
    LoadGen Offline in batches of ``ACCURACY_BATCH`` where the model takes any batch size:
    every sample still goes through LoadGen and the SUT once, in a fraction of the time of
    one query after another. Other fidelities (promotion, compliant runs that are packed)
    keep the scenario's own accuracy run."""
    dynamic = all(spec.batch_dynamic for spec in backend.inputs)
    if cfg.fidelity.name == SHORT and dynamic:
        return "Offline", max(ACCURACY_BATCH, batch_size, per_query)
    return cfg.scenario, max(batch_size, per_query)

