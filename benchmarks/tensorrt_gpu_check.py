"""End-to-end TensorRT check for an NVIDIA GPU host (not runnable without one).

Runs real trials through the whole measuring path (workload -> backend -> LoadGen
performance + accuracy runs, each in a fresh child process) for ONNX Runtime on the CPU
and TensorRT fp32 / fp16 / int8, prints latency ratios and accuracies, and checks that the
second TensorRT trial of a model reuses the cached engine instead of building it again.

    pip uninstall -y onnxruntime && pip install onnxruntime-gpu==1.31.1
    pip install tensorrt-cu12 --extra-index-url https://pypi.nvidia.com   # NVIDIA's index
    python benchmarks/tensorrt_gpu_check.py [--width 1.0 --resolution 96]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import backends
from tuner.worker.isolation import run_isolated
from tuner.trial import Fidelity, TrialConfig


def trial(backend: str, precision: str, knobs: dict, args, cache: str) -> TrialConfig:
    return TrialConfig(study="trt-check", trial=0, platform="gpu", workload={"name": "digits"},
                       model={"width": args.width, "resolution": args.resolution,
                              "precision": precision},
                       backend=backend, knobs=knobs, scenario="SingleStream",
                       fidelity=Fidelity("short", 2000, 256, 20000), cache_dir=cache)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--resolution", type=int, default=96)
    args = parser.parse_args()
    why = backends.get("tensorrt").available()
    if why:
        print(f"TensorRT unavailable here: {why}")
        return 2
    cache = tempfile.mkdtemp(prefix="tuner-trt-")
    runs = [("onnxruntime", "fp32", {"intra_op_threads": 1}),
            ("tensorrt", "fp32", {"fp16": False}),
            ("tensorrt", "fp32", {"fp16": True}),
            ("tensorrt", "int8", {"fp16": True})]
    figures = {}
    for backend, precision, knobs in runs:
        r = run_isolated(trial(backend, precision, knobs, args, cache), 1200)
        label = f"{backend} {precision} {knobs}"
        if not (r.ok and r.valid):
            print(f"FAIL {label}: {r.cause}")
            return 1
        figures[label] = r.latency_ms
        print(f"{label:50s} {r.latency_ms:8.3f} ms  top-1 {r.accuracy:.4f}  ({r.duration_s:.0f} s)")
    engines = list((Path(cache) / "tensorrt").glob("*.engine"))
    again = run_isolated(trial("tensorrt", "fp32", {"fp16": False}, args, cache), 1200)
    after = list((Path(cache) / "tensorrt").glob("*.engine"))
    print(f"engines cached: {len(engines)}; after a repeated trial: {len(after)} "
          f"(repeat took {again.duration_s:.0f} s)")
    cpu = next(iter(figures.values()))
    for label, ms in list(figures.items())[1:]:
        print(f"speed-up over ONNX Runtime CPU, {label}: {cpu / ms:.1f}x")
    return 0 if len(after) == len(engines) and engines else 1


if __name__ == "__main__":
    sys.exit(main())
