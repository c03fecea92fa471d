"""Faults the measuring path must survive, each through the public path (``measure``):
a LoadGen run planned with the wrong expected speed, damaged or replaced model files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from experiments import loadgen_logs
from tuner.worker import model_files
from tuner.trial import Fidelity, TrialConfig
from workloads import create

VARIANT = {"width": 0.25, "resolution": 32, "precision": "fp32"}
SHORT = Fidelity("short", min_duration_ms=300, min_query_count=32, max_duration_ms=5000)
DETAIL = "performance/" + loadgen_logs.DETAIL


def trial(cache_dir, scenario="SingleStream", **fields) -> TrialConfig:
    options = {"batch_size": 8} if scenario == "Offline" else {}
    return TrialConfig(study="faults", trial=0, platform="test", workload={"name": "digits"},
                       model=dict(VARIANT), backend="onnxruntime",
                       knobs={"intra_op_threads": 1}, scenario=scenario,
                       scenario_options=options, fidelity=SHORT, cache_dir=str(cache_dir),
                       **fields)


def model_path(cache_dir, **variant) -> Path:
    workload = create({"name": "digits"}, cache_dir=str(cache_dir))
    return workload.model_file(workload.variant(**{**VARIANT, **variant}))


# --- a harness miss: LoadGen told the wrong expected speed ------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["SingleStream", "Offline"])
def test_wrong_expected_speed_is_recalibrated_and_retried(measure_fresh, cache_dir, scenario):
    # 50x too slow a plan: LoadGen pre-generates far too few queries and the run ends early.
    r = measure_fresh(trial(cache_dir, scenario, calibration_scale=50.0, run_accuracy=False))
    assert r.ok, r.cause
    assert r.system["performance_attempts"] == 2
    first = loadgen_logs.parse_detail(r.logs["performance_attempt_1/" + loadgen_logs.DETAIL])
    assert not first.valid
    reason = r.settings["retries"][0]["reason"].lower()
    assert "expected" in reason or "ran out" in reason
    final = loadgen_logs.parse_detail(r.logs[DETAIL])  # what the packer reads
    assert final.valid and r.valid, r.cause
    assert "performance_attempt_1/user.conf" in r.logs and "user.conf" in r.logs
    assert r.logs["performance_attempt_1/user.conf"] != r.logs["user.conf"]


def test_a_miss_without_retries_is_infeasible_with_its_cause(measure_fresh, cache_dir):
    r = measure_fresh(trial(cache_dir, calibration_scale=50.0, harness_retries=0,
                            run_accuracy=False))
    assert r.ok and not r.valid
    assert r.system["performance_attempts"] == 1
    assert r.cause.startswith("LoadGen INVALID: ") and "expected latency" in r.cause


def test_trial_timings_are_recorded(measure_fresh, cache_dir):
    r = measure_fresh(trial(cache_dir))
    assert r.ok and r.valid, r.cause
    t = r.system["timings_s"]
    for part in ("workload", "model_file", "model_check", "runtime_session", "calibration",
                 "performance", "accuracy", "measure"):
        assert t[part] >= 0.0, part
    assert t["performance"] < t["measure"]


# --- damaged or replaced model files ------------------------------------------------------
@pytest.fixture
def own_cache(tmp_path):
    """A cache of this test's own: these tests damage its files."""
    return tmp_path / "cache"


def test_truncated_cached_model_is_rebuilt(measure_fresh, own_cache):
    first = measure_fresh(trial(own_cache, run_accuracy=False))
    assert first.ok and first.valid, first.cause
    path = model_path(own_cache)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])  # a copy that died a third of the way
    r = measure_fresh(trial(own_cache, run_accuracy=False))
    assert r.ok and r.valid, r.cause
    assert str(path) in r.system["model_rebuilt"] and "changed" in r.system["model_rebuilt"]
    assert path.read_bytes() == good
    assert r.system["model_sha256"] == first.system["model_sha256"]


def test_corrupt_cached_model_never_seen_before_is_rebuilt(measure_fresh, own_cache):
    path = model_path(own_cache)
    good = path.read_bytes()
    path.write_bytes(b"not an onnx model" * 100)
    r = measure_fresh(trial(own_cache, run_accuracy=False))
    assert r.ok and r.valid, r.cause
    assert str(path) in r.system["model_rebuilt"] and "did not load" in r.system["model_rebuilt"]
    assert path.read_bytes() == good


def test_cached_model_replaced_between_trials_is_rebuilt(measure_fresh, own_cache):
    first = measure_fresh(trial(own_cache, run_accuracy=False))
    assert first.ok, first.cause
    path = model_path(own_cache)
    other = model_path(own_cache, width=0.5)  # a valid model, but another one
    tmp = path.with_name("swap.tmp")
    tmp.write_bytes(other.read_bytes())
    os.replace(tmp, path)
    r = measure_fresh(trial(own_cache, run_accuracy=False))
    assert r.ok and r.valid, r.cause
    assert "changed since it was built" in r.system["model_rebuilt"]
    assert r.system["model_sha256"] == first.system["model_sha256"]


def test_user_model_replaced_during_a_study_is_refused(tmp_path):
    cache, model = tmp_path / "cache", tmp_path / "mine.onnx"
    model.write_bytes(b"first model")
    assert model_files.check(model, cache, "s1").problem is None
    assert model_files.check(model, cache, "s1").problem is None  # unchanged: no re-hash
    replacement = tmp_path / "new.onnx"
    replacement.write_bytes(b"second model")
    os.replace(replacement, model)
    with pytest.raises(model_files.ModelFileError, match=str(model)):
        model_files.check(model, cache, "s1")
    # a new study takes the file as it is now
    assert model_files.check(model, cache, "s2").sha256 == model_files.sha256_file(model)
