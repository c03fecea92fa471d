"""The digit-canvas SSD as a ``.tflite`` flatbuffer, written without TensorFlow.

Uses the graph writer and quantization helpers of ``workloads/models/tflite_export.py`` (the TFLite
schema shipped in the ``ai-edge-litert`` wheel + ``flatbuffers``). The graph mirrors
``model.build_onnx`` op for op, so both formats give the same outputs up to float rounding:

    image (N, R, R, 1) f32 -> [PAD] -> CONV_2D / DEPTHWISE_CONV_2D (+ RELU6) ...
      per level: head convs -> RESHAPE (N, cells x anchors, 4 | 11)
    -> CONCATENATION over levels -> boxes (N, A, 4), logits (N, A, 11) f32

A one-channel NHWC input holds the same bytes as the NCHW one, so samples feed both.
Explicit PAD where TFLite's SAME padding would shift a stride-2 window (``_pads``).

int8 (full-integer post-training quantization, as ``tflite_export`` does it): int8 weights
(per output channel), int32 biases, int8 activations calibrated by running the fp32 model on
training canvases; float input and outputs with QUANTIZE / DEQUANTIZE at the edges (the
head outputs are dequantized before the float concatenation, so each level keeps its own
scale).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from workloads.models import tflite_export as tfl
from workloads.digit_canvases import model as det

#: bump when the graph or the quantization recipe changes (part of the cache key)
TFLITE_BUILDER_VERSION = 1


def build_graph(weights: dict[str, np.ndarray], width: float, resolution: int,
                ranges: dict[str, tuple[float, float]] | None = None) -> bytes:
    """The detector from BN-folded fp32 weights (ONNX layouts); ``ranges`` (activation name
    -> calibrated (min, max)) makes it full-integer int8, None gives fp32."""
    fb = tfl.schema()
    det.check_weights(weights, width)
    g = tfl._Graph(fb)
    T, Op, Opt = fb.TensorType, fb.BuiltinOperator, fb.BuiltinOptions
    int8 = ranges is not None
    act_type = T.INT8 if int8 else T.FLOAT32

    def act(name: str, shape: tuple[int, ...], like: str | None = None) -> tuple[int, Any]:
        qp = tfl._act_qparams(*ranges[like or name]) if int8 else None
        return g.tensor(name, shape, act_type, quant=tfl._quant(fb, *qp) if qp else None,
                        batch_dim=True), qp

    graph_input = g.tensor("image", (1, resolution, resolution, 1), T.FLOAT32, batch_dim=True)
    x = (graph_input, None, resolution, 1)  # (tensor, qparams, size, channels)
    if int8:
        idx, q = act("image.q", (1, resolution, resolution, 1), like="image")
        g.op(Op.QUANTIZE, [graph_input], [idx], version=2)
        x = (idx, q, resolution, 1)
    made: dict[str, tuple] = {}
    for conv in det.layer_plan(width):
        src_idx, src_q, size, channels = made[conv.src] if conv.src else x
        padding = fb.Padding.VALID if conv.kernel == 1 else fb.Padding.SAME
        pads = tfl._pads(size, conv.kernel, conv.stride) if conv.kernel > 1 else None
        if pads is not None:  # PAD keeps its input's quantization (pads with real 0.0)
            padded = size + sum(pads)
            p_idx = g.tensor(f"{conv.name}.paddings", (4, 2), T.INT32,
                             data=np.array([[0, 0], list(pads), list(pads), [0, 0]], np.int32))
            out = g.tensor(f"{conv.name}.pad", (1, padded, padded, channels), act_type,
                           quant=tfl._quant(fb, *src_q) if src_q else None, batch_dim=True)
            g.op(Op.PAD, [src_idx, p_idx], [out], Opt.PadOptions, fb.PadOptionsT(),
                 version=2 if int8 else 1)
            src_idx, size, padding = out, padded, fb.Padding.VALID
        out_size = (size - conv.kernel) // conv.stride + 1 if padding == fb.Padding.VALID \
            else -(-size // conv.stride)
        w = weights[f"{conv.name}.w"].astype(np.float32)
        b = weights[f"{conv.name}.b"].astype(np.float32)
        w_t, axis = (w.transpose(1, 2, 3, 0), 3) if conv.depthwise else (w.transpose(0, 2, 3, 1), 0)
        if int8:
            wq, w_scale = tfl._symmetric_int8(w_t, axis)
            zeros = np.zeros_like(w_scale, np.int64)
            w_idx = g.tensor(f"{conv.name}.w", w_t.shape, T.INT8, data=wq,
                             quant=tfl._quant(fb, w_scale, zeros, axis))
            b_scale = src_q[0] * w_scale.astype(np.float64)
            bq = np.clip(np.round(b / b_scale), -2**31, 2**31 - 1).astype(np.int32)
            b_idx = g.tensor(f"{conv.name}.b", b.shape, T.INT32, data=bq,
                             quant=tfl._quant(fb, b_scale, zeros))
        else:
            w_idx = g.tensor(f"{conv.name}.w", w_t.shape, T.FLOAT32, data=w_t)
            b_idx = g.tensor(f"{conv.name}.b", b.shape, T.FLOAT32, data=b)
        y_idx, y_q = act(conv.name, (1, out_size, out_size, conv.out_channels))
        if conv.depthwise:
            opts, code, opt_type = fb.DepthwiseConv2DOptionsT(), Op.DEPTHWISE_CONV_2D, \
                Opt.DepthwiseConv2DOptions
            opts.depthMultiplier = 1
        else:
            opts, code, opt_type = fb.Conv2DOptionsT(), Op.CONV_2D, Opt.Conv2DOptions
        opts.padding, opts.strideH, opts.strideW = padding, conv.stride, conv.stride
        opts.fusedActivationFunction = (fb.ActivationFunctionType.RELU6 if conv.relu6
                                        else fb.ActivationFunctionType.NONE)
        g.op(code, [src_idx, w_idx, b_idx], [y_idx], opt_type, opts, version=3 if int8 else 1)
        made[conv.name] = x = (y_idx, y_q, out_size, conv.out_channels)

    outputs = []
    for kind, last in (("box", 4), ("cls", det.OUT_CLASSES)):
        parts = []
        for stride in det.levels():
            idx, q, size, _ = made[f"h{stride}.{kind}"]
            cells = size * size * det.PER_CELL
            shape = g.tensor(f"h{stride}.{kind}.shape", (3,), T.INT32,
                             data=np.array([-1, cells, last], np.int32))
            opts = fb.ReshapeOptionsT()
            opts.newShape = [-1, cells, last]
            flat = g.tensor(f"h{stride}.{kind}.flat", (1, cells, last), act_type,
                            quant=tfl._quant(fb, *q) if q else None, batch_dim=True)
            g.op(Op.RESHAPE, [idx, shape], [flat], Opt.ReshapeOptions, opts)
            if int8:
                f32 = g.tensor(f"h{stride}.{kind}.f32", (1, cells, last), T.FLOAT32,
                               batch_dim=True)
                g.op(Op.DEQUANTIZE, [flat], [f32], version=2)
                flat = f32
            parts.append(flat)
        name = "boxes" if kind == "box" else "logits"
        out = g.tensor(name, (1, len(det.anchors(resolution)), last), T.FLOAT32, batch_dim=True)
        opts = fb.ConcatenationOptionsT()
        opts.axis = 1
        g.op(Op.CONCATENATION, parts, [out], Opt.ConcatenationOptions, opts)
        outputs.append(out)
    precision = "int8" if int8 else "fp32"
    return g.serialize([graph_input], outputs,
                       f"tuner ssd_digits w{width} r{resolution} {precision}")


def build(workload, variant) -> bytes:
    """The ``.tflite`` bytes of a variant of ``DigitCanvasesWorkload``."""
    width, res = variant.params["width"], variant.resolution
    weights = workload.folded_weights(width, res)
    fp32 = build_graph(weights, width, res)
    if variant.precision == "fp32":
        return fp32
    ranges = tfl.calibrate_ranges(fp32, workload.calibration_samples(res))
    return build_graph(weights, width, res, ranges=ranges)
