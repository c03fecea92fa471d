"""Bring-your-own COCO: the user's detection models on COCO val2017, scored as MLPerf does.

Dataset: ``dataset_dir`` holds ``annotations/instances_val2017.json`` and the images (in
``dataset_dir`` or ``dataset_dir/val2017``). The QSL is the annotation file's ``images``
list in order (``count``: its first N), as MLPerf's accuracy-coco.py assumes. Preprocessing
is MLPerf's: RGB, a plain resize to the model's input (cv2 INTER_LINEAR, re-implemented in
numpy: ``workloads/images.py``), no crop.

Model interfaces, read from the file's inputs and outputs (``interface`` overrides):

``ssd`` (MLPerf's SSD-MobileNet from the TF Object Detection API, NMS inside the model)
    input ``image_tensor:0`` uint8 NHWC; outputs ``detection_boxes:0`` (ymin, xmin, ymax,
    xmax normalised), ``detection_classes:0`` (COCO ids), ``detection_scores:0``,
    ``num_detections:0``. The reference harness keeps every detection the model returns.
``tflite_ssd`` (``detect.tflite``: TFLite_Detection_PostProcess outputs)
    input NHWC float in [-1, 1] (uint8 when quantised); boxes, classes, scores, count,
    fetched by name; classes are 0-based (COCO id = class + 1).
``yolo`` (an Ultralytics export, MLPerf's yolo benchmark)
    input ``images`` float32 NCHW in 0-1; output ``output0`` [N, 4 + 80, A]: cx, cy, w, h in
    input pixels, then 80 class scores. Best class per box, score threshold, class-aware NMS
    here in the timed path, class index -> COCO id by the 80-to-91 table. The reference
    harness's values (Ultralytics ``predict(conf=0.001)``: IoU 0.7, 300 detections) are the
    defaults.

Knobs (model parameters, as in the detection space): ``score_threshold``, ``nms_iou``,
``max_detections``; null keeps the reference harness's value for the model's interface
(``nms_iou`` does nothing for the ``ssd`` interfaces, whose NMS is inside the model).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from backends.base import TensorSpec
from workloads.base import Predict, Variant, match_inputs, parse_model_files
from workloads.images import load_rgb, resize_linear
from workloads.models.model_io import model_io
from workloads.tasks import detection_post as post
from workloads.tasks.detection import MAP, DetectionWorkload, Sample

ANNOTATIONS = Path("annotations") / "instances_val2017.json"
PRECISIONS = ("fp32", "int8")
INTERFACES = ("ssd", "tflite_ssd", "yolo")
#: the MLPerf reference harnesses' post-processing (None: everything the model returns)
REFERENCE_KNOBS = {"ssd": (0.0, None, None), "tflite_ssd": (0.0, None, None),
                   "yolo": (0.001, 0.7, 300)}
COCO_80_TO_91 = np.array([
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90], np.float32)
YOLO_PRE_NMS = 30000  # Ultralytics' max_nms: candidates kept before NMS


@dataclass
class CocoConfig:
    """Bring-your-own COCO (conf/workload/coco.yaml documents each key)."""

    name: str = "coco"
    dataset_dir: str = "???"
    models: Any = "???"  # variant -> model file, or -> {fp32: file, int8: file}
    interface: Any = None  # ssd | tflite_ssd | yolo | {variant: interface} | None: from the file
    count: Optional[int] = None
    reference_accuracy: Optional[float] = None


CocoSample = Sample  # image: (R, R, 3) uint8 RGB, resized


def parse_models(models: Any) -> dict[str, dict[str, Path]]:
    return parse_model_files("coco", models, PRECISIONS, "ssd: /data/ssd_mobilenet.onnx")


def _annotation_path(dataset_dir: Any) -> Path:
    if dataset_dir is None or str(dataset_dir) in ("", "???"):
        raise ValueError("coco workload: `dataset_dir` is not set (the COCO val2017 folder)")
    path = Path(str(dataset_dir)).expanduser() / ANNOTATIONS
    if not path.is_file():
        raise FileNotFoundError(f"coco workload: dataset_dir: {path} does not exist")
    return path


def infer_interface(path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> str:
    names = " ".join(o.name for o in outputs)
    if "TFLite_Detection_PostProcess" in names or (path.suffix == ".tflite" and len(outputs) == 4):
        return "tflite_ssd"
    if "detection_boxes" in names and "detection_classes" in names:
        return "ssd"
    if len(outputs) == 1 and len(outputs[0].shape) == 3 and outputs[0].shape[1] == 84:
        return "yolo"
    raise ValueError(f"coco workload: cannot tell the interface of {path} (outputs {names}); "
                     f"set workload.interface to one of {INTERFACES}")


def resolution_of(spec: TensorSpec, interface: str) -> int:
    """The square input size: NHWC for the SSDs, NCHW for YOLO (640 when symbolic)."""
    dims = spec.shape[2:4] if interface == "yolo" else spec.shape[1:3]
    size = next((int(d) for d in dims if isinstance(d, (int, np.integer)) and d > 0), None)
    return size or (640 if interface == "yolo" else 300)


class CocoResponder:
    def __init__(self, predict: Predict, spec: TensorSpec, interface: str, knobs: tuple,
                 resolution: int):
        self.predict, self.spec, self.interface, self.res = predict, spec, interface, resolution
        self.score_threshold, self.nms_iou, self.max_det = knobs
        self.writer = post.RecordWriter()
        self.nchw = len(spec.shape) == 4 and spec.shape[1] == 3 and interface == "yolo"

    def _input(self, samples: Sequence[CocoSample]) -> np.ndarray:
        x = np.stack([s.image for s in samples])  # (N, R, R, 3) uint8
        if self.interface == "yolo":
            x = x.astype(np.float32) * np.float32(1.0 / 255.0)
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if self.nchw else x
        if self.spec.dtype == np.float32:  # detect.tflite float: [-1, 1]
            return x.astype(np.float32) * np.float32(1.0 / 127.5) - np.float32(1.0)
        return x

    def _ssd(self, outs: list[np.ndarray], names: list[str], n: int):
        by = {}
        for i, (o, name) in enumerate(zip(outs, names)):
            key = next((k for k in ("box", "class", "score", "num") if k in name), None)
            if key is None and "TFLite_Detection_PostProcess" in name:
                key = ("box", "class", "score", "num")[int(name.rpartition(":")[2] or 0)
                                                      if ":" in name else 0]
            by[key] = o
        boxes, scores = by["box"].reshape(n, -1, 4), by["score"].reshape(n, -1)
        classes, num = by["class"].reshape(n, -1), by["num"].reshape(n).astype(np.int64)
        offset = 1 if self.interface == "tflite_ssd" else 0
        out = []
        for i in range(n):
            k = num[i] if self.max_det is None else min(num[i], self.max_det)
            keep = np.flatnonzero(scores[i, :k] >= self.score_threshold)
            out.append((boxes[i, keep], scores[i, keep], classes[i, keep] + offset))
        return out

    def _yolo(self, out: np.ndarray, n: int):
        dets = []
        for i in range(n):
            pred = out[i]  # (84, A)
            cls_scores = pred[4:]
            cls = cls_scores.argmax(0)
            conf = cls_scores[cls, np.arange(pred.shape[1])]
            keep = np.flatnonzero(conf > self.score_threshold)
            if len(keep) > YOLO_PRE_NMS:
                keep = keep[np.argsort(-conf[keep], kind="stable")[:YOLO_PRE_NMS]]
            cx, cy, w, h = pred[:4, keep]
            xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
            k = post.batched_nms(xyxy, conf[keep], cls[keep], self.nms_iou, self.max_det)
            b = np.clip(xyxy[k] / self.res, 0.0, 1.0)  # plain resize: input px -> 0-1
            dets.append((b[:, [1, 0, 3, 2]], conf[keep][k], COCO_80_TO_91[cls[keep][k]]))
        return dets

    def __call__(self, samples: Sequence[CocoSample]) -> list[tuple[int, int]]:
        n = len(samples)
        outs = self.predict({self.spec.name: self._input(samples)})
        if self.interface == "yolo":
            dets = self._yolo(outs[0], n)
        else:  # TF's detection outputs, told apart by the names of the runtime's specs
            dets = self._ssd(outs, self.output_names, n)
        return self.writer.pack([s.index for s in samples], [d[0] for d in dets],
                                [d[1] for d in dets], [d[2] for d in dets])


class CocoWorkload(DetectionWorkload):
    name = "coco"
    Config = CocoConfig
    metric = MAP
    loadgen_model = "yolo"  # MLPerf's current COCO detection benchmark (64 perf samples)

    def __init__(self, cache_dir=None, dataset_dir: str | None = None, models: Any = None,
                 interface: Any = None, count: int | None = None,
                 reference_accuracy: float | None = None, **extra: Any):
        super().__init__(cache_dir)
        if extra:
            raise ValueError(f"coco workload: unknown config key(s) {sorted(extra)}; known: "
                             "dataset_dir, models, interface, count, reference_accuracy")
        self.models = parse_models(models)
        self._interface = interface
        self.annotation_path = _annotation_path(dataset_dir)
        root = self.annotation_path.parent.parent
        self.image_dir = root / "val2017" if (root / "val2017").is_dir() else root
        self._annotations = json.loads(self.annotation_path.read_text())
        n = len(self._annotations["images"])
        if count is not None and not 1 <= int(count) <= n:
            raise ValueError(f"coco workload: count {count}; the annotation file has {n} images")
        self.count = n if count is None else int(count)
        self._gt = None

    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        _annotation_path(cfg.get("dataset_dir"))
        models = parse_models(cfg.get("models"))
        interface = cfg.get("interface")
        values = interface.values() if isinstance(interface, Mapping) else [interface]
        bad = [v for v in values if v is not None and v not in INTERFACES]
        if bad:
            raise ValueError(f"coco workload: interface {bad[0]!r}; one of {INTERFACES}")
        for name, files in models.items():
            for precision, path in files.items():
                try:
                    cls._image_input(path, name, precision)
                except ImportError:  # a .tflite file on a head without LiteRT: the worker checks it
                    pass

    @classmethod
    def _image_input(cls, path: Path, model: str, precision: str) -> TensorSpec:
        """The model's image input, as the detection task declares it (else one line)."""
        key = f"models.{model}" + (f".{precision}" if precision != "fp32" else "")
        return match_inputs(cls.inputs, model_io(path)[0],
                            f"coco workload: {key}: {path.name}")["image"]

    @classmethod
    def reference_accuracy(cls, cfg: Mapping[str, Any]) -> float | None:
        value = cfg.get("reference_accuracy")
        return None if value is None else float(value)

    @classmethod
    def model_choices(cls, cfg: Mapping[str, Any]) -> dict[str, tuple | None]:
        models = cfg.get("models")
        return {"model": tuple(models) if isinstance(models, Mapping) else None,
                "precision": PRECISIONS, "score_threshold": None, "nms_iou": None,
                "max_detections": None}

    def variant(self, model: str | None = None, precision: str = "fp32",
                score_threshold: float | None = None, nms_iou: float | None = None,
                max_detections: int | None = None, **extra: Any) -> Variant:
        if extra:
            raise ValueError(f"coco workload: unknown model parameter(s) {sorted(extra)}")
        if model is None and len(self.models) == 1:
            model = next(iter(self.models))
        if model not in self.models:
            raise ValueError(f"coco workload: model {model!r} is not a key of workload.models "
                             f"({', '.join(self.models)})")
        if precision not in self.models[model]:
            raise ValueError(f"coco workload: models.{model} has no {precision} file")
        path = self.models[model][precision]
        inputs, outputs = model_io(path)
        image = self._image_input(path, model, precision)
        chosen = self._interface.get(model) if isinstance(self._interface, Mapping) \
            else self._interface
        if chosen is not None and chosen not in INTERFACES:
            raise ValueError(f"coco workload: interface {chosen!r}; one of {INTERFACES}")
        interface = chosen or infer_interface(path, inputs, outputs)
        ref = REFERENCE_KNOBS[interface]
        knobs = (ref[0] if score_threshold is None else float(score_threshold),
                 ref[1] if nms_iou is None else float(nms_iou),
                 ref[2] if max_detections is None else int(max_detections))
        if interface == "yolo" and (knobs[1] is None or knobs[2] is None):
            raise ValueError("coco workload: a yolo model needs nms_iou and max_detections")
        name = f"{model}_{precision}_s{knobs[0]:g}_n{knobs[1]}_m{knobs[2]}"
        return Variant(name, precision, resolution_of(image, interface),
                       {"model": model, "path": str(path), "interface": interface,
                        "knobs": knobs, "input_dtypes": {"image": np.dtype(image.dtype).name}})

    def model_file(self, variant: Variant, fmt: str = "onnx") -> Path:
        path = Path(variant.params["path"])
        have = "tflite" if path.suffix == ".tflite" else "onnx"
        if fmt != have:
            raise ValueError(f"coco workload: models.{variant.params['model']} is a {have} file "
                             f"({path.name}); this runtime loads {fmt}")
        return path

    @property
    def total_sample_count(self) -> int:
        return self.count

    def load_samples(self, indices: Sequence[int], variant: Variant) -> list[CocoSample]:
        out, r = [], variant.resolution
        for i in indices:
            info = self._annotations["images"][int(i)]
            path = self.image_dir / info["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"coco workload: image {path} (images[{i}]) is missing")
            img = load_rgb(path)
            out.append(CocoSample(int(i), resize_linear(img, r, r), img.shape[0], img.shape[1]))
        return out

    def responder(self, variant: Variant, predict: Predict, inputs: Sequence[TensorSpec],
                  outputs: Sequence[TensorSpec], batch_size: int) -> CocoResponder:
        p = variant.params
        image = match_inputs(self.inputs, inputs, f"coco workload: {variant.name}")["image"]
        r = CocoResponder(predict, image, p["interface"], p["knobs"], variant.resolution)
        r.output_names = [o.name for o in outputs]
        return r

    def annotations(self) -> dict:
        return self._annotations


WORKLOAD = CocoWorkload
