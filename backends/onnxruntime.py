"""ONNX Runtime on the CPU (and, where installed, the TensorRT/CUDA execution providers)."""
from __future__ import annotations

import numpy as np

from backends.base import Backend, BackendOptionError, BackendUnavailable, TensorSpec

_GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
_EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    model_format = "onnx"
    KNOBS = frozenset({"intra_op_threads", "inter_op_threads", "graph_optimization",
                       "execution_mode", "allow_spinning"})
    # graph_optimization fuses and reorders float ops, so it may change outputs
    OUTPUT_INVARIANT_KNOBS = frozenset({"intra_op_threads", "inter_op_threads",
                                        "execution_mode", "allow_spinning"})

    @classmethod
    def available(cls) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return f"onnxruntime is not installed ({exc})"
        return None

    @classmethod
    def version(cls) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def load(self) -> None:
        reason = self.available()
        if reason:
            raise BackendUnavailable(reason)
        import onnxruntime as ort

        self._unknown_options(self.KNOBS)
        opts = ort.SessionOptions()
        # 0 means "ORT decides" (all cores); the search space always sets it explicitly.
        opts.intra_op_num_threads = int(self.options.get("intra_op_threads", 0))
        opts.inter_op_num_threads = int(self.options.get("inter_op_threads", 0))
        level = self.options.get("graph_optimization", "all")
        mode = self.options.get("execution_mode", "sequential")
        if level not in _GRAPH_LEVELS:
            raise BackendOptionError(f"onnxruntime: graph_optimization={level!r}; one of {list(_GRAPH_LEVELS)}")
        if mode not in _EXECUTION_MODES:
            raise BackendOptionError(f"onnxruntime: execution_mode={mode!r}; one of {list(_EXECUTION_MODES)}")
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _GRAPH_LEVELS[level])
        opts.execution_mode = getattr(ort.ExecutionMode, _EXECUTION_MODES[mode])
        # Spinning workers cut wake-up latency on an idle device but steal the core from
        # everything else on a busy one (measured: 2 spinning threads went 12 -> 70 ms
        # on a loaded 2-core host).
        spin = self.option_bool("allow_spinning", True)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.session = ort.InferenceSession(self.model_path, opts, providers=self.providers())
        self._check_session()
        self.inputs = [_spec(i) for i in self.session.get_inputs()]
        self.outputs = [_spec(o) for o in self.session.get_outputs()]

    def providers(self) -> list:
        """Execution providers in priority order (subclasses put an accelerator first)."""
        return ["CPUExecutionProvider"]

    def _check_session(self) -> None:
        """Hook: refuse a session that silently fell back to another provider."""

    def predict(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)

    def close(self) -> None:
        self.session = None


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
              "tensor(double)": np.float64, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
              "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


def _spec(node) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in node.shape)
    return TensorSpec(node.name, shape, np.dtype(_ORT_TYPES.get(node.type, np.float32)))
