"""The measuring oracle: MLCommons LoadGen drives the system under test and times it.

One ``LoadGenOracle`` per trial process. Settings come from ``TestSettings.FromConfig``
with a generated ``user.conf`` so the RNG seeds are the official ones, and FromConfig is
called once per process: a second call makes LoadGen log ``error_invalid_config``
("Multiple conf files"), which the submission checker rejects. That is why each trial runs
in a fresh worker process (``max_calls=1``) and the performance and accuracy runs share
one ``TestSettings``.

Short tuning runs must come back VALID, so the expected latency / QPS LoadGen plans with
is calibrated first with a few timed predictions (used only to configure LoadGen, never
reported): LoadGen pre-generates ``min_duration / expected_latency`` queries and ends
INVALID when they run out early, so expected latency is set below the real one and
expected throughput above it.
"""
from __future__ import annotations

import array
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from experiments.mlperf import scenario as scenario_facts
from tuner.trial import Fidelity

# Margins on the calibrated figures (see the module docstring for why they point this way).
LATENCY_MARGIN = 0.6
THROUGHPUT_MARGIN = 1.5

Predict = Callable[[np.ndarray], np.ndarray]  # (N, C, H, W) float32 -> (N,) int32 labels
LoadSamples = Callable[[list[int]], np.ndarray]


@dataclass
class Calibration:
    latency_s: float  # one query of the scenario's size, mean
    throughput: float  # samples per second at the configured batch size


def calibrate(predict: Predict, samples: np.ndarray, batch_size: int,
              samples_per_query: int, budget_s: float = 0.3) -> Calibration:
    """Rough speed of the SUT, only to tell LoadGen what to expect."""
    def timed(batch: np.ndarray) -> float:
        predict(batch)  # warm
        runs, start = 0, time.perf_counter()
        while runs < 3 or (time.perf_counter() - start < budget_s and runs < 200):
            predict(batch)
            runs += 1
        return (time.perf_counter() - start) / runs

    query = np.resize(samples, (samples_per_query,) + samples.shape[1:])
    batch = np.resize(samples, (batch_size,) + samples.shape[1:])
    latency = timed(query)
    per_batch = latency if batch_size == samples_per_query else timed(batch)
    return Calibration(latency_s=latency, throughput=batch_size / per_batch)


def user_conf(model: str, scenario: str, fidelity: Fidelity, calib: Calibration,
              server_load: float = 0.5, server_latency_ms: float | None = None,
              performance_sample_count: int | None = None) -> str:
    """The user.conf lines for one run (times in ms, as LoadGen reads them)."""
    facts = scenario_facts(scenario)  # raises on an unknown name
    lines = []
    key = f"{model}.{scenario}"
    if scenario in ("SingleStream", "MultiStream"):
        lines.append(f"{key}.target_latency = {max(calib.latency_s * 1e3 * LATENCY_MARGIN, 0.001):.6f}")
    elif scenario == "Offline":
        lines.append(f"{key}.target_qps = {calib.throughput * THROUGHPUT_MARGIN:.3f}")
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
    """LoadGen's SUT + QSL around a predict function.

    SingleStream and MultiStream queries are answered on LoadGen's issue thread (one
    query is in flight at a time, and a thread hand-off would add tens of microseconds to
    every latency). Offline and Server queries go to a worker thread that batches up to
    ``batch_size`` samples, so LoadGen's scheduler is never blocked.
    """

    def __init__(self, predict: Predict, load_samples: LoadSamples, total_count: int,
                 performance_count: int, batch_size: int = 1, threaded: bool = False):
        import mlperf_loadgen as lg

        self._lg = lg
        self.predict = predict
        self.load_samples_fn = load_samples
        self.batch_size = max(1, int(batch_size))
        self.loaded: dict[int, np.ndarray] = {}
        self.threaded = threaded
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self.sut = lg.ConstructSUT(self._issue, self._flush)
        self.qsl = lg.ConstructQSL(total_count, min(performance_count, total_count),
                                   self._load, self._unload)

    # QSL callbacks
    def _load(self, indices) -> None:
        todo = [i for i in indices if i not in self.loaded]
        for start in range(0, len(todo), 256):
            chunk = todo[start:start + 256]
            for i, x in zip(chunk, self.load_samples_fn(chunk)):
                self.loaded[i] = x

    def _unload(self, indices) -> None:
        for i in indices:
            self.loaded.pop(i, None)

    # SUT callbacks
    def _issue(self, query_samples) -> None:
        if not self.threaded:
            self._answer(list(query_samples))
            return
        for q in query_samples:
            self._queue.put(q)

    def _flush(self) -> None:
        pass

    def _answer(self, samples) -> None:
        lg = self._lg
        for start in range(0, len(samples), self.batch_size):
            chunk = samples[start:start + self.batch_size]
            batch = np.stack([self.loaded[q.index] for q in chunk])
            labels = np.asarray(self.predict(batch), dtype=np.int32)
            buffers, responses = [], []
            for q, label in zip(chunk, labels):
                buf = array.array("B", np.int32(label).tobytes())
                buffers.append(buf)  # keep alive until QuerySamplesComplete returns
                ptr, n = buf.buffer_info()
                responses.append(lg.QuerySampleResponse(q.id, ptr, n))
            lg.QuerySamplesComplete(responses)

    def _drain(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            chunk = [first]
            while len(chunk) < self.batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._answer(chunk)
                    return
                chunk.append(nxt)
            self._answer(chunk)

    def __enter__(self) -> "SystemUnderTest":
        if self.threaded:
            self._worker = threading.Thread(target=self._drain, daemon=True)
            self._worker.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._worker is not None:
            self._queue.put(None)
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

    def run(self, sut: SystemUnderTest, mode: str, out_dir: Path) -> Path:
        lg = self._lg
        self.settings.mode = {"performance": lg.TestMode.PerformanceOnly,
                              "accuracy": lg.TestMode.AccuracyOnly}[mode]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        log = lg.LogSettings()
        log.log_output.outdir = str(out_dir)
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        lg.StartTestWithLogSettings(sut.sut, sut.qsl, self.settings, log)
        return out_dir
