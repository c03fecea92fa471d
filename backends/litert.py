"""LiteRT (``ai-edge-litert``, formerly TFLite) on the CPU, with XNNPACK or without, and the
Coral Edge TPU delegate where one is attached.

Knobs:
- ``num_threads`` (int): the interpreter's (and XNNPACK's) thread count; unset, LiteRT decides.
- ``xnnpack`` (bool, default True): False uses the builtin kernels only
  (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``).
- ``edgetpu`` (bool, default False): runs through ``libedgetpu.so.1``. The model must be the
  ``edgetpu_compiler`` output (``*_edgetpu.tflite``); given the plain int8 file, the compiled
  sibling next to it is used, since an uncompiled model would silently run on the CPU.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backends.base import Backend, BackendUnavailable, TensorSpec

EDGETPU_LIBRARY = "libedgetpu.so.1"


class LiteRTBackend(Backend):
    name = "litert"
    model_format = "tflite"
    KNOBS = frozenset({"num_threads", "xnnpack", "edgetpu"})
    # XNNPACK and the Edge TPU run other kernels than the builtin ones: outputs may differ
    OUTPUT_INVARIANT_KNOBS = frozenset({"num_threads"})

    @classmethod
    def available(cls) -> str | None:
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError as exc:
            return f"ai-edge-litert is not installed ({exc}); pip install 'tuner[litert]'"
        return None

    @classmethod
    def version(cls) -> str:
        try:
            from importlib.metadata import version

            return version("ai-edge-litert")
        except Exception:  # noqa: BLE001 - a version string is informative only
            import ai_edge_litert

            return str(getattr(ai_edge_litert, "__version__", "unknown"))

    def load(self) -> None:
        reason = self.available()
        if reason:
            raise BackendUnavailable(reason)
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self._unknown_options(self.KNOBS)
        threads = self.options.get("num_threads")
        xnnpack = self.option_bool("xnnpack", True)
        edgetpu = self.option_bool("edgetpu", False)
        kwargs: dict = {"num_threads": None if threads is None else int(threads)}
        if not xnnpack:
            kwargs["experimental_op_resolver_type"] = \
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        model_path = self.model_path
        if edgetpu:
            kwargs["experimental_delegates"] = [_edgetpu_delegate()]
            model_path = _edgetpu_model(model_path)
        self._interp = Interpreter(model_path=model_path, **kwargs)
        self._interp.allocate_tensors()
        self._describe()

    def _describe(self) -> None:
        ins, outs = self._interp.get_input_details(), self._interp.get_output_details()
        self._in = [(d["name"], int(d["index"])) for d in ins]
        self._out = [int(d["index"]) for d in outs]
        self.inputs = [TensorSpec(d["name"], tuple(int(x) for x in d["shape"]),
                                  np.dtype(d["dtype"])) for d in ins]
        self.outputs = [TensorSpec(d["name"], tuple(int(x) for x in d["shape"]),
                                   np.dtype(d["dtype"])) for d in outs]

    def predict(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        interp = self._interp
        for (name, index), spec in zip(self._in, self.inputs):
            x = feeds[name]
            if x.shape != spec.shape:
                # Re-plan for the new batch size once; Offline/Server repeat the same size.
                interp.resize_tensor_input(index, list(x.shape))
                interp.allocate_tensors()
                self._describe()
            interp.set_tensor(index, x)
        interp.invoke()
        return [interp.get_tensor(i) for i in self._out]

    def close(self) -> None:
        self._interp = None


def _edgetpu_delegate():
    import ctypes

    from ai_edge_litert.interpreter import load_delegate

    # Probe with ctypes first: load_delegate on a missing library raises OSError and then
    # prints a spurious AttributeError from Delegate.__del__.
    try:
        ctypes.CDLL(EDGETPU_LIBRARY)
    except OSError as exc:
        raise BackendUnavailable(
            f"Edge TPU runtime {EDGETPU_LIBRARY} not found ({exc}); install libedgetpu1-std "
            "from the Coral apt repository and attach a Coral device") from exc
    try:
        return load_delegate(EDGETPU_LIBRARY)
    except (ValueError, RuntimeError, OSError) as exc:
        raise BackendUnavailable(
            f"Edge TPU delegate did not load (no Coral device attached or accessible?): "
            f"{str(exc).strip()}") from exc


def _edgetpu_model(model_path: str) -> str:
    try:
        return str(edgetpu_compiled(model_path))
    except FileNotFoundError as exc:
        raise BackendUnavailable(f"edgetpu=True needs an edgetpu_compiler model: {exc}") from exc


def edgetpu_compiled(path: str | Path) -> Path:
    """The ``edgetpu_compiler`` output for a .tflite file: it sits next to it, named
    ``<stem>_edgetpu.tflite`` (the compiler needs Google's toolchain; users run it)."""
    path = Path(path)
    if path.name.endswith("_edgetpu.tflite"):
        return path
    compiled = path.with_name(path.stem + "_edgetpu.tflite")
    if not compiled.exists():
        raise FileNotFoundError(
            f"no Edge TPU model {compiled.name} next to {path.name}: compile it with "
            f"`edgetpu_compiler -o {path.parent} {path}`")
    return compiled
