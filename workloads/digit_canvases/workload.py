"""The default detection workload: small SSDs on canvases of scikit-learn digits, offline.

Family: backbone width x input resolution x fp32/int8 (``model.py``, trained by
``train.py``, weights in ``assets/``), plus the post-processing knobs the search owns:
``score_threshold``, ``nms_iou`` and ``max_detections``, and ``nms``: where NMS runs
(``harness``, or ``model``: inside the ONNX graph, ``nms_graph.py``, for ONNX Runtime).
The knobs are model parameters (they change mAP as well as latency) but not part of a model
file: every knob setting of a (width, resolution, precision, nms) shares one cached file.

Built on first use and cached by content hash: the fp32 ONNX graph of a (width,
resolution) with that resolution's batch norm folded in, its int8 version by ONNX
Runtime's static quantization (QDQ, per-channel weights) calibrated on training canvases,
and the LiteRT ``.tflite`` files (``tflite.py``).

The model ends at raw box regressions and class logits; the responder decodes, thresholds
and runs per-class NMS (``postprocess.py``) inside LoadGen's timed path (with ``nms:
model`` the graph does that and the responder only splits the kept boxes by image), and answers
MLPerf's detection records. ``score`` computes COCO mAP as MLPerf's accuracy-coco.py does
(``workloads/tasks/coco_eval.py``); ``annotation_file`` writes the ground truth where that
script wants it. Scoring, samples and records are the detection task's
(``workloads/tasks/detection.py``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from backends.base import TensorSpec
from backends.cache import content_hash, publish_file
from workloads.base import Predict, TensorRole, Variant, match_inputs
from workloads.digit_canvases import data, model as det, nms_graph
from workloads.tasks import detection_post as post
from workloads.tasks.detection import MAP, DetectionWorkload, Sample, output_positions

WIDTHS = (0.5, 1.0, 2.0)
RESOLUTIONS = (64, 96, 128)
PRECISIONS = ("fp32", "int8")
#: the knobs' defaults (torchvision's SSD uses 0.01 / 0.45 / 200; MLPerf's TF SSD 0.3 / 0.6 / 100)
DEFAULT_KNOBS = {"score_threshold": 0.05, "nms_iou": 0.5, "max_detections": 100}
#: where NMS runs: in the harness (numpy, every runtime) or in the model (ONNX files only)
NMS_PLACES = ("harness", "model")
CALIBRATION_COUNT = 64
BUILDER_VERSION = 1  # bump when the graph or quantization recipe changes

@dataclass
class DigitCanvasesConfig:
    """The default detection workload (conf/workload/digit_canvases.yaml)."""

    name: str = "digit_canvases"
    count: Optional[int] = None  # first N validation canvases (null: all)


def _knobs(score_threshold: Any, nms_iou: Any, max_detections: Any) -> dict[str, Any]:
    s, n, m = float(score_threshold), float(nms_iou), int(max_detections)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"digit_canvases workload: score_threshold {s}; must be in [0, 1)")
    if not 0.0 < n <= 1.0:
        raise ValueError(f"digit_canvases workload: nms_iou {n}; must be in (0, 1]")
    if m < 1:
        raise ValueError(f"digit_canvases workload: max_detections {m}; must be >= 1")
    return {"score_threshold": s, "nms_iou": n, "max_detections": m}


IMAGE = TensorRole("image", ("float32",), rank=4)  # (N, 1, R, R); NHWC for LiteRT
#: the SSD head's outputs (model.py names them; so does tflite.py), in the model's order
OUTPUTS = (TensorRole("boxes", ("float32",), rank=3, last=4),
           TensorRole("logits", ("float32",), rank=3, last=det.OUT_CLASSES))


class DetectionResponder:
    """Samples -> model input batch -> (boxes, logits) -> decode + NMS -> records."""

    output_names = tuple(o.role for o in OUTPUTS)  # read from predict's list by these names

    def __init__(self, predict: Predict, spec: TensorSpec, outputs: Sequence[TensorSpec],
                 resolution: int, knobs: dict, batch_size: int):
        self.predict, self.name, self.knobs = predict, spec.name, knobs
        self.at = output_positions(outputs, self.output_names)
        # a TFLite model takes NHWC; with one channel that is the same bytes as NCHW
        self.nhwc = len(spec.shape) == 4 and spec.shape[1] == resolution
        self.anchors = det.anchors(resolution)
        self.writer = post.RecordWriter()
        self._batch = np.zeros((max(1, batch_size), 1, resolution, resolution), np.float32)

    def _images(self, samples: Sequence[Sample]) -> np.ndarray:
        n = len(samples)
        if n == 1:
            x = samples[0].image
        else:
            if n > len(self._batch):
                self._batch = np.zeros((n,) + self._batch.shape[1:], np.float32)
            x = self._batch[:n]
            for i, s in enumerate(samples):
                x[i] = s.image[0]
        if self.nhwc:
            x = x.reshape(n, x.shape[2], x.shape[3], 1)
        return x

    def __call__(self, samples: Sequence[Sample]) -> list[tuple[int, int]]:
        n = len(samples)
        outs = self.predict({self.name: self._images(samples)})
        reg, logits = outs[self.at[0]], outs[self.at[1]]
        scores = post.softmax(logits)[..., 1:]  # background dropped: column d = digit d
        k = self.knobs
        boxes, confs, ids = [], [], []
        for i in range(n):
            anchor, cls, s = post.select(scores[i], k["score_threshold"])
            b = det.decode(reg[i, anchor], self.anchors[anchor])
            keep = post.batched_nms(b, s, cls, k["nms_iou"], k["max_detections"])
            boxes.append(b[keep])
            confs.append(s[keep])
            ids.append(cls[keep] + 1)  # digit d is category id d + 1
        return self.writer.pack([s.index for s in samples], boxes, confs, ids)


class GraphNmsResponder(DetectionResponder):
    """Samples -> model input batch and thresholds -> the graph's kept boxes -> records."""

    output_names = nms_graph.OUTPUTS

    def __init__(self, predict: Predict, spec: TensorSpec, outputs: Sequence[TensorSpec],
                 resolution: int, knobs: dict, batch_size: int):
        super().__init__(predict, spec, outputs, resolution, knobs, batch_size)
        self.feeds = nms_graph.knob_feeds(knobs)

    def __call__(self, samples: Sequence[Sample]) -> list[tuple[int, int]]:
        outs = self.predict({self.name: self._images(samples), **self.feeds})
        index, boxes, scores = (outs[i] for i in self.at)
        per_image = nms_graph.split(index, boxes, scores, len(samples),
                                    self.knobs["max_detections"])
        return self.writer.pack([s.index for s in samples], [b for b, _, _ in per_image],
                                [s for _, s, _ in per_image], [c + 1 for _, _, c in per_image])


class DigitCanvasesWorkload(DetectionWorkload):
    name = "digit_canvases"
    Config = DigitCanvasesConfig
    metric = MAP
    inputs = (IMAGE,)
    outputs = OUTPUTS
    # MLPerf's current edge detection benchmark (v6.1 yolo-95/99): its mlperf.conf rules,
    # 64 performance samples (the whole 400-canvas set fits in memory anyway)
    loadgen_model = "yolo"

    def __init__(self, cache_dir=None, count: int | None = None, **extra: Any):
        super().__init__(cache_dir)
        if extra:
            raise ValueError(f"digit_canvases workload: unknown config key(s) {sorted(extra)}; "
                             "known: count")
        self.check({"count": count})
        self.count = data.VAL_COUNT if count is None else int(count)
        self._canvases: data.Canvases | None = None
        self._gt = None
        self._inputs: dict[int, np.ndarray] = {}

    # --- facts read without building the workload ----------------------------------------
    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        count = cfg.get("count")
        if count is not None and not 1 <= int(count) <= data.VAL_COUNT:
            raise ValueError(f"digit_canvases workload: count {count}; 1..{data.VAL_COUNT}")

    @classmethod
    def model_choices(cls, cfg: Mapping[str, Any]) -> dict[str, tuple | None]:
        return {"width": WIDTHS, "resolution": RESOLUTIONS, "precision": PRECISIONS,
                "score_threshold": None, "nms_iou": None, "max_detections": None,
                "nms": NMS_PLACES}

    @classmethod
    def reference_accuracy(cls, cfg: Mapping[str, Any]) -> float | None:
        """The best fp32 mAP (ONNX Runtime, default knobs) in the shipped manifest."""
        manifest = det.ASSETS / "manifest.json"
        if not manifest.exists():
            return None
        rows = json.loads(manifest.read_text())["onnxruntime"]
        fp32 = [row["mAP"] for name, row in rows.items() if name.endswith("_fp32")]
        return max(fp32) if fp32 else None

    # --- the model family ---------------------------------------------------------------
    def variant(self, width: float = 1.0, resolution: int = 96, precision: str = "fp32",
                score_threshold: float = DEFAULT_KNOBS["score_threshold"],
                nms_iou: float = DEFAULT_KNOBS["nms_iou"],
                max_detections: int = DEFAULT_KNOBS["max_detections"], nms: str = "harness",
                **extra: Any) -> Variant:
        if extra:
            raise ValueError(f"digit_canvases workload: unknown model parameter(s) {sorted(extra)}")
        width = float(width)
        if width not in WIDTHS:
            raise ValueError(f"digit_canvases workload: width {width} not shipped; one of {WIDTHS}")
        if int(resolution) not in RESOLUTIONS:
            raise ValueError(f"digit_canvases workload: resolution {resolution}; one of {RESOLUTIONS}")
        if precision not in PRECISIONS:
            raise ValueError(f"digit_canvases workload: precision {precision!r}; one of {PRECISIONS}")
        if nms not in NMS_PLACES:
            raise ValueError(f"digit_canvases workload: nms {nms!r}; one of {NMS_PLACES}")
        knobs = _knobs(score_threshold, nms_iou, max_detections)
        # the knobs change outputs, so they are part of the name (accuracy is keyed by it)
        name = (f"ssd_digits_w{width}_r{int(resolution)}_{precision}"
                f"_s{knobs['score_threshold']:g}_n{knobs['nms_iou']:g}_m{knobs['max_detections']}"
                + ("_nmsgraph" if nms == "model" else ""))
        return Variant(name, precision, int(resolution), {"width": width, **knobs, "nms": nms})

    def model_file(self, variant: Variant, fmt: str = "onnx") -> Path:
        in_graph = variant.params.get("nms") == "model"
        if fmt == "onnx" and in_graph:
            plain = Variant(variant.name, variant.precision, variant.resolution,
                            {**variant.params, "nms": "harness"})
            return self._cached(variant, "_nmsgraph.onnx", lambda: nms_graph.append_nms(
                self.model_file(plain).read_bytes(), variant.resolution), "nms-in-graph")
        if in_graph:
            raise ValueError(f"digit_canvases workload: nms=model is built into ONNX files "
                             f"only (ONNX Runtime); a {fmt} model runs NMS in the harness "
                             "(nms=harness)")
        if fmt == "onnx":
            return self._cached(variant, ".onnx", lambda: self._onnx_bytes(variant))
        if fmt == "tflite":
            from workloads.digit_canvases import tflite

            return self._cached(variant, ".tflite", lambda: tflite.build(self, variant),
                                tflite.TFLITE_BUILDER_VERSION)
        raise ValueError(f"digit_canvases workload cannot make {fmt!r} models; "
                         "formats: ['onnx', 'tflite']")

    def _cached(self, variant: Variant, suffix: str, build, *key_parts) -> Path:
        """One file per (weights, width, resolution, precision): the knobs are not in it."""
        width = variant.params["width"]
        key = content_hash(det.weights_path(width), width, variant.resolution,
                           variant.precision, BUILDER_VERSION, *key_parts)
        stem = f"ssd_digits_w{width}_r{variant.resolution}_{variant.precision}"
        path = self.cache_dir / "models" / f"{stem}-{key}{suffix}"
        if not path.exists():
            publish_file(path, lambda tmp: tmp.write_bytes(build()))
        return path

    def folded_weights(self, width: float, resolution: int) -> dict[str, np.ndarray]:
        """Shared conv weights with this resolution's batch norm folded in (fp32)."""
        path = det.weights_path(width)
        if not path.exists():
            raise FileNotFoundError(f"digit_canvases workload: weights file {path} is missing "
                                    "(python -m workloads.digit_canvases.train)")
        raw = np.load(path)
        out = {}
        for conv in det.layer_plan(width):
            w = raw[f"{conv.name}.w"].astype(np.float32)
            if conv.relu6:
                scale = raw[f"r{resolution}.{conv.name}.scale"]
                out[f"{conv.name}.w"] = w * scale[:, None, None, None]
                out[f"{conv.name}.b"] = raw[f"r{resolution}.{conv.name}.shift"].astype(np.float32)
            else:
                out[f"{conv.name}.w"], out[f"{conv.name}.b"] = w, raw[f"{conv.name}.b"]
        return out

    def fp32_onnx(self, width: float, resolution: int):
        return det.build_onnx(self.folded_weights(width, resolution), width, resolution)

    def calibration_samples(self, resolution: int) -> np.ndarray:
        """Training canvases (never validation ones), preprocessed for the model."""
        return data.preprocess(data.make_canvases("train", CALIBRATION_COUNT).images, resolution)

    def _onnx_bytes(self, variant: Variant) -> bytes:
        model = self.fp32_onnx(variant.params["width"], variant.resolution)
        if variant.precision == "fp32":
            return model.SerializeToString()
        from workloads.models.quantize import quantize_qdq

        return quantize_qdq(model, "image", self.calibration_samples(variant.resolution))

    def weights_description(self, variant: Variant, runtime: str) -> dict[str, str]:
        steps = ["fp16 stored convolution weights cast to fp32",
                 "batch norm folded into the convolutions (per resolution)"]
        if variant.precision == "int8":
            steps.append("post-training full-integer int8 quantization by the project's "
                         "TFLite exporter (calibrated on training canvases)" if runtime == "litert"
                         else "post-training static int8 quantization (ONNX Runtime QDQ, "
                         "per-channel int8 weights, uint8 activations, calibrated on "
                         "training canvases)")
        return {"starting_weights_filename": det.weights_path(variant.params["width"]).name,
                "retraining": "yes: an SSD trained from scratch on canvases of the UCI digits "
                              "(workloads/digit_canvases/train.py), not MLPerf reference weights",
                "input_data_types": self.input_data_types(variant),
                "weight_data_types": variant.precision,
                "weight_transformations": "; ".join(steps)}

    # --- the dataset and the task ---------------------------------------------------------
    @property
    def canvases(self) -> data.Canvases:
        if self._canvases is None:
            full = data.make_canvases("val", data.VAL_COUNT)
            n = self.count  # a prefix of the full set: the same canvases whatever the count
            self._canvases = data.Canvases(full.images[:n], full.boxes[:n], full.labels[:n])
        return self._canvases

    def annotations(self) -> dict:
        return data.coco_annotations(self.canvases)

    @property
    def total_sample_count(self) -> int:
        return self.count

    def _preprocessed(self, resolution: int) -> np.ndarray:
        if resolution not in self._inputs:  # the whole set at once: 26 MB at 128 px
            self._inputs[resolution] = data.preprocess(self.canvases.images, resolution)
        return self._inputs[resolution]

    def load_samples(self, indices: Sequence[int], variant: Variant) -> list[Sample]:
        x = self._preprocessed(variant.resolution)
        out = []
        for i in indices:
            h, w = self.canvases.images[i].shape
            out.append(Sample(int(i), x[i:i + 1], int(h), int(w)))
        return out

    def responder(self, variant: Variant, predict: Predict, inputs: Sequence[TensorSpec],
                  outputs: Sequence[TensorSpec], batch_size: int) -> DetectionResponder:
        knobs = {k: variant.params[k] for k in DEFAULT_KNOBS}
        in_graph = variant.params.get("nms") == "model"
        # with nms=model the graph also takes its thresholds (nms_graph.KNOB_INPUTS), fed
        # by name from the knobs
        image = match_inputs(self.inputs, [s for s in inputs if s.name not in nms_graph.KNOB_INPUTS],
                             f"digit_canvases workload: {variant.name}")["image"]
        kind = GraphNmsResponder if in_graph else DetectionResponder
        return kind(predict, image, outputs, variant.resolution, knobs, batch_size)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "classes": data.NUM_CLASSES}
