"""Where a trial's time goes outside LoadGen's performance run, part by part.

Runs default-fidelity trials (SingleStream, 1 s minimum duration, the whole accuracy set)
as the study does: a Ray task on a local cluster (127.0.0.1) that forks the trial from
``tuner.worker.isolation``'s fork server; then records the result as the driver would (log files +
``experiments.records``). The parts come from ``TrialResult.system["timings_s"]`` (written
by ``tuner.worker.measure`` and ``tuner.worker.isolation``); dispatch is the Ray task's wall time minus
the isolated run, recording is timed here.

    python benchmarks/trial_overhead.py [--trials 5] [--width 0.5 --resolution 64]

Goal (issue 12): everything but the performance run < 2% of the trial.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tuner.trial import Fidelity, TrialConfig

ORDER = ("dispatch", "isolation_start", "workload", "model_file", "model_check",
         "runtime_session", "facts", "warmup", "calibration", "loadgen_setup",
         "sample_loading", "performance", "performance_retry", "logs", "accuracy",
         "teardown", "other_in_measure", "result_transfer", "recording")


def default_trial(i: int, width: float, resolution: int) -> TrialConfig:
    return TrialConfig(study="bench", trial=i, platform="bench", workload={"name": "digits"},
                       model={"width": width, "resolution": resolution, "precision": "fp32"},
                       backend="onnxruntime", knobs={"intra_op_threads": 1},
                       scenario="SingleStream", fidelity=Fidelity())


def isolated(cfg: TrialConfig):
    from tuner.worker.isolation import run_isolated

    return run_isolated(cfg, 300)


def record(run_dir: Path, rec, cfg: TrialConfig, result) -> float:
    """What the driver does with a result: its log files, then one row."""
    start = time.perf_counter()
    log_dir = run_dir / "trials" / f"{cfg.trial:05d}"
    for rel, text in result.logs.items():
        path = log_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    rec.add({"study": cfg.study, "trial": cfg.trial, "state": "complete", "fidelity": "short",
             "platform": cfg.platform, "node": result.node, "backend": cfg.backend,
             "model": result.model_name, "scenario": cfg.scenario, "objective": "latency_ms",
             "params": json.dumps(cfg.params), "latency_ms": result.latency_ms,
             "p90_latency_ms": result.p90_latency_ms, "qps": result.qps,
             "accuracy": result.accuracy, "valid": result.valid, "cause": result.cause,
             "started_at": result.started_at, "duration_s": result.duration_s,
             "log_dir": str(log_dir.relative_to(run_dir)), "config": json.dumps(cfg.to_dict()),
             "system": json.dumps(result.system, default=str)})
    return time.perf_counter() - start


def parts_of(wall: float, result, recording: float) -> dict[str, float]:
    t = dict(result.system["timings_s"])
    parts = {name: t.get(name, 0.0) for name in ORDER}
    parts["dispatch"] = wall - t["isolated"]
    known = sum(t.get(n, 0.0) for n in ORDER if n not in ("dispatch", "isolation_start",
                                                         "result_transfer", "recording"))
    parts["other_in_measure"] = t["measure"] - known
    parts["recording"] = recording
    # what isolation spends besides starting the child and bringing the result back
    parts["result_transfer"] += t["isolated"] - t["measure"] - t["isolation_start"] \
        - t["result_transfer"]
    return parts


def main() -> None:
    import ray

    from experiments.records import Records

    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    task = ray.remote(max_retries=0)(isolated)
    run_dir = Path(tempfile.mkdtemp(prefix="trial-overhead-"))
    rec = Records(run_dir)
    try:
        ray.get(task.remote(default_trial(-1, args.width, args.resolution)))  # warm: cache, worker
        per_trial = []
        for i in range(args.trials):
            cfg = default_trial(i, args.width, args.resolution)
            start = time.perf_counter()
            result = ray.get(task.remote(cfg))
            wall = time.perf_counter() - start
            assert result.ok and result.valid, result.cause
            per_trial.append(parts_of(wall, result, record(run_dir, rec, cfg, result)))
    finally:
        ray.shutdown()
    med = {n: statistics.median(p[n] for p in per_trial) for n in ORDER}
    total = statistics.median(sum(p.values()) for p in per_trial)
    outside = statistics.median(sum(v for n, v in p.items() if n != "performance")
                                for p in per_trial)
    no_acc = statistics.median(sum(v for n, v in p.items() if n not in ("performance", "accuracy"))
                               for p in per_trial)
    print(f"default trial: digits w{args.width} r{args.resolution} fp32, ORT 1 thread, "
          f"SingleStream, {args.trials} trials (medians)")
    for name in ORDER:
        print(f"  {name:18s} {med[name] * 1e3:9.1f} ms  {100 * med[name] / total:5.1f}%")
    print(f"  {'trial total':18s} {total * 1e3:9.1f} ms")
    print(f"outside the performance run: {outside * 1e3:.0f} ms = {100 * outside / total:.1f}% "
          f"of the trial (goal < 2%)")
    print(f"  of which the LoadGen accuracy run: {med['accuracy'] * 1e3:.0f} ms; everything "
          f"else: {no_acc * 1e3:.0f} ms = {100 * no_acc / total:.1f}%")


if __name__ == "__main__":
    main()
