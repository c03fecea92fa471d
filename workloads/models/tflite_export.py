"""MobileNet-v1 as a ``.tflite`` flatbuffer, written without TensorFlow.

The TFLite schema's generated Python object API ships inside the ``ai-edge-litert`` wheel
(``ai_edge_litert/schema_py_generated.py``); with ``flatbuffers`` that is enough to write a
model the LiteRT interpreter loads. The graph mirrors ``mobilenet.build_onnx`` op for op so
the two formats give the same logits:

    input (N, R, R, 3) f32 -> [PAD] -> CONV_2D / DEPTHWISE_CONV_2D + RELU6 (x27)
        -> MEAN over H, W -> FULLY_CONNECTED -> logits (N, classes) f32

Padding: the ONNX graph pads ``kernel // 2`` on every side. TFLite's SAME padding puts the
odd pixel at the bottom/right, so a stride-2 conv on an even input would sample a window
shifted by one pixel; such convs get an explicit PAD + VALID instead.

int8 (full-integer post-training quantization, the TFLite quantization spec): weights int8
symmetric, per output channel for convolutions, per tensor for the classifier; biases int32
at ``input_scale * weight_scale``; activations int8 per tensor with min/max calibrated by
running the fp32 model on the calibration images. Float input and output, with
QUANTIZE/DEQUANTIZE at the edges, so runtimes feed it exactly what they feed the fp32 one.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from workloads.models.mobilenet import layer_plan, weight_shapes

#: bump when the graph or the quantization recipe changes (part of the cache key)
TFLITE_BUILDER_VERSION = 1
_FILE_IDENTIFIER = b"TFL3"
_SCHEMA_VERSION = 3
_ALIGN = 16  # constant buffers 16-byte aligned, as the TFLite converter writes them


def schema() -> ModuleType:
    """The TFLite flatbuffer schema module (imported lazily: an optional dependency)."""
    try:
        import flatbuffers  # noqa: F401
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:
        raise ImportError(
            "writing .tflite models needs the TFLite schema shipped in ai-edge-litert and "
            "the flatbuffers package: pip install 'tuner[litert]' "
            f"(ai-edge-litert==2.3.0 flatbuffers==25.12.19); import failed: {exc}") from exc
    return schema_py_generated


class _AlignedBuffer:
    """A BufferT stand-in whose data vector is 16-byte aligned (BufferT.Pack aligns to 1)."""

    def __init__(self, fb: ModuleType, data: bytes):
        self.fb, self.data = fb, data

    def Pack(self, builder) -> int:  # noqa: N802 - the flatbuffers object-API name
        builder.StartVector(1, len(self.data), _ALIGN)
        builder.head -= len(self.data)
        builder.Bytes[builder.head:builder.head + len(self.data)] = self.data
        vec = builder.EndVector()
        self.fb.BufferStart(builder)
        self.fb.BufferAddData(builder, vec)
        return self.fb.BufferEnd(builder)


class _Graph:
    """Just enough of a TFLite graph builder: tensors, constant buffers, builtin ops."""

    def __init__(self, fb: ModuleType):
        self.fb = fb
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [fb.BufferT()]  # buffer 0: the empty sentinel
        self.operators: list[Any] = []
        self.opcodes: list[Any] = []
        self._opcode_index: dict[tuple[int, int], int] = {}

    def tensor(self, name: str, shape: tuple[int, ...], dtype: int, data: np.ndarray | None = None,
               quant: Any = None, batch_dim: bool = False) -> int:
        t = self.fb.TensorT()
        t.name, t.type, t.shape, t.quantization = name, dtype, list(shape), quant
        if batch_dim:  # the batch stays resizable (resize_tensor_input)
            t.shapeSignature = [-1] + list(shape[1:])
        if data is not None:
            self.buffers.append(_AlignedBuffer(self.fb, np.ascontiguousarray(data).tobytes()))
            t.buffer = len(self.buffers) - 1
        else:
            self.buffers.append(self.fb.BufferT())  # activations get an empty buffer each
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code: int, inputs: list[int], outputs: list[int], options_type: int = 0,
           options: Any = None, version: int = 1) -> None:
        key = (code, version)
        if key not in self._opcode_index:
            oc = self.fb.OperatorCodeT()
            # every op used here is < 127, so the deprecated int8 field holds it too
            oc.builtinCode = oc.deprecatedBuiltinCode = code
            oc.version = version
            self._opcode_index[key] = len(self.opcodes)
            self.opcodes.append(oc)
        op = self.fb.OperatorT()
        op.opcodeIndex = self._opcode_index[key]
        op.inputs, op.outputs = list(inputs), list(outputs)
        op.builtinOptionsType, op.builtinOptions = options_type, options
        self.operators.append(op)

    def serialize(self, inputs: list[int], outputs: list[int], description: str) -> bytes:
        import flatbuffers

        fb = self.fb
        sub = fb.SubGraphT()
        sub.tensors, sub.operators = self.tensors, self.operators
        sub.inputs, sub.outputs, sub.name = list(inputs), list(outputs), "main"
        model = fb.ModelT()
        model.version = _SCHEMA_VERSION
        model.operatorCodes, model.subgraphs, model.buffers = self.opcodes, [sub], self.buffers
        model.description = description
        builder = flatbuffers.Builder(1 << 20)
        builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
        return bytes(builder.Output())


def _pads(size: int, kernel: int, stride: int) -> tuple[int, int] | None:
    """Explicit (before, after) pads reproducing ONNX's symmetric ``kernel // 2`` padding, or
    None where TFLite's SAME padding already samples the same windows."""
    p = kernel // 2
    out = (size + 2 * p - kernel) // stride + 1
    same_out = -(-size // stride)
    same_before = max((same_out - 1) * stride + kernel - size, 0) // 2
    if same_out == out and same_before == p:
        return None
    return p, max(0, (out - 1) * stride + kernel - size - p)


def _check_weights(weights: dict[str, np.ndarray], width: float, num_classes: int,
                   in_channels: int) -> None:
    for key, shape in weight_shapes(width, num_classes, in_channels).items():
        if key not in weights:
            raise KeyError(f"weights lack {key!r} (width {width})")
        if tuple(weights[key].shape) != shape:
            raise ValueError(f"weights {key!r} have shape {weights[key].shape}, expected {shape}")


# --- quantization helpers ------------------------------------------------------------
def _act_qparams(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric int8 scale/zero point for a calibrated range (0 exactly representable)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zp


def _quant(fb: ModuleType, scale, zero_point, axis: int = 0) -> Any:
    q = fb.QuantizationParametersT()
    q.scale = [float(s) for s in np.atleast_1d(scale)]
    q.zeroPoint = [int(z) for z in np.atleast_1d(zero_point)]
    q.quantizedDimension = axis
    return q


def _symmetric_int8(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """int8 in [-127, 127] with zero point 0, per channel along ``axis`` (None: per tensor)."""
    if axis is None:
        amax = np.array([np.abs(w).max()], np.float64)
        scale = np.where(amax > 0, amax / 127.0, 1.0)
        q = np.round(w / scale[0])
    else:
        reduce = tuple(i for i in range(w.ndim) if i != axis)
        amax = np.abs(w).max(axis=reduce).astype(np.float64)
        scale = np.where(amax > 0, amax / 127.0, 1.0)  # an all-zero channel stays zero
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.round(w / scale.reshape(shape))
    return np.clip(q, -127, 127).astype(np.int8), scale.astype(np.float32)


# --- the graph ---------------------------------------------------------------------------
def build_tflite(weights: dict[str, np.ndarray], width: float, resolution: int,
                 num_classes: int, in_channels: int = 3,
                 ranges: dict[str, tuple[float, float]] | None = None) -> bytes:
    """A MobileNet-v1 ``.tflite`` from BN-folded fp32 weights (ONNX layouts, as
    ``DigitsWorkload.folded_weights`` returns them). ``ranges`` (activation name ->
    calibrated (min, max)) makes it the full-integer int8 model; None gives fp32."""
    fb = schema()
    _check_weights(weights, width, num_classes, in_channels)
    g = _Graph(fb)
    T, Op, Opt = fb.TensorType, fb.BuiltinOperator, fb.BuiltinOptions
    int8 = ranges is not None
    act_type = T.INT8 if int8 else T.FLOAT32
    v = 3 if int8 else 1  # op versions that name the int8 kernels (the resolver accepts both)

    def act(name: str, shape: tuple[int, ...], like: str | None = None) -> tuple[int, Any]:
        """An activation tensor; int8 ones carry the calibrated range of ``like or name``."""
        qp = None
        if int8:
            scale, zp = _act_qparams(*ranges[like or name])
            qp = (scale, zp)
        idx = g.tensor(name, shape, act_type, quant=_quant(fb, *qp) if qp else None,
                       batch_dim=True)
        return idx, qp

    x_idx = g.tensor("input", (1, resolution, resolution, in_channels), T.FLOAT32, batch_dim=True)
    graph_input = x_idx
    if int8:
        x_idx, x_q = act("input.q", (1, resolution, resolution, in_channels), like="input")
        g.op(Op.QUANTIZE, [graph_input], [x_idx], version=2)
    else:
        x_q = None
    size, channels = resolution, in_channels

    for conv in layer_plan(width, in_channels):
        w = weights[f"{conv.name}.w"].astype(np.float32)
        b = weights[f"{conv.name}.b"].astype(np.float32)
        pads = _pads(size, conv.kernel, conv.stride) if conv.kernel > 1 else None
        padding = fb.Padding.VALID if conv.kernel == 1 else fb.Padding.SAME
        if pads is not None:
            # PAD keeps the input's quantization (int8 pads with the zero point, i.e. 0.0)
            pad_shape = (1, size + sum(pads), size + sum(pads), channels)
            paddings = np.array([[0, 0], list(pads), list(pads), [0, 0]], np.int32)
            p_idx = g.tensor(f"{conv.name}.paddings", (4, 2), T.INT32, data=paddings)
            padded = g.tensor(f"{conv.name}.pad", pad_shape, act_type,
                              quant=_quant(fb, *x_q) if x_q else None, batch_dim=True)
            g.op(Op.PAD, [x_idx, p_idx], [padded], Opt.PadOptions, fb.PadOptionsT(),
                 version=2 if int8 else 1)
            x_idx, size, padding = padded, size + sum(pads), fb.Padding.VALID
        out_size = (size - conv.kernel) // conv.stride + 1 if padding == fb.Padding.VALID \
            else -(-size // conv.stride)

        if conv.depthwise:
            w_t = w.transpose(1, 2, 3, 0)  # (C, 1, kh, kw) -> (1, kh, kw, C)
            w_axis = 3
        else:
            w_t = w.transpose(0, 2, 3, 1)  # (O, I, kh, kw) -> OHWI
            w_axis = 0
        if int8:
            wq, w_scale = _symmetric_int8(w_t, w_axis)
            w_idx = g.tensor(f"{conv.name}.w", w_t.shape, T.INT8, data=wq,
                             quant=_quant(fb, w_scale, np.zeros_like(w_scale, np.int64), w_axis))
            b_scale = x_q[0] * w_scale.astype(np.float64)
            bq = np.clip(np.round(b / b_scale), -2**31, 2**31 - 1).astype(np.int32)
            b_idx = g.tensor(f"{conv.name}.b", b.shape, T.INT32, data=bq,
                             quant=_quant(fb, b_scale, np.zeros_like(b_scale, np.int64)))
        else:
            w_idx = g.tensor(f"{conv.name}.w", w_t.shape, T.FLOAT32, data=w_t)
            b_idx = g.tensor(f"{conv.name}.b", b.shape, T.FLOAT32, data=b)
        y_idx, y_q = act(conv.name, (1, out_size, out_size, conv.out_channels))

        if conv.depthwise:
            opts = fb.DepthwiseConv2DOptionsT()
            opts.depthMultiplier = 1
            code, opt_type = Op.DEPTHWISE_CONV_2D, Opt.DepthwiseConv2DOptions
        else:
            opts = fb.Conv2DOptionsT()
            code, opt_type = Op.CONV_2D, Opt.Conv2DOptions
        opts.padding, opts.strideH, opts.strideW = padding, conv.stride, conv.stride
        opts.fusedActivationFunction = fb.ActivationFunctionType.RELU6
        g.op(code, [x_idx, w_idx, b_idx], [y_idx], opt_type, opts, version=v)
        x_idx, x_q, size, channels = y_idx, y_q, out_size, conv.out_channels

    # global average pool: MEAN over H, W (keep_dims=False gives (N, C) for the classifier)
    axes = g.tensor("pool.axes", (2,), T.INT32, data=np.array([1, 2], np.int32))
    pool_idx, pool_q = act("pool", (1, channels))
    mean_opts = fb.ReducerOptionsT()
    mean_opts.keepDims = False
    g.op(Op.MEAN, [x_idx, axes], [pool_idx], Opt.ReducerOptions, mean_opts,
         version=2 if int8 else 1)

    fc_w, fc_b = weights["fc.w"].astype(np.float32), weights["fc.b"].astype(np.float32)
    if int8:
        wq, w_scale = _symmetric_int8(fc_w, None)
        w_idx = g.tensor("fc.w", fc_w.shape, T.INT8, data=wq, quant=_quant(fb, w_scale, 0))
        b_scale = float(pool_q[0] * w_scale[0])
        bq = np.clip(np.round(fc_b / b_scale), -2**31, 2**31 - 1).astype(np.int32)
        b_idx = g.tensor("fc.b", fc_b.shape, T.INT32, data=bq, quant=_quant(fb, b_scale, 0))
        lq_idx, _ = act("logits.q", (1, num_classes), like="logits")
        logits = g.tensor("logits", (1, num_classes), T.FLOAT32, batch_dim=True)
    else:
        w_idx = g.tensor("fc.w", fc_w.shape, T.FLOAT32, data=fc_w)
        b_idx = g.tensor("fc.b", fc_b.shape, T.FLOAT32, data=fc_b)
        lq_idx = logits = g.tensor("logits", (1, num_classes), T.FLOAT32, batch_dim=True)
    g.op(Op.FULLY_CONNECTED, [pool_idx, w_idx, b_idx], [lq_idx], Opt.FullyConnectedOptions,
         fb.FullyConnectedOptionsT(), version=4 if int8 else 1)
    if int8:
        g.op(Op.DEQUANTIZE, [lq_idx], [logits], version=2)
    precision = "int8" if int8 else "fp32"
    return g.serialize([graph_input], [logits],
                       f"tuner mobilenet_v1 w{width} r{resolution} {precision}")


# --- calibration ----------------------------------------------------------------------------
def calibrate_ranges(fp32_model: bytes, samples_nchw: np.ndarray,
                     batch: int = 32) -> dict[str, tuple[float, float]]:
    """Per-activation (min, max) of the fp32 model over the calibration images.

    Runs LiteRT's reference kernels with every intermediate tensor preserved (no XNNPACK,
    which would fuse them away), so the ranges are those of the graph being quantized.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=fp32_model, num_threads=1,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                         experimental_preserve_all_tensors=True)
    inp = interp.get_input_details()[0]
    # activations are the non-constant tensors; "*.pad" shares its input's range
    names = {d["name"]: d["index"] for d in interp.get_tensor_details()}
    constant = {n for n in names if n.endswith((".w", ".b", ".paddings", ".axes", ".pad"))}
    wanted = {n: i for n, i in names.items() if n not in constant}
    ranges: dict[str, list[float]] = {}
    x_all = np.ascontiguousarray(np.asarray(samples_nchw, np.float32).transpose(0, 2, 3, 1))
    for start in range(0, len(x_all), batch):
        x = x_all[start:start + batch]
        interp.resize_tensor_input(inp["index"], list(x.shape))
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        for name, idx in wanted.items():
            t = interp.get_tensor(idx)
            lo, hi = float(t.min()), float(t.max())
            if name in ranges:
                ranges[name] = [min(ranges[name][0], lo), max(ranges[name][1], hi)]
            else:
                ranges[name] = [lo, hi]
    return {n: (r[0], r[1]) for n, r in ranges.items()}


def build_int8_tflite(weights: dict[str, np.ndarray], width: float, resolution: int,
                      num_classes: int, calibration_nchw: np.ndarray,
                      in_channels: int = 3) -> bytes:
    """Full-integer int8 model, calibrated on ``calibration_nchw`` (N, C, R, R) float32."""
    fp32 = build_tflite(weights, width, resolution, num_classes, in_channels)
    ranges = calibrate_ranges(fp32, calibration_nchw)
    return build_tflite(weights, width, resolution, num_classes, in_channels, ranges=ranges)
