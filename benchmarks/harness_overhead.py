"""What the measuring harness adds: LoadGen through our SUT vs a bare loop doing the same work.

"The same work" is the workload's responder called in a plain loop: batching samples into
the model's named inputs, the runtime (ONNX Runtime, 1 thread), decoding (argmax; box
decoding + NMS for detection; per-pair predictions for DLRM) and encoding the response
bytes. The harness is everything else: LoadGen's scheduling and logging, the QSL, the SUT's
hand-off of samples and addresses. Each row runs in its own fresh process (LoadGen allows
one FromConfig per process); bare and LoadGen rounds interleave and medians are printed.

    python benchmarks/harness_overhead.py [--rounds 3] [--duration-ms 1500] [--rows digits,detection,dlrm]

Goals: <= 15 us per query and SingleStream ratio <= 1.02 at >= 1 ms (classification, issue
12); SingleStream p90 within 2% of the bare loop on the default detector (issue 17);
Offline throughput at least 98% of the bare loop on the default DLRM (issue 20).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

# (row name, workload config, model params, scenario, batch size)
ROWS = {
    "digits": [("digits w0.25 r32", {"name": "digits"}, {"width": 0.25, "resolution": 32}),
               ("digits w0.5 r64", {"name": "digits"}, {"width": 0.5, "resolution": 64}),
               ("digits w1.0 r96", {"name": "digits"}, {"width": 1.0, "resolution": 96})],
    "detection": [("digit_canvases default", {"name": "digit_canvases"}, {}),
                  ("digit_canvases, NMS in graph", {"name": "digit_canvases"},
                   {"nms": "model"})],
    "dlrm": [("click_logs default", {"name": "click_logs"}, {})],
}
SCENARIOS = {"digits": ("SingleStream", "Offline"), "detection": ("SingleStream", "Offline"),
             "dlrm": ("Offline",)}
OFFLINE_BATCH = {"digits": 8, "detection": 8, "dlrm": 2048}  # the batch knob (DLRM: pairs)


def _setup(workload_cfg: dict, params: dict, batch: int):
    import backends
    from workloads import create

    workload = create(workload_cfg)
    variant = workload.variant(**params)
    backend = backends.load("onnxruntime", str(workload.model_file(variant)),
                            {"intra_op_threads": 1}, None)
    samples = list(workload.load_samples(list(range(workload.total_sample_count)), variant))
    respond = workload.responder(variant, backend.predict, backend.inputs, backend.outputs,
                                 batch)
    for _ in range(20):
        respond(samples[:1])
    return workload, variant, samples, respond, workload.samples_per_batch(batch)


def _bare_single(respond, samples, duration_s: float) -> float:
    """p90 seconds of one-sample responses in LoadGen-like random order."""
    rng = np.random.default_rng(0)
    times, one = [], [None]
    end = time.perf_counter() + duration_s
    while time.perf_counter() < end:
        one[0] = samples[int(rng.integers(len(samples)))]
        t = time.perf_counter()
        respond(one)
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 90))


def _bare_offline(respond, samples, batch: int, duration_s: float) -> float:
    chunks = [samples[i:i + batch] for i in range(0, len(samples) - batch + 1, batch)]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration_s:
        for chunk in chunks:
            respond(chunk)
            done += len(chunk)
    return done / (time.perf_counter() - start)


def measure_row(workload_cfg: dict, params: dict, scenario: str, batch: int, rounds: int,
                duration_ms: int) -> dict:
    from experiments import loadgen_logs
    from tuner.trial import Fidelity
    from tuner.worker.oracle import Calibration, LoadGenOracle, SystemUnderTest, user_conf

    workload, variant, samples, respond, batch = _setup(workload_cfg, params, batch)
    single = scenario == "SingleStream"
    dur = duration_ms / 1e3
    if single:
        bare0 = _bare_single(respond, samples, 0.5)
        calib = Calibration(bare0, 1 / bare0)
    else:
        qps0 = _bare_offline(respond, samples, batch, 0.5)
        calib = Calibration(1 / qps0, qps0)
    conf = user_conf(workload.loadgen_model, scenario,
                     Fidelity("short", duration_ms, 64, duration_ms * 4), calib)
    tmp = Path(tempfile.mkdtemp(prefix="harness-"))
    oracle = LoadGenOracle(workload.loadgen_model, scenario, conf, tmp)
    total = workload.total_sample_count
    out = {"bare": [], "sut": []}
    for r in range(rounds):
        out["bare"].append(_bare_single(respond, samples, dur) if single
                           else _bare_offline(respond, samples, batch, dur))
        with SystemUnderTest(respond=respond, load_samples=lambda idx: [samples[i] for i in idx],
                             total_count=total, performance_count=total,
                             batch_size=1 if single else batch, threaded=not single) as sut:
            oracle.run(sut, "performance", tmp / f"sut{r}")
        log = loadgen_logs.read_detail(tmp / f"sut{r}")
        assert log.valid, (tmp, log.get("result_invalid_reason"))
        out["sut"].append(log.get("result_90.00_percentile_latency_ns") / 1e9 if single
                          else float(log.get("result_samples_per_second")))
    return {k: statistics.median(v) for k, v in out.items()}


def _in_fresh_process(fn, *args):
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-ms", type=int, default=1500)
    parser.add_argument("--rows", default="digits,detection,dlrm")
    args = parser.parse_args()
    import workloads

    for group in args.rows.split(","):
        for scenario in SCENARIOS[group]:
            single = scenario == "SingleStream"
            print(f"\n{scenario} ({'p90 latency' if single else 'samples/s'}), ORT 1 thread: "
                  "bare responder loop vs LoadGen through the SUT")
            print(f"{'row':30s} {'bare':>10s} {'SUT':>10s} {'us/query' if single else 'ratio':>9s}"
                  f" {'ratio':>6s}")
            for name, wcfg, params in ROWS[group]:
                if wcfg["name"] not in workloads.names():
                    print(f"{name:30s} (workload not installed)")
                    continue
                f = _in_fresh_process(measure_row, wcfg, params, scenario,
                                      OFFLINE_BATCH[group], args.rounds, args.duration_ms)
                b, s = f["bare"], f["sut"]
                if single:
                    print(f"{name:30s} {b * 1e3:8.3f}ms {s * 1e3:8.3f}ms {(s - b) * 1e6:9.1f} "
                          f"{s / b:6.3f}")
                else:
                    print(f"{name:30s} {b:10.0f} {s:10.0f} {s / b:9.3f} {s / b:6.3f}")


if __name__ == "__main__":
    main()
