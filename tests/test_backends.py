"""Runtime availability: every backend says whether this node can run it, and a trial on
a runtime the node lacks is a clear cause, never a crash."""
from __future__ import annotations

import pytest

import backends
from tuner.trial import Fidelity, TrialConfig


def test_every_registered_backend_reports_availability():
    report = backends.availability()
    assert set(report) == set(backends.names())
    assert report["onnxruntime"] is None  # a core dependency
    for name, why in report.items():
        assert why is None or (isinstance(why, str) and why)


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(KeyError, match="onnxruntime"):
        backends.get("nosuch")


@pytest.mark.skipif(backends.get("tensorrt").available() is None, reason="a TensorRT node")
def test_tensorrt_without_gpu_is_a_clear_cause(measure_fresh, cache_dir):
    cfg = TrialConfig(study="t", trial=0, platform="cpu", workload={"name": "digits"},
                      model={"width": 0.25, "resolution": 32, "precision": "fp32"},
                      backend="tensorrt", knobs={"fp16": True}, scenario="SingleStream",
                      fidelity=Fidelity("short", 300, 32), cache_dir=str(cache_dir))
    result = measure_fresh(cfg)
    assert not result.ok
    assert result.cause.startswith("runtime unavailable") and "TensorrtExecutionProvider" in result.cause


def test_unknown_knob_is_named(cache_dir):
    from tuner.workloads.digits import DigitsWorkload

    w = DigitsWorkload(cache_dir=cache_dir)
    path = w.model_file(w.variant(width=0.25, resolution=32, precision="fp32"))
    with pytest.raises(ValueError, match="intra_op_thread"):
        backends.load("onnxruntime", str(path), {"intra_op_thread": 1})
