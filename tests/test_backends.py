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
    from workloads.digits import DigitsWorkload

    w = DigitsWorkload(cache_dir=cache_dir)
    path = w.model_file(w.variant(width=0.25, resolution=32, precision="fp32"))
    with pytest.raises(ValueError, match="intra_op_thread"):
        backends.load("onnxruntime", str(path), {"intra_op_thread": 1})


def test_cpu_names_from_cpuinfo():
    """One table maps /proc/cpuinfo to CPU names, for display and for TVM's LLVM mcpu."""
    from backends.tvm_target import arm_core_name, llvm_cpu_from_cpuinfo

    assert arm_core_name("0xd08") == "Cortex-A72" and arm_core_name(0xd0c) == "Neoverse-N1"
    assert arm_core_name("0x999") is None and arm_core_name("n/a") is None
    pi4 = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n"
    assert llvm_cpu_from_cpuinfo(pi4) == "cortex-a72"
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse4_2 avx avx2 fma\n"
    assert llvm_cpu_from_cpuinfo(x86) == "haswell"
    assert llvm_cpu_from_cpuinfo("processor\t: 0\n") is None


def test_cache_publishes_whole_artifacts_once(tmp_path):
    """A builder that fails leaves nothing behind; a published artifact is not rebuilt."""
    from backends.cache import atomic_write_bytes, publish_dir, publish_file

    calls = []

    def build_file(tmp):
        calls.append(tmp)
        tmp.write_bytes(b"engine")

    target = tmp_path / "tvm" / "model.so"
    assert publish_file(target, build_file).read_bytes() == b"engine"
    publish_file(target, build_file)
    assert len(calls) == 1 and calls[0].suffix == ".so"  # temp names keep the suffix

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError):
        publish_file(tmp_path / "tvm" / "other.so", broken)
    def broken_dir(tmp):
        (tmp / "records.json").write_text("[")
        raise RuntimeError("tuning crashed")

    with pytest.raises(RuntimeError):
        publish_dir(tmp_path / "tvm" / "db", broken_dir)
    left = sorted(p.name for p in (tmp_path / "tvm").iterdir() if not p.name.endswith(".lock"))
    assert left == ["model.so"], left

    publish_dir(tmp_path / "tvm" / "db", lambda tmp: (tmp / "records.json").write_text("[]"))
    assert (tmp_path / "tvm" / "db" / "records.json").read_text() == "[]"
    atomic_write_bytes(tmp_path / "crops" / "a.npy", b"crop")
    assert [p.name for p in (tmp_path / "crops").iterdir()] == ["a.npy"]


def _three_outputs(path):
    """An ONNX model whose outputs are declared out of alphabetical order, with values that
    tell them apart: zeta = x + 1, alpha = 2x, mid = x - 3."""
    import onnx
    from onnx import TensorProto, helper

    c = lambda name, v: helper.make_tensor(name, TensorProto.FLOAT, [], [v])  # noqa: E731
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["zeta"]),
         helper.make_node("Mul", ["x", "two"], ["alpha"]),
         helper.make_node("Sub", ["x", "three"], ["mid"])], "order",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4])
         for n in ("zeta", "alpha", "mid")],
        [c("one", 1.0), c("two", 2.0), c("three", 3.0)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("name", ["onnxruntime", "tvm", "tensorrt"])
def test_onnx_runtimes_keep_outputs_in_the_models_order(name, tmp_path, cache_dir):
    """What backends/base.py promises and the responders rely on: ``outputs`` lists the
    model file's outputs in its order, and ``predict`` returns them in that order."""
    import numpy as np

    cls = backends.get(name)
    if cls.available():
        pytest.skip(cls.available())
    backend = cls(str(_three_outputs(tmp_path / "order.onnx")), {}, str(cache_dir))
    backend.load()
    try:
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        outs = backend.predict({"x": x})
        assert [s.name for s in backend.outputs] == ["zeta", "alpha", "mid"]
        expected = {"zeta": x + 1, "alpha": 2 * x, "mid": x - 3}
        for spec, out in zip(backend.outputs, outs, strict=True):
            np.testing.assert_allclose(out, expected[spec.name])
    finally:
        backend.close()


def test_litert_keeps_outputs_in_the_models_order(cache_dir):
    """The same on LiteRT, with the detector's .tflite (outputs boxes, then logits)."""
    import numpy as np

    from workloads.digit_canvases import DigitCanvasesWorkload

    cls = backends.get("litert")
    if cls.available():
        pytest.skip(cls.available())
    w = DigitCanvasesWorkload(cache_dir=cache_dir)
    v = w.variant(width=0.5, resolution=64)
    backend = cls(str(w.model_file(v, "tflite")), {"num_threads": 1}, str(cache_dir))
    backend.load()
    try:
        outs = backend.predict({backend.inputs[0].name: np.zeros((1, 64, 64, 1), np.float32)})
        assert [s.name for s in backend.outputs] == ["boxes", "logits"]
        assert [o.shape[-1] for o in outs] == [4, 11]
    finally:
        backend.close()
