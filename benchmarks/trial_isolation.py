"""Per-trial cost of isolating a measurement: fork server vs a fresh Ray worker per trial.

Both keep LoadGen's "one FromConfig per process" rule; this prints what each costs per
trial on this machine, measured in one run (the ratio is the figure to read).

    python benchmarks/trial_isolation.py [--trials 6]
"""
from __future__ import annotations

import argparse
import statistics
import time

from tuner.trial import Fidelity, TrialConfig


def tiny_trial(i: int) -> TrialConfig:
    return TrialConfig(study="bench", trial=i, platform="bench", workload={"name": "digits"},
                       model={"width": 0.25, "resolution": 32, "precision": "fp32"},
                       backend="onnxruntime", knobs={"intra_op_threads": 1},
                       scenario="SingleStream", run_accuracy=False,
                       fidelity=Fidelity("short", 100, 64, 2000))


def fresh_worker(cfg: TrialConfig):
    from tuner.worker.measure import measure

    return measure(cfg)


def forked(cfg: TrialConfig):
    from tuner.worker.isolation import run_isolated

    return run_isolated(cfg, 120)


def main() -> None:
    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    variants = {"fresh Ray worker (max_calls=1)": ray.remote(max_calls=1, max_retries=0)(fresh_worker),
                "fork server (tuner.worker.isolation)": ray.remote(max_retries=0)(forked)}
    figures = {}
    for name, task in variants.items():
        ray.get(task.remote(tiny_trial(-1)))  # warm: model cache, first worker
        walls, inner = [], []
        for i in range(args.trials):
            start = time.perf_counter()
            result = ray.get(task.remote(tiny_trial(i)))
            walls.append(time.perf_counter() - start)
            inner.append(result.duration_s)
            assert result.ok and result.valid, result.cause
        overhead = statistics.median(w - d for w, d in zip(walls, inner))
        figures[name] = overhead
        print(f"{name:34s} median wall {statistics.median(walls):6.2f} s, "
              f"outside measure(): {overhead:6.2f} s per trial")
    ray.shutdown()
    fresh, fork = figures.values()
    print(f"isolation overhead ratio (fresh worker / fork server): {fresh / max(fork, 1e-3):.1f}x")


if __name__ == "__main__":
    main()
