"""What an ONNX image classifier says about itself: input layout (NCHW or NHWC) and
resolution from the input shape (``DEFAULT_SIZE`` where symbolic), and the class count from
the first float rank-2 output (1001 classes: index 0 is background, MLPerf's offset -1)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_SIZE = 224  # the reference's image_size when the model does not fix one


@dataclass(frozen=True)
class ModelInfo:
    layout: str  # "NCHW" | "NHWC"
    height: int
    width: int
    num_classes: int | None  # None when no float (N, classes) output has a fixed size


_MODEL_INFO: dict[tuple[str, int, int], ModelInfo] = {}


def inspect_onnx(path: Path) -> ModelInfo:
    """Layout, resolution and class count from the graph's declared shapes."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key in _MODEL_INFO:
        return _MODEL_INFO[key]
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    init_names = {t.name for t in graph.initializer}  # old opsets list weights as inputs
    inputs = [i for i in graph.input if i.name not in init_names]
    if not inputs:
        raise ValueError(f"imagenet workload: {path} has no graph input")
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ValueError(f"imagenet workload: {path} input {inputs[0].name!r} has rank "
                         f"{len(dims)}; an image model takes (N, C, H, W) or (N, H, W, C)")
    if dims[1] == 3:
        layout, hw = "NCHW", dims[2:4]
    elif dims[3] == 3:
        layout, hw = "NHWC", dims[1:3]
    else:
        raise ValueError(f"imagenet workload: cannot tell the layout of {path} input "
                         f"{inputs[0].name!r} with shape {dims}: no 3-channel axis")
    height, width = (d or DEFAULT_SIZE for d in hw)
    num_classes = None
    for out in graph.output:
        tt = out.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if tt.elem_type in (TensorProto.FLOAT, TensorProto.FLOAT16) and len(shape) == 2 \
                and shape[1]:
            num_classes = int(shape[1])
            break
    info = ModelInfo(layout, int(height), int(width), num_classes)
    _MODEL_INFO[key] = info
    return info


def offset_for(num_classes: int | None) -> int:
    """1001 outputs: index 0 is background, so dataset label = argmax - 1 (MLPerf's offset)."""
    return -1 if num_classes == 1001 else 0
