"""The default workload: MobileNet-v1 (width x resolution x fp32/int8) on the UCI digits.

Shipped: one weight file per width (``assets/``): float16 conv weights trained across all
resolutions, plus each resolution's batch-norm scale/shift (``train.py``). Built on first
use and cached by content hash: the fp32 ONNX graph for a (width, resolution), and its int8
version by ONNX Runtime's post-training static quantization (QDQ, per-channel weights)
calibrated on training images, never held-out ones. The task is classification
(``workloads/tasks/classification.py``).
"""
from __future__ import annotations

import json
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from backends.cache import content_hash, publish_file
from backends.litert import edgetpu_compiled
from workloads.digits import data as digits_data
from workloads.base import Variant
from workloads.tasks.classification import ClassificationWorkload
from workloads.models.mobilenet import build_onnx, layer_plan

ASSETS = Path(__file__).parent / "assets"
WIDTHS = (0.25, 0.5, 0.75, 1.0)
RESOLUTIONS = (32, 48, 64, 96)
PRECISIONS = ("fp32", "int8")
CALIBRATION_COUNT = 128
BUILDER_VERSION = 1  # bump when the graph or quantization recipe changes


def variant_name(width: float, resolution: int, precision: str) -> str:
    """A variant's name: its model file's stem and its row in the manifest."""
    return f"mobilenet_v1_w{width}_r{resolution}_{precision}"


@dataclass
class DigitsConfig:
    """The default workload: MobileNet-v1 on scikit-learn's digits (nothing to set)."""

    name: str = "digits"


class DigitsWorkload(ClassificationWorkload):
    name = "digits"
    Config = DigitsConfig
    num_classes = digits_data.NUM_CLASSES
    loadgen_model = "resnet50"  # brings the ImageNet classification rules (sample count 1024)

    def __init__(self, cache_dir=None, **_ignored: Any):
        super().__init__(cache_dir)
        self._split: dict[str, np.ndarray] | None = None

    # --- family -------------------------------------------------------------------
    def variant(self, width: float = 1.0, resolution: int = 64, precision: str = "fp32",
                **extra: Any) -> Variant:
        if extra:
            raise ValueError(f"digits workload: unknown model parameter(s) {sorted(extra)}")
        width = float(width)
        if width not in WIDTHS:
            raise ValueError(f"digits workload: width {width} not shipped; one of {WIDTHS}")
        if int(resolution) not in RESOLUTIONS:
            raise ValueError(f"digits workload: resolution {resolution}; one of {RESOLUTIONS}")
        if precision not in PRECISIONS:
            raise ValueError(f"digits workload: precision {precision!r}; one of {PRECISIONS}")
        return Variant(variant_name(width, int(resolution), precision), precision,
                       int(resolution), {"width": width})

    @classmethod
    def model_choices(cls, cfg: Mapping[str, Any]) -> dict[str, tuple | None]:
        return {"width": WIDTHS, "resolution": RESOLUTIONS, "precision": PRECISIONS}

    @classmethod
    def shipped_accuracies(cls, cfg: Mapping[str, Any]) -> list[tuple[dict[str, Any], str, float]]:
        """The held-out top-1 of every shipped variant, with ONNX Runtime (manifest.json,
        written by ``python -m workloads.digits.train``)."""
        manifest = ASSETS / "manifest.json"
        if not manifest.exists():
            return []
        top1 = json.loads(manifest.read_text())["top1"]
        out = []
        for width in WIDTHS:
            for resolution in RESOLUTIONS:
                for precision in PRECISIONS:
                    name = variant_name(width, resolution, precision)
                    if name in top1:
                        out.append(({"width": width, "resolution": resolution,
                                     "precision": precision}, "onnxruntime", float(top1[name])))
        return out

    def weights_description(self, variant: Variant, runtime: str) -> dict[str, str]:
        steps = ["fp16 stored convolution weights cast to fp32",
                 "batch norm folded into the convolutions (per resolution)"]
        if variant.precision == "int8":
            # LiteRT's .tflite files are quantized by our own exporter, not by ORT.
            steps.append("post-training full-integer int8 quantization by the project's "
                         "TFLite exporter (int8 weights and activations, calibrated on "
                         "training images)" if runtime == "litert" else
                         "post-training static int8 quantization (ONNX Runtime QDQ, "
                         "per-channel int8 weights, uint8 activations, calibrated on "
                         "training images)")
        return {"starting_weights_filename": self.weights_file(float(variant.params["width"])).name,
                "retraining": "yes: MobileNet-v1 trained from scratch on the UCI digits "
                              "(workloads/digits/train.py), not the MLPerf reference weights",
                "input_data_types": self.input_data_types(variant),
                "weight_data_types": variant.precision,
                "weight_transformations": "; ".join(steps)}

    def weights_file(self, width: float) -> Path:
        return ASSETS / f"mobilenet_v1_digits_w{width}.npz"

    def model_file(self, variant: Variant, fmt: str = "onnx") -> Path:
        builders = {"onnx": self._onnx_file, "tflite": self._tflite_file,
                    "edgetpu_tflite": lambda v: self._tflite_file(v, edgetpu=True)}
        if fmt not in builders:
            raise ValueError(f"digits workload cannot make {fmt!r} models; "
                             f"formats: {sorted(builders)}")
        return builders[fmt](variant)

    def _cached(self, variant: Variant, suffix: str, build, *key_parts) -> Path:
        """Build a model file once per content hash; concurrent builders wait on a lock."""
        width = variant.params["width"]
        key = content_hash(self.weights_file(width), width, variant.resolution,
                           variant.precision, BUILDER_VERSION, *key_parts)
        path = self.cache_dir / "models" / f"{variant.name}-{key}{suffix}"
        if not path.exists():
            publish_file(path, lambda tmp: tmp.write_bytes(build()))
        return path

    def _onnx_file(self, variant: Variant) -> Path:
        def build() -> bytes:
            model = self.fp32_onnx(variant.params["width"], variant.resolution)
            if variant.precision == "int8":
                return self._quantize(model, variant.resolution)
            return model.SerializeToString()

        return self._cached(variant, ".onnx", build)

    def _tflite_file(self, variant: Variant, edgetpu: bool = False) -> Path:
        """The LiteRT model, written without TensorFlow (``tflite_export``); with ``edgetpu``,
        the user's ``edgetpu_compiler`` output for it, which sits next to it in the cache."""
        from workloads.models import tflite_export

        if edgetpu and variant.precision != "int8":
            raise ValueError(f"the Edge TPU runs int8 models only; {variant.name} is "
                             f"{variant.precision}")
        width = variant.params["width"]

        def build() -> bytes:
            weights = self.folded_weights(width, variant.resolution)
            if variant.precision == "int8":
                return tflite_export.build_int8_tflite(
                    weights, width, variant.resolution, self.num_classes,
                    self.calibration_samples(variant.resolution), digits_data.CHANNELS)
            return tflite_export.build_tflite(weights, width, variant.resolution,
                                              self.num_classes, digits_data.CHANNELS)

        path = self._cached(variant, ".tflite", build, tflite_export.TFLITE_BUILDER_VERSION)
        if not edgetpu:
            return path
        return edgetpu_compiled(path)

    def folded_weights(self, width: float, resolution: int) -> dict[str, np.ndarray]:
        """Shared conv weights with this resolution's batch norm folded in (fp32)."""
        raw = np.load(self.weights_file(width))
        out = {"fc.w": raw["fc.w"].astype(np.float32), "fc.b": raw["fc.b"].astype(np.float32)}
        for conv in layer_plan(width, digits_data.CHANNELS):
            scale = raw[f"r{resolution}.{conv.name}.scale"]
            out[f"{conv.name}.w"] = raw[f"{conv.name}.w"].astype(np.float32) * scale[:, None, None, None]
            out[f"{conv.name}.b"] = raw[f"r{resolution}.{conv.name}.shift"].astype(np.float32)
        return out

    def fp32_onnx(self, width: float, resolution: int):
        return build_onnx(self.folded_weights(width, resolution), width, resolution,
                          self.num_classes, digits_data.CHANNELS)

    def calibration_samples(self, resolution: int) -> np.ndarray:
        train = self.split["train_images"][:CALIBRATION_COUNT]
        return digits_data.preprocess(train, resolution)

    def _quantize(self, model, resolution: int) -> bytes:
        from workloads.models.quantize import quantize_qdq

        return quantize_qdq(model, "input", self.calibration_samples(resolution))

    @classmethod
    def reference_accuracy(cls, cfg: Mapping[str, Any]) -> float | None:
        manifest = ASSETS / "manifest.json"
        if not manifest.exists():
            return None
        top1 = json.loads(manifest.read_text())["top1"]
        fp32 = [acc for name, acc in top1.items() if name.endswith("_fp32")]
        return max(fp32) if fp32 else None

    # --- dataset -----------------------------------------------------------------
    @property
    def split(self) -> dict[str, np.ndarray]:
        if self._split is None:
            self._split = digits_data.load_split()
        return self._split

    @property
    def labels(self) -> np.ndarray:
        return self.split["val_labels"]

    def load_batch(self, indices: list[int], variant: Variant) -> np.ndarray:
        return digits_data.preprocess(self.split["val_images"][list(indices)], variant.resolution)

    def reference_check(self, variant: Variant) -> float:
        """Held-out top-1 with ONNX Runtime in one batch: the README table, not a trial."""
        import onnxruntime as ort

        sess = ort.InferenceSession(str(self.model_file(variant)),
                                    providers=["CPUExecutionProvider"])
        x = self.load_batch(list(range(len(self.labels))), variant)
        pred = self.postprocess(sess.run(None, {"input": x})[0])
        return float(np.mean(pred == self.labels))


WORKLOAD = DigitsWorkload
