"""MobileNet-v1 as plain data: the layer plan, and an ONNX graph built from folded weights.

The training script (``workloads/digits/train.py``) and the ONNX builder share ``layer_plan`` so the
weights file and the graph can never disagree about shapes. Batch norm is folded into the
convolutions before the weights are saved, as in the MLPerf MobileNet reference models.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (output channels at width 1.0, stride) for the 13 depthwise-separable blocks.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
STEM_CHANNELS = 32


@dataclass(frozen=True)
class Conv:
    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    depthwise: bool
    relu6: bool = True  # a detector's 1x1 head convs are linear and keep a bias (no BN)
    src: str = ""  # the layer whose output this conv reads ("" = the previous one)


def scaled(channels: int, width: float) -> int:
    return max(8, int(channels * width))


def layer_plan(width: float, in_channels: int = 3) -> list[Conv]:
    """Every convolution of MobileNet-v1 at this width multiplier, in order."""
    stem = scaled(STEM_CHANNELS, width)
    plan = [Conv("stem", in_channels, stem, 3, 2, False)]
    channels = stem
    for i, (out, stride) in enumerate(BLOCKS):
        out = scaled(out, width)
        plan.append(Conv(f"b{i}.dw", channels, channels, 3, stride, True))
        plan.append(Conv(f"b{i}.pw", channels, out, 1, 1, False))
        channels = out
    return plan


def weight_shapes(width: float, num_classes: int, in_channels: int = 3) -> dict[str, tuple]:
    shapes: dict[str, tuple] = {}
    for conv in layer_plan(width, in_channels):
        per_group_in = 1 if conv.depthwise else conv.in_channels
        shapes[f"{conv.name}.w"] = (conv.out_channels, per_group_in, conv.kernel, conv.kernel)
        shapes[f"{conv.name}.b"] = (conv.out_channels,)
    last = layer_plan(width, in_channels)[-1].out_channels
    shapes["fc.w"] = (num_classes, last)
    shapes["fc.b"] = (num_classes,)
    return shapes


def build_onnx(weights: dict[str, np.ndarray], width: float, resolution: int,
               num_classes: int, in_channels: int = 3, opset: int = 17):
    """An fp32 ONNX MobileNet-v1 with a fixed input shape (N, C, resolution, resolution).

    The batch dimension stays symbolic so Offline/Server runs can batch.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    expected = weight_shapes(width, num_classes, in_channels)
    for key, shape in expected.items():
        if key not in weights:
            raise KeyError(f"weights lack {key!r} (width {width})")
        if tuple(weights[key].shape) != shape:
            raise ValueError(f"weights {key!r} have shape {weights[key].shape}, expected {shape}")

    nodes, inits = [], []
    for key in expected:
        inits.append(numpy_helper.from_array(weights[key].astype(np.float32), key))
    x = "input"
    for conv in layer_plan(width, in_channels):
        y = f"{conv.name}.out"
        nodes.append(helper.make_node(
            "Conv", [x, f"{conv.name}.w", f"{conv.name}.b"], [y + ".pre"], name=conv.name,
            kernel_shape=[conv.kernel] * 2, strides=[conv.stride] * 2,
            pads=[conv.kernel // 2] * 4, group=conv.in_channels if conv.depthwise else 1))
        # ReLU6 as Relu+Min-free Clip: Clip(0, 6) fuses with Conv in ORT and quantizes cleanly.
        nodes.append(helper.make_node("Clip", [y + ".pre", "zero", "six"], [y], name=conv.name + ".relu6"))
        x = y
    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "six"))
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"]))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1))
    graph = helper.make_graph(
        nodes, f"mobilenet_v1_{width}_{resolution}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                       ["N", in_channels, resolution, resolution])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="tuner")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
