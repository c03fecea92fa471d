"""TVM (Relax): compiled models agree with ONNX Runtime, compiled libraries and MetaSchedule
databases are cached across backends and processes, the thread knob survives Ray's
OMP_NUM_THREADS=1 without leaving the environment changed, and a real LoadGen trial runs.
Skipped where apache-tvm is not installed.

Every test builds into the session's one cache (``cache_dir``), so each library is compiled
once per session (and never, with ``TUNER_TEST_CACHE`` pointing at a kept cache)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tvm")

import backends  # noqa: E402
from backends.tvm import TVMBackend  # noqa: E402
from backends.tvm_target import resolve_target  # noqa: E402
from tuner.trial import Fidelity, TrialConfig  # noqa: E402
from tests.conftest import predict_nchw  # noqa: E402
from workloads.digits import DigitsWorkload  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WIDTH, RESOLUTION = 0.25, 32  # the smallest variant: compiles in ~3 s, tunes in ~25 s


@pytest.fixture(scope="module")
def workload(cache_dir) -> DigitsWorkload:
    return DigitsWorkload(cache_dir=cache_dir)


@pytest.fixture(scope="module")
def held_out(workload) -> np.ndarray:
    return workload.load_batch(list(range(workload.total_sample_count)),
                                 workload.variant(WIDTH, RESOLUTION))


@pytest.fixture(scope="module")
def onnx_logits(workload, held_out, cache_dir) -> np.ndarray:
    return _predict("onnxruntime", workload.model_file(workload.variant(WIDTH, RESOLUTION)),
                    held_out, {"intra_op_threads": 1}, cache_dir)


def _predict(name: str, path, x: np.ndarray, options: dict, cache_dir: Path) -> np.ndarray:
    backend = backends.load(name, str(path), options, str(cache_dir))
    try:
        return predict_nchw(backend, x)
    finally:
        backend.close()


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.argmax(1) == b.argmax(1)))


@pytest.mark.slow  # three compiles on a cold cache: ~15 s on 2 cores
def test_tvm_agrees_with_onnxruntime(workload, held_out, onnx_logits, cache_dir):
    fp32 = workload.variant(WIDTH, RESOLUTION, "fp32")
    got = _predict("tvm", workload.model_file(fp32), held_out, {"num_threads": 1}, cache_dir)
    assert got.shape == onnx_logits.shape == (len(held_out), workload.num_classes)
    agree = _agreement(got, onnx_logits)
    assert agree >= 0.995, f"fp32 top-1 agreement {agree:.4f}"
    np.testing.assert_allclose(got, onnx_logits, rtol=1e-3, atol=1e-3)

    # a library compiled for batch 16 runs any batch: chunks, the last one zero-padded
    b16 = _predict("tvm", workload.model_file(fp32), held_out, {"num_threads": 1,
                                                                "batch_size": 16},
                   cache_dir)
    np.testing.assert_allclose(b16, got, rtol=1e-5, atol=1e-5)

    int8 = workload.variant(WIDTH, RESOLUTION, "int8")
    q = _predict("tvm", workload.model_file(int8), held_out, {"num_threads": 1}, cache_dir)
    q_ort = _predict("onnxruntime", workload.model_file(int8), held_out,
                     {"intra_op_threads": 1}, cache_dir)
    top1 = {name: float(np.mean(workload.postprocess(v) == workload.labels))
            for name, v in (("tvm int8", q), ("ort int8", q_ort), ("ort fp32", onnx_logits))}
    print(f"\nw{WIDTH} r{RESOLUTION} on {len(held_out)} held-out samples: fp32 agreement {agree:.4f}"
          f" (max |dlogit| {np.abs(got - onnx_logits).max():.1e}); int8 agreement with ORT int8 "
          f"{_agreement(q, q_ort):.4f}, with ORT fp32 {_agreement(q, onnx_logits):.4f}; top-1 "
          + ", ".join(f"{k} {v:.4f}" for k, v in top1.items()))
    # TVM runs QDQ graphs as float math on quantized values (ORT uses integer kernels), so it
    # tracks fp32 more closely than ORT's int8 does; never a collapse.
    assert _agreement(q, onnx_logits) >= 0.95
    assert abs(top1["tvm int8"] - top1["ort int8"]) <= 0.03


def test_second_load_hits_the_cache_also_in_a_fresh_process(workload, cache_dir):
    path = workload.model_file(workload.variant(WIDTH, RESOLUTION, "fp32"))
    options = {"num_threads": 2}
    first = backends.load("tvm", str(path), options, str(cache_dir))  # or cached above
    assert first.library_path is not None and first.library_path.exists()
    assert first.library_path.is_relative_to(cache_dir / "tvm")
    compiles = TVMBackend.compiles
    second = backends.load("tvm", str(path), options, str(cache_dir))
    assert second.cache_hit and TVMBackend.compiles == compiles
    assert second.library_path == first.library_path
    first.close()
    second.close()

    # A fresh process, as Ray starts it (OMP_NUM_THREADS=1): no compile, and TVM's pools
    # use the knob's thread count, on the loading thread and on a new (LoadGen's) thread,
    # while the process environment is left as it was.
    code = f"""
import json, os, threading, numpy as np, tvm, backends
from backends.tvm import TVMBackend
before = dict(os.environ)
b = backends.load("tvm", {str(path)!r}, {{"num_threads": 2}}, {str(cache_dir)!r})
n_threads = tvm.get_global_func("runtime.NumThreads")
seen = {{}}
def other():
    spec = b.inputs[0]
    b.predict({{spec.name: np.zeros(spec.shape, np.float32)}})
    seen["thread"] = n_threads()
t = threading.Thread(target=other); t.start(); t.join()
print(json.dumps({{"hit": b.cache_hit, "compiles": TVMBackend.compiles, "main": n_threads(),
                  "thread": seen["thread"], "env_kept": dict(os.environ) == before}}))
"""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("TVM_NUM_THREADS", None)
    env.pop("TVM_BIND_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts == {"hit": True, "compiles": 0, "main": 2, "thread": 2, "env_kept": True}, facts


def test_options_target_and_registry(workload, cache_dir):
    cls = backends.get("tvm")
    assert cls is TVMBackend and cls.model_format == "onnx"
    assert cls.available() is None and cls.version().startswith("0.27")
    host = resolve_target(None)
    assert host.kind.name == "llvm"
    pi = resolve_target("raspberry-pi/4b-aarch64", num_cores=2)
    assert str(pi.attrs["mcpu"]) == "cortex-a72" and int(pi.attrs["num-cores"]) == 2
    assert str(resolve_target({"kind": "llvm", "mcpu": "haswell"}).attrs["mcpu"]) == "haswell"
    path = str(workload.model_file(workload.variant(WIDTH, RESOLUTION)))
    with pytest.raises(ValueError, match="unknown option"):
        backends.load("tvm", path, {"threads": 1}, str(cache_dir))
    with pytest.raises(ValueError, match="num_threads"):
        backends.load("tvm", path, {"num_threads": -1}, str(cache_dir))


@pytest.mark.slow  # a MetaSchedule search of 8 candidates: ~25 s on 2 cores
def test_metaschedule_tunes_and_caches(workload, cache_dir, held_out, onnx_logits):
    path = workload.model_file(workload.variant(WIDTH, RESOLUTION, "fp32"))
    options = {"num_threads": 1, "tuning_trials": 8}
    started = time.perf_counter()
    tuned = backends.load("tvm", str(path), options, str(cache_dir))
    took = time.perf_counter() - started
    agree = _agreement(predict_nchw(tuned, held_out), onnx_logits)
    assert agree >= 0.995, f"tuned fp32 top-1 agreement {agree:.4f}"
    tuned.close()
    databases = list((cache_dir / "tvm").glob(f"{path.stem}-b1-t8-*.db"))
    assert len(databases) == 1
    assert (databases[0] / "database_tuning_record.json").stat().st_size > 0
    print(f"\nMetaSchedule 8 trials w{WIDTH} r{RESOLUTION}: load {took:.1f} s "
          f"(cache hit: {tuned.cache_hit})")

    compiles, tunings = TVMBackend.compiles, TVMBackend.tunings
    again = backends.load("tvm", str(path), options, str(cache_dir))
    assert again.cache_hit and (TVMBackend.compiles, TVMBackend.tunings) == (compiles, tunings)
    # the library gone, the database kept: recompiled from the database, not re-tuned
    again.library_path.unlink()
    again.close()
    rebuilt = backends.load("tvm", str(path), options, str(cache_dir))
    assert not rebuilt.cache_hit
    assert (TVMBackend.compiles, TVMBackend.tunings) == (compiles + 1, tunings)
    rebuilt.close()


@pytest.mark.slow  # a fresh process: TVM import, compile (or cache hit), two LoadGen runs
def test_tvm_trial_through_loadgen(workload, cache_dir, measure_fresh):
    cfg = TrialConfig(study="test-tvm", trial=0, platform="local", workload={"name": "digits"},
                      model={"width": WIDTH, "resolution": RESOLUTION, "precision": "fp32"},
                      backend="tvm", knobs={"num_threads": 1}, scenario="SingleStream",
                      fidelity=Fidelity(min_duration_ms=300, min_query_count=32),
                      cache_dir=str(cache_dir))
    result = measure_fresh(cfg)
    assert result.ok, result.cause or result.logs.get("error.txt")
    assert result.valid, result.cause
    assert result.system["runtime"] == "tvm" and result.system["runtime_version"].startswith("0.27")
    assert result.latency_ms and result.latency_ms > 0
    onnx_top1 = workload.reference_check(workload.variant(WIDTH, RESOLUTION, "fp32"))
    assert result.accuracy_total == workload.total_sample_count
    assert abs(result.accuracy - onnx_top1) <= 0.005, (result.accuracy, onnx_top1)
    print(f"\nLoadGen SingleStream tvm w{WIDTH} r{RESOLUTION} fp32: latency "
          f"{result.latency_ms:.3f} ms, top-1 {result.accuracy:.4f} (ONNX {onnx_top1:.4f})")
