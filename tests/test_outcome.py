"""How a result becomes a record, and what the worker records for the packer: the bugs the
redesign review found, each on the real stack where it lives there."""
from __future__ import annotations

import json

import pytest

from experiments import loadgen_logs
from tuner.accuracy.floor import AccuracyFloor
from tuner.study.outcome import classify
from tuner.trial import Fidelity, TrialConfig, TrialResult


def row(study, accuracy, system=None, params=None, state="complete"):
    return {"study": study, "accuracy": accuracy, "state": state,
            "system": json.dumps(system or {}), "params": json.dumps(params or {})}


def test_floor_follows_the_best_fp32_even_without_a_precision_dimension():
    # Bring-your-own ImageNet: the space has no `precision`; the worker records the
    # variant's own precision, and the floor follows it.
    floor = AccuracyFloor(fixed=None, fraction=0.99)
    assert floor.value("s") == 0.0
    floor.observe(row("s", 0.76, system={"precision": "fp32"}, params={"model": "resnet50"}))
    floor.observe(row("s", 0.90, system={"precision": "int8"}))  # not the reference
    floor.observe(row("other", 0.99, system={"precision": "fp32"}))  # another study
    assert floor.value("s") == pytest.approx(0.99 * 0.76)
    floor.observe(row("s", 0.80, params={"precision": "fp32"}))  # an older record
    assert floor.value("s") == pytest.approx(0.99 * 0.80)
    assert AccuracyFloor(0.5, 0.99).value("s") == 0.5


def test_one_fp32_reference_for_the_floor_and_the_paired_pass():
    # an estimate is never the reference; a whole-set figure is, whatever its source; the
    # paired pass needs the reference's own responses: a measured pass with its logs
    floor = AccuracyFloor(fixed=None, fraction=0.5)
    fp32 = {"precision": "fp32"}
    measured = {**row("s", 0.80, system=fp32), "accuracy_source": "measured",
                "log_dir": "trials/s/00001/short", "accuracy_key": "k"}
    floor.observe({**row("s", 0.95, system=fp32), "accuracy_low": 0.93,
                   "accuracy_source": "estimated", "log_dir": "x", "accuracy_key": "k"})
    assert floor.value("s") == 0.0 and floor.reference.paired("s") is None
    floor.observe(measured)
    floor.observe({**row("s", 0.90, system=fp32), "accuracy_source": "inherited",
                   "log_dir": "y", "accuracy_key": "k"})
    floor.observe({**row("s", 0.99, system=fp32, state="failed"), "accuracy_source": "measured",
                   "log_dir": "z", "accuracy_key": "k"})
    assert floor.value("s") == pytest.approx(0.45)
    assert floor.reference.paired("s") is measured


def test_classify_states_and_causes():
    assert classify(TrialResult(ok=False, cause="crashed: SIGSEGV"), 0.5) == ("failed", "crashed: SIGSEGV")
    assert classify(TrialResult(ok=True, valid=False), 0.5) == ("infeasible", "LoadGen run INVALID")
    state, cause = classify(TrialResult(ok=True, valid=True, accuracy=0.4), 0.5)
    assert state == "infeasible" and "below floor 0.5000" in cause
    assert classify(TrialResult(ok=True, valid=True, accuracy=0.6), 0.5) == ("complete", None)


def trial(cache_dir, backend="onnxruntime", **model) -> TrialConfig:
    return TrialConfig(study="t", trial=0, platform="test", workload={"name": "digits"},
                       model={"width": 0.25, "resolution": 32, "precision": "fp32", **model},
                       backend=backend, knobs={}, scenario="SingleStream",
                       fidelity=Fidelity("short", 300, 32, 5000), accuracy_sample_count=50,
                       cache_dir=str(cache_dir))


def test_accuracy_sample_count_shortens_only_the_accuracy_run(cache_dir, measure_fresh):
    r = measure_fresh(trial(cache_dir))
    assert r.ok and r.valid, r.cause
    assert r.accuracy_total == 50
    perf = loadgen_logs.parse_detail(r.logs["performance/mlperf_log_detail.txt"])
    assert perf.get("qsl_reported_total_count") == 359  # the whole held-out set
    # what the packer needs, recorded by the worker
    assert (r.system["precision"], r.system["benchmark"], r.system["dataset_size"]) == \
        ("fp32", "resnet", 359)
    assert r.system["weights"]["starting_weights_filename"] == "mobilenet_v1_digits_w0.25.npz"


def test_litert_int8_is_described_as_its_own_quantization(cache_dir, measure_fresh):
    import backends

    if backends.get("litert").available() is not None:
        pytest.skip("LiteRT not installed")
    r = measure_fresh(trial(cache_dir, backend="litert", precision="int8"))
    assert r.ok, r.cause
    steps = r.system["weights"]["weight_transformations"]
    assert "TFLite exporter" in steps and "ONNX Runtime QDQ" not in steps
