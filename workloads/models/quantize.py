"""The project's one int8 recipe for the ONNX models it builds: ONNX Runtime's post-training
static quantization (QDQ, per-channel int8 weights, uint8 activations), calibrated one sample
at a time on training data, never held-out data."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def quantize_qdq(model, input_name: str, samples: np.ndarray) -> bytes:
    """``model`` (an onnx ModelProto, fp32) -> the serialized int8 QDQ model."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(samples[i:i + 1] for i in range(len(samples)))

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model.SerializeToString())
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        return dst.read_bytes()
