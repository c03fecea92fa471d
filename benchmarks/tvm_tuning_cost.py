"""What one MetaSchedule tuning costs, and what it buys: for each digits variant, the time
to build it untuned and tuned (a fresh cache, so both really build), and the median
latency of a batch-1 predict loop on each build, with the ratio.

    python benchmarks/tvm_tuning_cost.py --trials 64 --variants 0.25/32 1.0/96

Decides whether ``conf/backend/tvm.yaml`` can search a tuned budget in the default run.
A predict loop is a rough latency (LoadGen is the oracle in trials); the ratio is what
this script is for.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

import backends
from workloads.digits import DigitsWorkload


def _median_ms(backend, runs: int = 200) -> float:
    x = np.random.default_rng(0).random(backend.input_shape, dtype=np.float32)
    backend.warmup(x)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        backend.predict(x)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", nargs="+", default=["0.25/32", "1.0/96"],
                    help="width/resolution pairs")
    args = ap.parse_args()
    workload = DigitsWorkload()
    for item in args.variants:
        width, resolution = item.split("/")
        path = str(workload.model_file(workload.variant(float(width), int(resolution), "fp32")))
        cache = tempfile.mkdtemp(prefix="tvm-tuning-cost-")
        figures = {}
        for trials in (0, args.trials):
            started = time.perf_counter()
            backend = backends.load("tvm", path, {"num_threads": args.threads,
                                                  "tuning_trials": trials}, cache_dir=cache)
            build_s = time.perf_counter() - started
            figures[trials] = (build_s, _median_ms(backend))
            backend.close()
        (b0, l0), (bt, lt) = figures[0], figures[args.trials]
        print(f"w{width}/r{resolution}, {args.threads} thread(s): untuned build {b0:.1f} s, "
              f"{l0:.3f} ms; {args.trials} trials build+tune {bt:.1f} s, {lt:.3f} ms; "
              f"speed-up {l0 / lt:.1f}x", flush=True)


if __name__ == "__main__":
    main()
