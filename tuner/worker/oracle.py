"""The measuring oracle: MLCommons LoadGen drives the system under test and times it.

One ``LoadGenOracle`` per trial process. Settings come from ``TestSettings.FromConfig``
with a generated ``user.conf`` so the RNG seeds are the official ones, and FromConfig is
called once per process: a second call makes LoadGen log ``error_invalid_config``
("Multiple conf files"), which the submission checker rejects. That is why each trial runs
in a fresh process (``tuner.worker.isolation``'s fork server) and the performance and accuracy
runs share one ``TestSettings``.

Short tuning runs must come back VALID, so the expected latency / QPS LoadGen plans with
is calibrated first with a few timed predictions (used only to configure LoadGen, never
reported): LoadGen pre-generates ``min_duration / expected_latency`` queries and ends
INVALID when they run out early, so expected latency is set below the real one and
expected throughput above it.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from experiments.mlperf import scenario as scenario_facts
from tuner.trial import Fidelity

# Margins on the calibrated figures (see the module docstring for why they point this way).
LATENCY_MARGIN = 0.6
THROUGHPUT_MARGIN = 1.5
# a retried Offline run is sized from one short, noisy run: a larger query costs a little
# time, one too small costs the trial (a second INVALID)
RETRY_THROUGHPUT_MARGIN = 2.0

# The workload's responder: loaded samples -> one (address, byte count) per sample, the
# bytes valid until its next call (LoadGen copies them inside QuerySamplesComplete).
Respond = Callable[[Sequence[Any]], Sequence[tuple[int, int]]]
LoadSamples = Callable[[list[int]], Sequence[Any]]
_STOP = object()  # the worker's end-of-queries marker


@dataclass
class Calibration:
    latency_s: float  # one query of the scenario's size, mean
    throughput: float  # samples per second at the configured batch size


def calibrate(respond: Respond, samples: Sequence[Any], batch_size: int,
              samples_per_query: int, budget_s: float = 0.01) -> Calibration:
    """Rough speed of the SUT, only to tell LoadGen what to expect: the fastest of a few
    runs, since LoadGen needs a latency at or below the real one and a throughput at or
    above it. A short budget is enough: the margins absorb its error, and a run that still
    ends INVALID because of it is recalibrated from its own log and retried
    (``harness_miss``)."""
    def timed(batch: list) -> float:
        respond(batch)  # warm
        best, runs, start = float("inf"), 0, time.perf_counter()
        while runs < 5 or (time.perf_counter() - start < budget_s and runs < 200):
            t = time.perf_counter()
            respond(batch)
            best = min(best, time.perf_counter() - t)
            runs += 1
        return best

    def cycle(n: int) -> list:
        return [samples[i % len(samples)] for i in range(n)]

    latency = timed(cycle(samples_per_query))
    per_batch = latency if batch_size == samples_per_query else timed(cycle(batch_size))
    return Calibration(latency_s=latency, throughput=batch_size / per_batch)


def expected_latency_ms(calib: Calibration) -> float:
    """The latency LoadGen plans SingleStream/MultiStream queries with (below the real one)."""
    return max(calib.latency_s * 1e3 * LATENCY_MARGIN, 0.001)


def expected_qps(calib: Calibration) -> float:
    """The throughput LoadGen sizes the Offline query with (above the real one)."""
    return calib.throughput * THROUGHPUT_MARGIN


# LoadGen's reasons for an INVALID run that mean its plan (our expected latency / QPS) was
# wrong, not that the system under test is too slow or broken.
HARNESS_MISS_REASONS = ("expected latency", "expected qps", "ran out of generated queries")
RETRIED_SCENARIOS = ("SingleStream", "MultiStream", "Offline")  # Server's QPS is the load


def harness_miss(scenario: str, invalid_reason: str | None) -> bool:
    """Did a run end INVALID only because LoadGen was told the wrong expected speed?"""
    reason = (invalid_reason or "").lower()
    return scenario in RETRIED_SCENARIOS and any(m in reason for m in HARNESS_MISS_REASONS)


def recalibrate(detail, scenario: str, samples_per_query: int, old: Calibration,
                fresh: Calibration | None = None) -> Calibration:
    """The speed an INVALID run actually measured (its detail log), as a new plan. Offline
    also takes ``fresh``, a calibration repeated after the miss, when it is faster: the
    log's figure comes from one short run, which a moment's contention can slow 3x."""
    if scenario == "Offline":
        qps = offline_speed(detail)
        rates = [r for r in (qps and qps * RETRY_THROUGHPUT_MARGIN,
                             fresh and fresh.throughput) if r]
        return Calibration(old.latency_s, max(rates) if rates else old.throughput)
    latency = detail.get("result_50.00_percentile_latency_ns") or detail.get("result_min_latency_ns")
    if not latency:
        return old
    latency_s = float(latency) / 1e9
    return Calibration(latency_s, samples_per_query / latency_s)


def offline_speed(detail) -> float | None:
    """Samples/s of an Offline run. A run cut short by too small a query is mostly start-up
    (LoadGen's samples/s then reads low), so the rate between the first and the last
    completion counts too, whichever is higher."""
    qps = detail.get("result_samples_per_second")
    samples = detail.get("generated_samples_per_query")
    first, last = detail.get("result_min_latency_ns"), detail.get("result_max_latency_ns")
    between = (float(samples) - 1) / ((last - first) / 1e9) \
        if samples and first and last and last > first and samples > 1 else None
    rates = [float(r) for r in (qps, between) if r]
    return max(rates) if rates else None


def user_conf(model: str, scenario: str, fidelity: Fidelity, calib: Calibration,
              server_load: float = 0.5, server_latency_ms: float | None = None,
              performance_sample_count: int | None = None) -> str:
    """The user.conf lines for one run (times in ms, as LoadGen reads them)."""
    facts = scenario_facts(scenario)  # raises on an unknown name
    lines = []
    key = f"{model}.{scenario}"
    if scenario in ("SingleStream", "MultiStream"):
        lines.append(f"{key}.target_latency = {expected_latency_ms(calib):.6f}")
    elif scenario == "Offline":
        lines.append(f"{key}.target_qps = {expected_qps(calib):.3f}")
    elif scenario == "Server":
        lines.append(f"{key}.target_qps = {max(calib.throughput * server_load, 1.0):.3f}")
        if server_latency_ms is not None:
            lines.append(f"{key}.target_latency = {server_latency_ms}")
    if fidelity.min_duration_ms is not None:
        lines.append(f"{key}.min_duration = {int(fidelity.min_duration_ms)}")
    if fidelity.max_duration_ms is not None:
        lines.append(f"{key}.max_duration = {int(fidelity.max_duration_ms)}")
    if fidelity.min_query_count is not None:
        # A short run with fewer queries than early stopping needs ends INVALID however
        # fast the system is (LoadGen: "Need to process at least 662 queries").
        count = max(int(fidelity.min_query_count), facts.early_stopping_min_queries)
        lines.append(f"{key}.min_query_count = {count}")
    if performance_sample_count is not None:
        lines.append(f"{key}.performance_sample_count_override = {int(performance_sample_count)}")
    return "\n".join(lines) + "\n"


class SystemUnderTest:
    """LoadGen's SUT + QSL around a workload's responder.

    SingleStream and MultiStream queries are answered on LoadGen's issue thread (one
    query is in flight at a time, and a thread hand-off would add tens of microseconds to
    every latency). Offline and Server queries go to a worker thread that hands the
    responder up to ``batch_size`` samples at a time, so LoadGen's scheduler is never
    blocked. What a sample is, how samples batch into model inputs and how outputs become
    response bytes is the workload's business (its responder); this class moves samples
    and addresses. A one-sample query reuses one ``QuerySampleResponse`` and one list, so
    the answer path allocates nothing of its own.
    """

    def __init__(self, respond: Respond, load_samples: LoadSamples, total_count: int,
                 performance_count: int, batch_size: int = 1, threaded: bool = False):
        import mlperf_loadgen as lg

        self._lg = lg
        self.respond = respond
        self.load_samples_fn = load_samples
        self.batch_size = max(1, int(batch_size))
        self.loaded: dict[int, Any] = {}  # qsl index -> the workload's sample
        self.threaded = threaded
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._one = lg.QuerySampleResponse(0, 0, 0)
        self._one_list = [self._one]
        self._one_sample: list = [None]
        issue = self._issue_threaded if threaded else self._issue_inline
        self.sut = lg.ConstructSUT(issue, self._flush)
        self.qsl = lg.ConstructQSL(total_count, min(performance_count, total_count),
                                   self._load, self._unload)

    # QSL callbacks
    def _load(self, indices) -> None:
        todo = [i for i in indices if i not in self.loaded]
        for start in range(0, len(todo), 256):
            chunk = todo[start:start + 256]
            self.loaded.update(zip(chunk, self.load_samples_fn(chunk)))

    def _unload(self, indices) -> None:
        for i in indices:
            self.loaded.pop(i, None)

    # SUT callbacks
    def _issue_inline(self, query_samples) -> None:
        if len(query_samples) == 1:
            self._answer_one(query_samples[0])
        else:
            self._answer(query_samples)

    def _issue_threaded(self, query_samples) -> None:
        # Offline issues every sample in one call: hand them over in batch-sized chunks,
        # not one queue item per sample.
        step = self.batch_size
        for start in range(0, len(query_samples), step):
            self._queue.put(query_samples[start:start + step])

    def _flush(self) -> None:
        pass

    def _answer_one(self, q) -> None:
        self._one_sample[0] = self.loaded[q.index]
        one = self._one
        one.data, one.size = self.respond(self._one_sample)[0]
        one.id = q.id
        self._lg.QuerySamplesComplete(self._one_list)

    def _answer(self, samples) -> None:
        lg, step, loaded = self._lg, self.batch_size, self.loaded
        for start in range(0, len(samples), step):
            chunk = samples[start:start + step]
            answers = self.respond([loaded[q.index] for q in chunk])
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, addr, size)
                                     for q, (addr, size) in zip(chunk, answers)])

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            pending, stop = list(item), False
            # Server: top the batch up with queries that are already waiting.
            while len(pending) < self.batch_size:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                pending.extend(more)
            self._answer(pending)
            if stop:
                return

    def __enter__(self) -> "SystemUnderTest":
        if self.threaded:
            self._worker = threading.Thread(target=self._drain, daemon=True)
            self._worker.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._worker is not None:
            self._queue.put(_STOP)
            self._worker.join()
        self._lg.DestroyQSL(self.qsl)
        self._lg.DestroySUT(self.sut)


class LoadGenOracle:
    """Configures LoadGen once (one FromConfig per process) and runs its tests."""

    def __init__(self, model: str, scenario: str, conf_text: str, work_dir: Path):
        import mlperf_loadgen as lg

        scenario_facts(scenario)  # raises on an unknown name
        self._lg = lg
        self.scenario = scenario
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.user_conf_path = self.work_dir / "user.conf"
        self.user_conf_path.write_text(conf_text)
        self.settings = lg.TestSettings()
        # conf_type 1: the compiled-in mlperf.conf rules, then user.conf on top.
        rc = self.settings.FromConfig(str(self.user_conf_path), model, scenario)
        if rc != 0:
            raise ValueError(f"LoadGen rejected {self.user_conf_path} (FromConfig returned {rc})")
        self.settings.scenario = getattr(lg.TestScenario, scenario)

    def replan(self, calib: Calibration) -> None:
        """Point LoadGen at a new expected speed for the next run (a retry after a harness
        miss). Only the estimates change; the seeds FromConfig set stay."""
        s = self.settings
        if self.scenario == "SingleStream":
            s.single_stream_expected_latency_ns = int(expected_latency_ms(calib) * 1e6)
        elif self.scenario == "MultiStream":
            s.multi_stream_expected_latency_ns = int(expected_latency_ms(calib) * 1e6)
        elif self.scenario == "Offline":
            s.offline_expected_qps = expected_qps(calib)

    def run(self, sut: SystemUnderTest, mode: str, out_dir: Path,
            scenario: str | None = None) -> Path:
        """One LoadGen test. ``scenario`` runs it as another scenario than configured (the
        search's batched accuracy pass); the settings go back afterwards."""
        lg = self._lg
        self.settings.scenario = getattr(lg.TestScenario, scenario or self.scenario)
        self.settings.mode = {"performance": lg.TestMode.PerformanceOnly,
                              "accuracy": lg.TestMode.AccuracyOnly}[mode]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        log = lg.LogSettings()
        log.log_output.outdir = str(out_dir)
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        try:
            lg.StartTestWithLogSettings(sut.sut, sut.qsl, self.settings, log)
        finally:
            self.settings.scenario = getattr(lg.TestScenario, self.scenario)
        return out_dir
