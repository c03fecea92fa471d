"""A model file's inputs and outputs as a runtime would see them (name, shape, dtype), read
once per file per process: the class-level checks on the head node and a worker's
``variant`` both ask, and an ONNX file is parsed whole to answer."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backends.base import TensorSpec

_SEEN: dict[tuple[str, int, int], tuple[list[TensorSpec], list[TensorSpec]]] = {}


def model_io(path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of an ONNX file (its graph; weights listed as inputs by old opsets
    left out; a symbolic axis is None) or a ``.tflite`` file (its interpreter)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _SEEN:
        _SEEN[key] = _tflite_io(path) if path.suffix == ".tflite" else _onnx_io(path)
    return _SEEN[key]


def _tflite_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))

    def spec(d: dict) -> TensorSpec:
        return TensorSpec(d["name"], tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]))

    return ([spec(d) for d in interp.get_input_details()],
            [spec(d) for d in interp.get_output_details()])


def _onnx_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    import onnx
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}

    def spec(v) -> TensorSpec:
        t = v.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        return TensorSpec(v.name, shape, np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)))

    return [spec(v) for v in graph.input if v.name not in weights], [spec(v) for v in graph.output]
