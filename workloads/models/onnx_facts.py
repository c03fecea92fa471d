"""What an ONNX image classifier says about itself: input layout (NCHW or NHWC) and
resolution from the input shape (``DEFAULT_SIZE`` where symbolic), and the class count from
the first float rank-2 output (1001 classes: index 0 is background, MLPerf's offset -1)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workloads.models.model_io import model_io

DEFAULT_SIZE = 224  # the reference's image_size when the model does not fix one


@dataclass(frozen=True)
class ModelInfo:
    layout: str  # "NCHW" | "NHWC"
    height: int
    width: int
    num_classes: int | None  # None when no float (N, classes) output has a fixed size


def inspect_onnx(path: Path) -> ModelInfo:
    """Layout, resolution and class count from the graph's declared shapes."""
    inputs, outputs = model_io(path)
    if not inputs:
        raise ValueError(f"imagenet workload: {path} has no graph input")
    dims = list(inputs[0].shape)
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
    num_classes = next((int(out.shape[1]) for out in outputs
                        if out.dtype in (np.float32, np.float16) and len(out.shape) == 2
                        and out.shape[1]), None)
    return ModelInfo(layout, int(height), int(width), num_classes)


def offset_for(num_classes: int | None) -> int:
    """1001 outputs: index 0 is background, so dataset label = argmax - 1 (MLPerf's offset)."""
    return -1 if num_classes == 1001 else 0
