"""LiteRT: .tflite models written without TensorFlow agree with the ONNX ones, and a real
LoadGen trial runs on them. Skipped where ai-edge-litert is not installed."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

import backends  # noqa: E402
from backends.base import BackendUnavailable  # noqa: E402
from tuner.trial import Fidelity, TrialConfig  # noqa: E402
from tests.conftest import predict_nchw  # noqa: E402
from workloads.digits import DigitsWorkload  # noqa: E402

WIDTH = 0.25  # the width whose weights ship in assets/
AGREEMENT_RESOLUTIONS = (32, 64)


@pytest.fixture(scope="module")
def workload(cache_dir) -> DigitsWorkload:
    return DigitsWorkload(cache_dir=cache_dir)


def _predict(backend_name: str, path, x: np.ndarray, options: dict | None = None) -> np.ndarray:
    backend = backends.load(backend_name, str(path), options or {})
    try:
        return predict_nchw(backend, x)
    finally:
        backend.close()


def _held_out(workload: DigitsWorkload, variant) -> np.ndarray:
    return workload.load_batch(list(range(workload.total_sample_count)), variant)


@pytest.mark.parametrize("resolution", AGREEMENT_RESOLUTIONS)
def test_tflite_agrees_with_onnx(workload, resolution):
    fp32 = workload.variant(WIDTH, resolution, "fp32")
    x = _held_out(workload, fp32)
    ref = _predict("onnxruntime", workload.model_file(fp32, "onnx"), x, {"intra_op_threads": 1})
    # the whole held-out set in one call: exercises resize_tensor_input for batch > 1
    got = _predict("litert", workload.model_file(fp32, "tflite"), x, {"num_threads": 1})
    assert got.shape == ref.shape == (len(x), workload.num_classes)
    agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
    assert agree >= 0.995, f"fp32 top-1 agreement {agree:.4f}"
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3)

    int8 = workload.variant(WIDTH, resolution, "int8")
    q = _predict("litert", workload.model_file(int8, "tflite"), x, {"num_threads": 1})
    q_agree = float(np.mean(q.argmax(1) == ref.argmax(1)))
    q_top1 = float(np.mean(workload.postprocess(q) == workload.labels))
    ref_top1 = float(np.mean(workload.postprocess(ref) == workload.labels))
    print(f"\nw{WIDTH} r{resolution}: fp32 agreement {agree:.4f} (max |dlogit| "
          f"{np.abs(got - ref).max():.2e}); int8 agreement {q_agree:.4f}, "
          f"top-1 int8 {q_top1:.4f} vs ONNX fp32 {ref_top1:.4f}")
    # full-integer PTQ of a small model: a few flips, never a collapse
    assert q_agree >= 0.97, f"int8 top-1 agreement {q_agree:.4f}"
    assert abs(q_top1 - ref_top1) <= 0.02


def test_model_file_is_cached(workload):
    variant = workload.variant(WIDTH, 32, "int8")
    first = workload.model_file(variant, "tflite")
    stamp = first.stat().st_mtime_ns
    again = workload.model_file(variant, "tflite")
    assert again == first and again.stat().st_mtime_ns == stamp
    assert first.suffix == ".tflite" and first.read_bytes()[4:8] == b"TFL3"
    assert workload.model_file(workload.variant(WIDTH, 32, "fp32"), "tflite") != first


def test_edgetpu_model_needs_compiling(workload):
    with pytest.raises(FileNotFoundError, match="edgetpu_compiler"):
        workload.model_file(workload.variant(WIDTH, 32, "int8"), "edgetpu_tflite")


def test_xnnpack_off_and_options(workload):
    x = _held_out(workload, workload.variant(WIDTH, 32))[:64]
    for precision in ("fp32", "int8"):
        path = workload.model_file(workload.variant(WIDTH, 32, precision), "tflite")
        on = _predict("litert", path, x, {"num_threads": 1, "xnnpack": True})
        off = _predict("litert", path, x, {"num_threads": 2, "xnnpack": False})
        assert off.shape == (64, workload.num_classes)
        assert np.mean(on.argmax(1) == off.argmax(1)) >= 0.98
    # one sample at a time after a batch: shrinking back to batch 1 works too
    backend = backends.load("litert", str(path), {"xnnpack": False})
    assert backend.inputs[0].shape == (1, 32, 32, 3)  # NHWC, as TFLite takes it
    predict_nchw(backend, x[:8])
    assert predict_nchw(backend, x[:1]).shape == (1, workload.num_classes)
    backend.close()
    with pytest.raises(ValueError, match="unknown option"):
        backends.load("litert", str(path), {"threads": 1})


def test_edgetpu_unavailable_is_clear(workload, cache_dir):
    path = workload.model_file(workload.variant(WIDTH, 32, "int8"), "tflite")
    with pytest.raises(BackendUnavailable, match="libedgetpu"):
        backends.load("litert", str(path), {"edgetpu": True})
    # through the trial runner: a result with a cause, not a crash (fails before LoadGen)
    from tuner.worker.measure import measure

    result = measure(_trial(cache_dir, "int8", {"edgetpu": True}))
    assert not result.ok
    assert result.cause.startswith("runtime unavailable") and "libedgetpu" in result.cause


def test_registry_and_availability():
    assert "litert" in backends.names()
    cls = backends.get("litert")
    assert cls.model_format == "tflite" and cls.available() is None
    assert cls.version().startswith("2.")


def _trial(cache_dir, precision: str, knobs: dict) -> TrialConfig:
    return TrialConfig(study="test-litert", trial=0, platform="local",
                       workload={"name": "digits"},
                       model={"width": WIDTH, "resolution": 32, "precision": precision},
                       backend="litert", knobs=knobs, scenario="SingleStream",
                       fidelity=Fidelity(min_duration_ms=300, min_query_count=32),
                       cache_dir=str(cache_dir))


@pytest.mark.slow
def test_litert_trial_through_loadgen(workload, cache_dir, measure_fresh):
    result = measure_fresh(_trial(cache_dir, "fp32", {"num_threads": 1, "xnnpack": True}))
    assert result.ok, result.cause or result.logs.get("error.txt")
    assert result.valid, result.cause
    assert result.system["runtime"] == "litert" and result.system["model_file"].endswith(".tflite")
    assert result.latency_ms and result.latency_ms > 0
    onnx_top1 = workload.reference_check(workload.variant(WIDTH, 32, "fp32"))
    assert result.accuracy_total == workload.total_sample_count
    assert abs(result.accuracy - onnx_top1) <= 0.02, (result.accuracy, onnx_top1)
    print(f"\nLoadGen SingleStream litert w{WIDTH} r32 fp32: latency {result.latency_ms:.3f} ms, "
          f"top-1 {result.accuracy:.4f} (ONNX {onnx_top1:.4f})")


def test_missing_schema_is_a_clear_error(monkeypatch):
    import sys

    from workloads.models import tflite_export

    import ai_edge_litert

    # as if the wheel lacked the module: neither imported nor importable
    monkeypatch.delattr(ai_edge_litert, "schema_py_generated", raising=False)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.schema_py_generated", None)
    with pytest.raises(ImportError, match="ai-edge-litert"):
        tflite_export.schema()
