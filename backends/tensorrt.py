"""NVIDIA TensorRT through ONNX Runtime's TensorRT execution provider.

Needs an NVIDIA GPU, ``onnxruntime-gpu`` and TensorRT's libraries from NVIDIA's own
package index (PyPI's ``tensorrt`` is a stub that downloads the real wheel): see the
README. Elsewhere ``available()`` says why it cannot run, and the study reports it.

Precision: ``fp16`` lets TensorRT pick fp16 kernels; int8 is explicit quantization, taken
from the workload's int8 (QDQ) variant, so no calibration table is needed. Engines are
cached per model under ``<cache_dir>/tensorrt`` (TensorRT keys them by graph and GPU), so
no trial builds the same engine twice. ``benchmarks/tensorrt_gpu_check.py`` runs it end
to end on a GPU host.
"""
from __future__ import annotations

from pathlib import Path

from backends.base import BackendUnavailable
from backends.cache import default_cache_dir
from backends.onnxruntime import OnnxRuntimeBackend


class TensorRTBackend(OnnxRuntimeBackend):
    name = "tensorrt"
    model_format = "onnx"
    KNOBS = OnnxRuntimeBackend.KNOBS | {"fp16", "builder_optimization_level", "workspace_gb"}

    @classmethod
    def available(cls) -> str | None:
        reason = super().available()
        if reason:
            return reason
        import onnxruntime

        if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
            return ("onnxruntime has no TensorrtExecutionProvider (needs an NVIDIA GPU, "
                    "onnxruntime-gpu and TensorRT from NVIDIA's index)")
        return None

    def _is_qdq(self) -> bool:
        import onnx

        graph = onnx.load(self.model_path, load_external_data=False).graph
        return any(node.op_type == "QuantizeLinear" for node in graph.node)

    def providers(self) -> list:
        cache = Path(self.cache_dir or default_cache_dir()) / "tensorrt"
        cache.mkdir(parents=True, exist_ok=True)
        trt = {
            "trt_fp16_enable": self.option_bool("fp16", False),
            "trt_int8_enable": self._is_qdq(),
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            "trt_builder_optimization_level": int(self.options.get("builder_optimization_level", 3)),
            "trt_max_workspace_size": int(float(self.options.get("workspace_gb", 2)) * 2**30),
        }
        return [("TensorrtExecutionProvider", trt), "CUDAExecutionProvider"]

    def _check_session(self) -> None:
        active = self.session.get_providers()
        if not active or active[0] != "TensorrtExecutionProvider":
            raise BackendUnavailable(f"TensorRT did not take the model (providers: {active})")
