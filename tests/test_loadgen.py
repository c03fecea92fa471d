"""The oracle on the real LoadGen: every scenario comes back VALID from a short run, and
metrics and accuracy are read from the logs LoadGen really wrote."""
from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import loadgen_logs
from tuner.trial import Fidelity, TrialConfig
from workloads.tasks.classification import top1
from workloads.digits import DigitsWorkload

VARIANT = {"width": 0.25, "resolution": 32, "precision": "fp32"}
SHORT = Fidelity("short", min_duration_ms=300, min_query_count=32, max_duration_ms=5000)


def trial(scenario: str, cache_dir, **options) -> TrialConfig:
    return TrialConfig(study="t", trial=0, platform="test", workload={"name": "digits"},
                       model=dict(VARIANT), backend="onnxruntime",
                       knobs={"intra_op_threads": 1}, scenario=scenario,
                       scenario_options=options, fidelity=SHORT, cache_dir=str(cache_dir))


@pytest.fixture(scope="module")
def results(cache_dir):
    from tests.conftest import _measure
    import multiprocessing as mp

    cfgs = {"SingleStream": trial("SingleStream", cache_dir),
            "MultiStream": trial("MultiStream", cache_dir),
            "Offline": trial("Offline", cache_dir, batch_size=8),
            # A generous latency bound: the test host is shared and its p99 is noisy.
            "Server": trial("Server", cache_dir, batch_size=1, server_load=0.2,
                            server_latency_ms=200)}
    out = {}
    for name, cfg in cfgs.items():
        with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            out[name] = pool.apply(_measure, (cfg,))
    return out


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Offline", "Server"])
def test_every_scenario_short_run_is_valid(results, scenario):
    r = results[scenario]
    assert r.ok, r.cause
    assert r.valid, r.cause
    detail = loadgen_logs.parse_detail(r.logs["performance/mlperf_log_detail.txt"])
    assert detail.errors == []  # one FromConfig per process: no "multiple conf files"
    assert detail.get("effective_scenario") == scenario
    # Official seeds: FromConfig with a user.conf, never hand-set TestSettings.
    assert detail.get("effective_sample_index_rng_seed") != 0
    assert r.latency_ms and r.latency_ms > 0


def test_metrics_are_the_detail_log_keys(results):
    ss = results["SingleStream"]
    detail = loadgen_logs.parse_detail(ss.logs["performance/mlperf_log_detail.txt"])
    assert ss.latency_ms == pytest.approx(detail.get("early_stopping_latency_ss") / 1e6)
    assert ss.p90_latency_ms == pytest.approx(detail.get("result_90.00_percentile_latency_ns") / 1e6)
    off = results["Offline"]
    detail = loadgen_logs.parse_detail(off.logs["performance/mlperf_log_detail.txt"])
    assert off.qps == pytest.approx(detail.get("result_samples_per_second"))
    srv = results["Server"]
    detail = loadgen_logs.parse_detail(srv.logs["performance/mlperf_log_detail.txt"])
    assert srv.qps == pytest.approx(detail.get("result_completed_samples_per_sec"))
    ms = results["MultiStream"]
    detail = loadgen_logs.parse_detail(ms.logs["performance/mlperf_log_detail.txt"])
    assert detail.get("effective_samples_per_query") == 8
    assert ms.latency_ms == pytest.approx(detail.get("early_stopping_latency_ms") / 1e6)


def test_accuracy_from_the_accuracy_log_matches_direct_inference(results, cache_dir, tmp_path):
    r = results["SingleStream"]
    path = tmp_path / "acc.json"
    path.write_text(r.logs["accuracy/mlperf_log_accuracy.json"])
    responses = loadgen_logs.read_accuracy_log(path)
    workload = DigitsWorkload(cache_dir=cache_dir)
    assert sorted(responses) == list(range(len(workload.labels)))  # whole held-out set
    direct = workload.reference_check(workload.variant(**VARIANT))
    assert r.accuracy == pytest.approx(direct)
    acc = workload.score(responses)
    assert (acc.metric, r.accuracy_metric) == ("top1", "top1")
    assert r.logs["accuracy/accuracy.txt"].strip() == acc.text
    assert acc.text.startswith(f"accuracy={100 * direct:.3f}%, good=")


def test_top1_counts_each_logged_sample():
    labels = np.array([3, 1, 4, 1])
    responses = {0: np.array([3], np.int32).tobytes(), 1: np.array([2], np.int32).tobytes(),
                 3: np.array([1], np.int32).tobytes()}
    acc = top1(responses, labels)
    assert (acc.good, acc.count) == (2, 3)
    assert acc.text == "accuracy=66.667%, good=2, total=3"


def test_parse_detail_flags_errors_and_survives_a_cut_line():
    lines = [
        ':::MLLOG {"key": "result_validity", "value": "INVALID", "metadata": {"is_error": false}}',
        ':::MLLOG {"key": "error_runtime", "value": "Ran out", "metadata": {"is_error": true}}',
        ':::MLLOG {"key": "result_invalid_reason", "value": "too short", "metadata": {}}',
        ':::MLLOG {"key": "early_stopping_latency_ss", "val',  # cut short by a crash
    ]
    log = loadgen_logs.parse_detail("\n".join(lines))
    assert not log.valid and log.errors == ["error_runtime: Ran out"]
    m = loadgen_logs.performance_metrics(log, "SingleStream")
    assert m.invalid_reason == "too short" and m.latency_ms is None


def test_user_conf_keeps_loadgen_rules_for_compliant_runs():
    from tuner.worker.oracle import Calibration, user_conf

    calib = Calibration(latency_s=0.002, throughput=400.0)
    short = user_conf("resnet50", "SingleStream", SHORT, calib)
    assert "resnet50.SingleStream.min_duration = 300" in short
    assert "target_latency = 1.2" in short  # below the calibrated 2 ms: LoadGen must not run dry
    compliant = user_conf("resnet50", "Offline", Fidelity.compliant_run(), calib)
    assert "min_duration" not in compliant and "min_query_count" not in compliant
    assert "resnet50.Offline.target_qps = 600.000" in compliant
    json.dumps(compliant)


def test_offline_retry_is_sized_from_the_faster_of_its_log_and_a_fresh_calibration():
    from tuner.worker.oracle import RETRY_THROUGHPUT_MARGIN, Calibration, recalibrate

    old = Calibration(latency_s=0.01, throughput=100.0)
    # a short run: 200 samples, the first done at 1 ms, the last at 21 ms (start-up cost
    # makes LoadGen's own samples/s read lower than the rate between them)
    detail = {"result_samples_per_second": 5000.0, "generated_samples_per_query": 201,
              "result_min_latency_ns": 1_000_000, "result_max_latency_ns": 21_000_000}
    between = 200 / 0.020
    planned = recalibrate(detail, "Offline", 1, old)
    assert planned.throughput == pytest.approx(between * RETRY_THROUGHPUT_MARGIN)
    # a moment's contention slowed that run: the fresh calibration is faster and wins
    fresh = Calibration(latency_s=0.001, throughput=50_000.0)
    assert recalibrate(detail, "Offline", 1, old, fresh).throughput == 50_000.0
    # a log with no figures keeps the old plan
    assert recalibrate({}, "Offline", 1, old).throughput == old.throughput
