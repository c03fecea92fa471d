"""A small SSD (SSDLite-style) detector as plain data: layer plan, anchors, box codec, ONNX.

The training script, the ONNX builder and the TFLite builder share ``layer_plan`` and
``anchors`` so weights, graphs and the decoder can never disagree about shapes or order.

Graph (width multiplier w, input resolution R, grey input in [-1, 1]):

    image (N, 1, R, R) -> stem 3x3/2 -> 7 depthwise-separable blocks (ReLU6, BN folded)
      tap P1 at stride 8, P2 at stride 16
      per tap: depthwise 3x3 + ReLU6, then two 1x1 convs: box regressions (A x 4) and
      class logits (A x 11, background first)
    -> boxes (N, anchors, 4) and logits (N, anchors, 11), anchors ordered (level, y, x, a)

The model ends at the raw regressions and logits: decoding and NMS run in the responder,
inside LoadGen's timed path, as MLPerf's rules require (``postprocess.py``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from workloads.digit_canvases.data import NUM_CLASSES
# one convolution record and channel scaling for both families (the classifier's own)
from workloads.models.mobilenet import Conv, scaled

# (output channels at width 1.0, stride) of the depthwise-separable blocks
BLOCKS: tuple[tuple[int, int], ...] = ((32, 2), (32, 1), (64, 2), (64, 1), (64, 1),
                                       (128, 2), (128, 1))
STEM_CHANNELS = 16
TAPS = {4: 8, 6: 16}  # block index -> the stride of its feature map (a detection level)
# anchor (height, width/height) per level, heights normalised to the image: digits are
# 0.1-0.36 of a canvas high and 0.2-1.0 as wide as high (a "1" is thin)
ANCHORS: dict[int, tuple[tuple[float, float], ...]] = {
    8: ((0.11, 0.45), (0.11, 0.8), (0.17, 0.45), (0.17, 0.8)),
    16: ((0.24, 0.45), (0.24, 0.8), (0.34, 0.45), (0.34, 0.8)),
}
PER_CELL = 4
OUT_CLASSES = NUM_CLASSES + 1  # background at index 0
VARIANCES = (0.1, 0.2)  # SSD's centre / size scaling of the regressions
ASSETS = Path(__file__).parent / "assets"


def weights_path(width: float) -> Path:
    return ASSETS / f"ssd_digits_w{width}.npz"


def layer_plan(width: float) -> list[Conv]:
    """Every convolution in graph order; head convs name their source layer."""
    c = scaled(STEM_CHANNELS, width)
    plan = [Conv("stem", 1, c, 3, 2, False)]
    taps: list[tuple[int, str, int]] = []
    for i, (out, stride) in enumerate(BLOCKS):
        out = scaled(out, width)
        plan.append(Conv(f"b{i}.dw", c, c, 3, stride, True))
        plan.append(Conv(f"b{i}.pw", c, out, 1, 1, False))
        c = out
        if i in TAPS:
            taps.append((TAPS[i], f"b{i}.pw", c))
    for stride, src, ch in taps:
        plan.append(Conv(f"h{stride}.dw", ch, ch, 3, 1, True, src=src))
        plan.append(Conv(f"h{stride}.box", ch, PER_CELL * 4, 1, 1, False, relu6=False,
                         src=f"h{stride}.dw"))
        plan.append(Conv(f"h{stride}.cls", ch, PER_CELL * OUT_CLASSES, 1, 1, False,
                         relu6=False, src=f"h{stride}.dw"))
    return plan


def levels() -> list[int]:
    return sorted(ANCHORS)


def grid(resolution: int, stride: int) -> int:
    """Feature map size at a stride: every conv pads k // 2, so ceil(R / stride)."""
    return -(-resolution // stride)


def anchors(resolution: int) -> np.ndarray:
    """(A, 4) anchors as normalised (cy, cx, h, w), in the graph's output order."""
    out = []
    for stride in levels():
        g = grid(resolution, stride)
        centres = (np.arange(g, dtype=np.float32) + 0.5) / g
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        shapes = np.array([(h, h * aspect) for h, aspect in ANCHORS[stride]], np.float32)
        level = np.empty((g, g, PER_CELL, 4), np.float32)
        level[..., 0], level[..., 1] = cy[..., None], cx[..., None]
        level[..., 2], level[..., 3] = shapes[:, 0], shapes[:, 1]
        out.append(level.reshape(-1, 4))
    return np.concatenate(out)


def encode(boxes_yxyx: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Regression targets of normalised (ymin, xmin, ymax, xmax) boxes against anchors."""
    h = boxes_yxyx[:, 2] - boxes_yxyx[:, 0]
    w = boxes_yxyx[:, 3] - boxes_yxyx[:, 1]
    cy = boxes_yxyx[:, 0] + h / 2
    cx = boxes_yxyx[:, 1] + w / 2
    return np.stack([(cy - anchor[:, 0]) / anchor[:, 2] / VARIANCES[0],
                     (cx - anchor[:, 1]) / anchor[:, 3] / VARIANCES[0],
                     np.log(h / anchor[:, 2]) / VARIANCES[1],
                     np.log(w / anchor[:, 3]) / VARIANCES[1]], axis=1).astype(np.float32)


def decode(reg: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Regressions (k, 4) against their anchors (k, 4) -> (ymin, xmin, ymax, xmax) in 0-1."""
    cy = anchor[:, 0] + reg[:, 0] * VARIANCES[0] * anchor[:, 2]
    cx = anchor[:, 1] + reg[:, 1] * VARIANCES[0] * anchor[:, 3]
    h = anchor[:, 2] * np.exp(reg[:, 2] * VARIANCES[1])
    w = anchor[:, 3] * np.exp(reg[:, 3] * VARIANCES[1])
    out = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1)
    return np.clip(out, 0.0, 1.0, out=out)


def weight_shapes(width: float) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for conv in layer_plan(width):
        per_group_in = 1 if conv.depthwise else conv.in_channels
        shapes[f"{conv.name}.w"] = (conv.out_channels, per_group_in, conv.kernel, conv.kernel)
        shapes[f"{conv.name}.b"] = (conv.out_channels,)
    return shapes


def check_weights(weights: dict[str, np.ndarray], width: float) -> None:
    for key, shape in weight_shapes(width).items():
        if key not in weights:
            raise KeyError(f"detector weights lack {key!r} (width {width})")
        if tuple(weights[key].shape) != shape:
            raise ValueError(f"detector weights {key!r} have shape {weights[key].shape}, "
                             f"expected {shape}")


def build_onnx(weights: dict[str, np.ndarray], width: float, resolution: int, opset: int = 17):
    """The fp32 ONNX detector from BN-folded weights; the batch dimension stays symbolic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    check_weights(weights, width)
    inits = [numpy_helper.from_array(weights[k].astype(np.float32), k)
             for k in weight_shapes(width)]
    inits += [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
              numpy_helper.from_array(np.array(6.0, np.float32), "six"),
              numpy_helper.from_array(np.array([0, -1, 4], np.int64), "shape.box"),
              numpy_helper.from_array(np.array([0, -1, OUT_CLASSES], np.int64), "shape.cls")]
    nodes, prev = [], "image"
    for conv in layer_plan(width):
        x, y = (f"{conv.src}.out" if conv.src else prev), f"{conv.name}.out"
        nodes.append(helper.make_node(
            "Conv", [x, f"{conv.name}.w", f"{conv.name}.b"], [y + ".pre" if conv.relu6 else y],
            name=conv.name, kernel_shape=[conv.kernel] * 2, strides=[conv.stride] * 2,
            pads=[conv.kernel // 2] * 4, group=conv.in_channels if conv.depthwise else 1))
        if conv.relu6:  # Clip(0, 6) fuses with Conv in ORT and quantizes cleanly
            nodes.append(helper.make_node("Clip", [y + ".pre", "zero", "six"], [y],
                                          name=conv.name + ".relu6"))
        prev = y
    for kind in ("box", "cls"):
        parts = []
        for stride in levels():
            src = f"h{stride}.{kind}.out"
            nodes.append(helper.make_node("Transpose", [src], [src + ".nhwc"], perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Reshape", [src + ".nhwc", f"shape.{kind}"],
                                          [src + ".flat"]))
            parts.append(src + ".flat")
        nodes.append(helper.make_node("Concat", parts, ["boxes" if kind == "box" else "logits"],
                                      axis=1))
    n_anchors = len(anchors(resolution))
    graph = helper.make_graph(
        nodes, f"ssd_digits_w{width}_r{resolution}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, resolution, resolution])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", n_anchors, 4]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_anchors, OUT_CLASSES])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="tuner")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
