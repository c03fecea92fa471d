"""What the measuring harness adds to each query: LoadGen through our SUT vs a bare loop.

For three sizes of the digits workload on ONNX Runtime (1 thread), each in its own fresh
process (LoadGen allows one FromConfig per process), rounds interleave:

- SingleStream: p90 of a bare ``backend.predict`` loop over one-sample arrays, then the p90
  LoadGen logs (``result_90.00_percentile_latency_ns``) through ``tuner.worker.oracle``'s SUT and
  through the SUT as it was before this change (``LegacySUT``, kept here only as the
  reference). Overhead per query = harness p90 - bare p90.
- Offline: samples/s of a bare loop over preassembled batches vs
  ``result_samples_per_second`` through the SUT (same batch size).

    python benchmarks/harness_overhead.py [--rounds 3] [--duration-ms 1500]

Goals (issue 12): <= 15 us per query; SingleStream ratio <= 1.02 at >= 1 ms;
Offline ratio >= 0.97. Ratios are measured within one process, rounds interleaved.
"""
from __future__ import annotations

import argparse
import array
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = ((0.25, 32), (0.5, 64), (1.0, 96))
OFFLINE_BATCH = 8


def _legacy_class():
    """The SUT's answer path before the per-query allocations were cut (reference only)."""
    from tuner.worker.oracle import SystemUnderTest

    class LegacySUT(SystemUnderTest):
        def _load(self, indices) -> None:
            for i, x in zip(indices, self.load_samples_fn(list(indices))):
                self.loaded[i] = x

        def _issue_inline(self, query_samples) -> None:
            self._answer(list(query_samples))

        def _issue_threaded(self, query_samples) -> None:
            for q in query_samples:
                self._queue.put([q])

        def _answer(self, samples) -> None:
            lg = self._lg
            for start in range(0, len(samples), self.batch_size):
                chunk = samples[start:start + self.batch_size]
                batch = np.stack([self.loaded[q.index] for q in chunk])
                labels = np.asarray(self.predict(batch), dtype=np.int32)
                buffers, responses = [], []
                for q, label in zip(chunk, labels):
                    buf = array.array("B", np.int32(label).tobytes())
                    buffers.append(buf)
                    ptr, n = buf.buffer_info()
                    responses.append(lg.QuerySampleResponse(q.id, ptr, n))
                lg.QuerySamplesComplete(responses)

    return LegacySUT


def _timed_class(times: list):
    """The SUT, timing only its predict call: the model's own p90 inside a LoadGen run
    (LoadGen's threads share the cores), to split what the harness code adds from what
    running under LoadGen does to the model itself."""
    from tuner.worker.oracle import SystemUnderTest

    class TimedSUT(SystemUnderTest):
        def _answer_one(self, q) -> None:
            x = self.loaded[q.index]
            start = time.perf_counter()
            label = self.predict(x)[0]
            times.append(time.perf_counter() - start)
            self._labels[0] = label
            self._one.id = q.id
            self._lg.QuerySamplesComplete(self._one_list)

    return TimedSUT


def _setup(width: float, resolution: int):
    import backends
    from workloads import create

    workload = create({"name": "digits"})
    variant = workload.variant(width=width, resolution=resolution)
    backend = backends.load("onnxruntime", str(workload.model_file(variant)),
                            {"intra_op_threads": 1}, None)
    samples = np.ascontiguousarray(workload.load_samples(list(range(workload.total_sample_count)), variant))
    backend.warmup(samples[:1], 20)

    def predict(batch):
        return workload.postprocess(backend.predict(batch))

    return workload, variant, backend, samples, predict


def _bare_single(backend, samples, duration_s: float) -> float:
    """p90 seconds of one-sample predicts in LoadGen-like random order."""
    rng = np.random.default_rng(0)
    ones = [samples[i:i + 1] for i in range(len(samples))]
    times = []
    end = time.perf_counter() + duration_s
    while time.perf_counter() < end:
        x = ones[int(rng.integers(len(ones)))]
        t = time.perf_counter()
        backend.predict(x)
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 90))


def _bare_offline(backend, samples, duration_s: float) -> float:
    n = len(samples) // OFFLINE_BATCH * OFFLINE_BATCH
    batches = [samples[i:i + OFFLINE_BATCH] for i in range(0, n, OFFLINE_BATCH)]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration_s:
        for b in batches:
            backend.predict(b)
            done += len(b)
    return done / (time.perf_counter() - start)


def _loadgen(oracle, sut_cls, workload, variant, predict, batch, threaded, out: Path):
    from experiments import loadgen_logs

    total = workload.total_sample_count
    with sut_cls(predict=predict, load_samples=lambda idx: workload.load_samples(idx, variant),
                 total_count=total, performance_count=total, batch_size=batch,
                 threaded=threaded) as sut:
        oracle.run(sut, "performance", out)
    log = loadgen_logs.read_detail(out)
    assert log.valid, (out, log.get("result_invalid_reason"))
    return log


def single_stream(width: float, resolution: int, rounds: int, duration_ms: int) -> dict:
    from tuner.worker.oracle import Calibration, LoadGenOracle, SystemUnderTest, user_conf
    from tuner.trial import Fidelity

    workload, variant, backend, samples, predict = _setup(width, resolution)
    dur = duration_ms / 1e3
    bare0 = _bare_single(backend, samples, 0.5)
    conf = user_conf(workload.loadgen_model, "SingleStream",
                     Fidelity("short", duration_ms, 64, duration_ms * 4), Calibration(bare0, 1 / bare0))
    tmp = Path(tempfile.mkdtemp(prefix="harness-ss-"))
    oracle = LoadGenOracle(workload.loadgen_model, "SingleStream", conf, tmp)
    out = {"bare": [], "sut": [], "legacy": [], "inside": []}
    legacy, times = _legacy_class(), []
    for r in range(rounds):
        out["bare"].append(_bare_single(backend, samples, dur))
        for name, cls in (("sut", SystemUnderTest), ("legacy", legacy),
                          ("timed", _timed_class(times))):
            log = _loadgen(oracle, cls, workload, variant, predict, 1, False, tmp / f"{name}{r}")
            if name == "timed":
                out["inside"].append(float(np.percentile(times, 90)))
                times.clear()
            else:
                out[name].append(log.get("result_90.00_percentile_latency_ns") / 1e9)
    return {k: statistics.median(v) for k, v in out.items()}


def offline(width: float, resolution: int, rounds: int, duration_ms: int) -> dict:
    from tuner.worker.oracle import Calibration, LoadGenOracle, SystemUnderTest, user_conf
    from tuner.trial import Fidelity

    workload, variant, backend, samples, predict = _setup(width, resolution)
    qps0 = _bare_offline(backend, samples, 0.5)
    conf = user_conf(workload.loadgen_model, "Offline",
                     Fidelity("short", duration_ms, 64, duration_ms * 4), Calibration(1 / qps0, qps0))
    tmp = Path(tempfile.mkdtemp(prefix="harness-off-"))
    oracle = LoadGenOracle(workload.loadgen_model, "Offline", conf, tmp)
    out = {"bare": [], "sut": [], "legacy": []}
    legacy = _legacy_class()
    for r in range(rounds):
        out["bare"].append(_bare_offline(backend, samples, duration_ms / 1e3))
        for name, cls in (("sut", SystemUnderTest), ("legacy", legacy)):
            log = _loadgen(oracle, cls, workload, variant, predict, OFFLINE_BATCH, True,
                           tmp / f"{name}{r}")
            out[name].append(float(log.get("result_samples_per_second")))
    return {k: statistics.median(v) for k, v in out.items()}


def null_model(scenario: str, rounds: int, duration_ms: int) -> dict:
    """The harness alone: a predict that returns a constant label, so LoadGen's figure is
    LoadGen + our SUT per query (or per sample) with no model time at all."""
    from tuner.worker.oracle import Calibration, LoadGenOracle, SystemUnderTest, user_conf
    from tuner.trial import Fidelity
    from workloads import create

    workload = create({"name": "digits"})
    variant = workload.variant(width=0.25, resolution=32)
    labels = np.zeros(OFFLINE_BATCH, np.int32)

    def predict(batch):
        return labels[:len(batch)]

    conf = user_conf(workload.loadgen_model, scenario,
                     Fidelity("short", duration_ms, 64, duration_ms * 4),
                     Calibration(2e-6, 2e6 if scenario == "Offline" else 5e5))
    tmp = Path(tempfile.mkdtemp(prefix="harness-null-"))
    oracle = LoadGenOracle(workload.loadgen_model, scenario, conf, tmp)
    threaded = scenario == "Offline"
    batch = OFFLINE_BATCH if threaded else 1
    key = "result_samples_per_second" if threaded else "result_90.00_percentile_latency_ns"
    out = {"sut": [], "legacy": []}
    legacy = _legacy_class()
    for r in range(rounds):
        for name, cls in (("sut", SystemUnderTest), ("legacy", legacy)):
            log = _loadgen(oracle, cls, workload, variant, predict, batch, threaded,
                           tmp / f"{name}{r}")
            out[name].append(float(log.get(key)))
    return {k: statistics.median(v) for k, v in out.items()}


def _in_fresh_process(fn, *args):
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-ms", type=int, default=1500)
    args = parser.parse_args()
    ss = _in_fresh_process(null_model, "SingleStream", args.rounds, 1000)
    off = _in_fresh_process(null_model, "Offline", args.rounds, 1000)
    print("The harness alone (a predict that returns a constant; LoadGen + SUT, no model):")
    print(f"  SingleStream p90 per query: {ss['sut'] / 1e3:6.2f} us   (before: "
          f"{ss['legacy'] / 1e3:6.2f} us)")
    print(f"  Offline per sample (batch {OFFLINE_BATCH}): {1e6 / off['sut']:6.2f} us   (before: "
          f"{1e6 / off['legacy']:6.2f} us)\n")
    print("SingleStream p90 (ORT, 1 thread): bare predict vs LoadGen through the SUT")
    print("  (inside ms: the predict call's own p90 during a LoadGen run; SUT - inside is what")
    print("   LoadGen + the SUT code add, inside - bare what running under LoadGen costs the model)")
    print(f"{'model':12s} {'bare ms':>8s} {'SUT ms':>8s} {'us/query':>9s} {'ratio':>6s} "
          f"{'inside ms':>9s} {'code us':>8s} | {'before ms':>9s} {'us/query':>9s} {'ratio':>6s}")
    for width, res in SIZES:
        f = _in_fresh_process(single_stream, width, res, args.rounds, args.duration_ms)
        b, s, old, inside = f["bare"], f["sut"], f["legacy"], f["inside"]
        print(f"w{width} r{res:<5d} {b * 1e3:8.3f} {s * 1e3:8.3f} {(s - b) * 1e6:9.1f} {s / b:6.3f} "
              f"{inside * 1e3:9.3f} {(s - inside) * 1e6:8.1f} | "
              f"{old * 1e3:9.3f} {(old - b) * 1e6:9.1f} {old / b:6.3f}")
    print(f"\nOffline samples/s, batch {OFFLINE_BATCH}: bare batched loop vs LoadGen through the SUT")
    print(f"{'model':12s} {'bare':>9s} {'SUT':>9s} {'ratio':>6s} | {'before':>9s} {'ratio':>6s}")
    for width, res in SIZES:
        f = _in_fresh_process(offline, width, res, args.rounds, args.duration_ms)
        b, s, old = f["bare"], f["sut"], f["legacy"]
        print(f"w{width} r{res:<5d} {b:9.0f} {s:9.0f} {s / b:6.3f} | {old:9.0f} {old / b:6.3f}")


if __name__ == "__main__":
    main()
