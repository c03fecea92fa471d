"""Bring-your-own ImageNet: the MLPerf MobileNet / ResNet50 ONNX files on ImageNet val.

The user points the config at an ImageNet validation folder in the MLPerf layout (the
JPEGs plus ``val_map.txt``, lines ``ILSVRC2012_val_00000001.JPEG 65``) and at one or more
ONNX files. Samples are preprocessed as the MLCommons reference harness does
(``vision/classification_and_detection/python/dataset.py``):

``mobilenet`` (``pre_process_mobilenet``)
    resize keeping the aspect ratio so the short side is ``int(size / 0.875)`` (bilinear,
    ``cv2.INTER_LINEAR``), center crop to the model's size, RGB float32 ``/255 - 0.5, *2``.
``resnet50`` (``pre_process_vgg``)
    the same geometry with area interpolation (``cv2.INTER_AREA``), RGB float32 minus the
    means ``[123.68, 116.78, 103.94]``.

The reference reads images with OpenCV; OpenCV is not a dependency here. JPEGs are decoded
with Pillow (the same libjpeg-turbo decode, EXIF orientation applied as ``cv2.imread``
does) and the two cv2 resamplers are re-implemented in numpy below. Pillow's own
resampling is close to but not bit-identical with cv2 (its ``BILINEAR`` antialiases when
shrinking, up to tens of grey levels apart from ``INTER_LINEAR``; its ``BOX`` is not
``INTER_AREA`` at fractional scales), so it is not used for resizing. The numpy resamplers
follow cv2's coordinate mapping and fixed-point rounding: against opencv-python-headless
5.0 on photos and synthetic images, INTER_AREA matched exactly and INTER_LINEAR to within one
grey level on under 0.3% of pixels (``tests/test_imagenet.py`` re-checks whenever cv2 is
importable). Known remaining differences: CMYK JPEGs (Pillow converts them naively) and
those rare one-level roundings.

Model facts come from the ONNX file itself: input layout (NCHW or NHWC) and resolution from
the input shape (224 when symbolic), the class count from the first float rank-2 output.
ImageNet models with 1001 outputs put "background" at index 0, so the dataset label is
``argmax - 1`` (``label_offset = -1``; the reference's ``offset=-1``); 1000-class models use
offset 0. The ``label_offset`` config key overrides this for every model. Models whose first
output is already a class index (the MLPerf ResNet50's ``ArgMax:0``) are handled too.

Preprocessed crops (uint8, before normalisation) are cached in memory per (profile,
resolution) within a process, and on disk under ``cache_dir`` so the fresh process of each
trial does not decode 50,000 JPEGs again (``disk_cache: false`` turns that off; delete the
folder if the images change in place).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from backends.cache import atomic_write_bytes
from backends.base import TensorSpec
from workloads.base import Variant, match_inputs, parse_model_files
from workloads.models.model_io import model_io
from workloads.models.onnx_facts import inspect_onnx, offset_for
from workloads.tasks.classification import ClassificationWorkload
# load_rgb is re-exported: the tests and users decode images as the workload does
from workloads.images import PROFILES, LruCache, load_rgb, resize_crop  # noqa: F401

VAL_MAP = "val_map.txt"
PRECISIONS = ("fp32", "int8")
MEMORY_CACHE_BYTES = 2 << 30  # per process; 224x224 uint8 crops: ~14,000 images
PREPROCESS_VERSION = 1  # bump when the resize/crop code changes (keys the disk cache)

_CROPS = LruCache(MEMORY_CACHE_BYTES)  # in-process crops


# --- the workload --------------------------------------------------------------------------
@dataclass
class ImagenetConfig:
    """Bring-your-own ImageNet (conf/workload/imagenet.yaml documents each key)."""

    name: str = "imagenet"
    dataset_dir: str = "???"
    models: Any = "???"  # variant -> ONNX file, or -> {fp32: file, int8: file}
    profile: Any = None  # mobilenet | resnet50 | {variant: profile} | None: from the name
    count: Optional[int] = None
    reference_accuracy: Optional[float] = None
    label_offset: Optional[int] = None
    disk_cache: bool = True


class ImagenetWorkload(ClassificationWorkload):
    """ImageNet val (MLPerf layout) x user-supplied ONNX classifiers.

    Config keys (``conf/workload/imagenet.yaml``):

    ``dataset_dir``
        folder holding the JPEGs and ``val_map.txt``.
    ``models``
        variant name -> ONNX path (fp32), or variant name -> ``{fp32: path, int8: path}``
        when the user also has a quantized file.
    ``profile``
        ``mobilenet`` or ``resnet50`` for every model, or a mapping variant name -> profile;
        null infers it from the variant name or file name ("mobilenet" / "resnet").
    ``count``
        use only the first N lines of ``val_map.txt`` (the reference's ``--count``).
    ``reference_accuracy``
        the fp32 top-1 the run is compared with (MLPerf: 0.76456 ResNet50, 0.71676 MobileNet).
    ``label_offset``
        added to the argmax for every model; null: -1 for 1001-class outputs, else 0.
    ``disk_cache``
        keep preprocessed crops under ``cache_dir`` (default true).

    Model parameters (``variant``): ``model`` (a key of ``models``; optional when there is
    one) and ``precision`` (``fp32``, or ``int8`` where ``models`` gives an int8 file).
    ``label_offset``/``num_classes`` follow the last variant made: measure() makes one per
    trial process. Float logits are offset by their own width at postprocess time anyway.
    """

    name = "imagenet"
    Config = ImagenetConfig
    num_classes = 1000
    label_offset = 0
    loadgen_model = "resnet50"  # MLPerf's ImageNet classification rules (1024 perf samples)

    def __init__(self, cache_dir: str | os.PathLike | None = None,
                 dataset_dir: str | os.PathLike | None = None,
                 models: Mapping[str, Any] | None = None,
                 profile: str | Mapping[str, str] | None = None,
                 count: int | None = None,
                 reference_accuracy: float | None = None,
                 label_offset: int | None = None,
                 disk_cache: bool = True,
                 **extra: Any):
        super().__init__(cache_dir)
        if extra:
            raise ValueError(f"imagenet workload: unknown config key(s) {sorted(extra)}; known: "
                             "dataset_dir, models, profile, count, reference_accuracy, "
                             "label_offset, disk_cache")
        self._reference_accuracy = None if reference_accuracy is None else float(reference_accuracy)
        self._label_offset_override = None if label_offset is None else int(label_offset)
        self.disk_cache = bool(disk_cache)
        self.models = self._parse_models(models)
        self.profiles = {m: self._resolve_profile(profile, m) for m in self.models}
        self.dataset_dir = self._check_dataset_dir(dataset_dir)
        self.image_names, self._labels = self._read_val_map(count)
        # Keys the crop caches: two dataset folders never share cached crops.
        self._dataset_key = hashlib.sha256(str(self.dataset_dir).encode()).hexdigest()[:12]

    # --- config checks --------------------------------------------------------------------
    @staticmethod
    def _parse_models(models: Mapping[str, Any] | None) -> dict[str, dict[str, Path]]:
        return parse_model_files("imagenet", models, PRECISIONS,
                                 "mobilenet_v1_1.0_224: /data/mobilenet_v1_1.0_224.onnx")

    def _resolve_profile(self, profile: str | Mapping[str, str] | None, model: str) -> str:
        if isinstance(profile, Mapping):
            if model not in profile:
                raise ValueError(f"imagenet workload: `profile` has no entry for model {model!r}")
            chosen, where = profile[model], f"profile.{model}"
        elif profile is None:
            hint = " ".join([model] + [p.name for p in self.models[model].values()]).lower()
            chosen = ("mobilenet" if "mobilenet" in hint
                      else "resnet50" if "resnet" in hint else None)
            if chosen is None:
                raise ValueError(f"imagenet workload: cannot tell the preprocessing of model "
                                 f"{model!r} from its name; set `profile` to one of "
                                 f"{sorted(PROFILES)}")
            where = "profile"
        else:
            chosen, where = profile, "profile"
        if chosen not in PROFILES:
            raise ValueError(f"imagenet workload: {where}={chosen!r} is not a known profile; "
                             f"one of {sorted(PROFILES)}")
        return str(chosen)

    @staticmethod
    def _check_dataset_dir(dataset_dir: str | os.PathLike | None) -> Path:
        if dataset_dir is None or str(dataset_dir) in ("", "???"):
            raise ValueError("imagenet workload: `dataset_dir` is required (the ImageNet val "
                             f"folder holding the JPEGs and {VAL_MAP})")
        path = Path(str(dataset_dir)).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"imagenet workload: dataset_dir {path} is not a folder")
        if not (path / VAL_MAP).is_file():
            raise FileNotFoundError(f"imagenet workload: dataset_dir {path} has no {VAL_MAP} "
                                    "(lines like 'ILSVRC2012_val_00000001.JPEG 65')")
        return path.resolve()

    def _read_val_map(self, count: int | None) -> tuple[list[str], np.ndarray]:
        if count is not None and int(count) < 1:
            raise ValueError(f"imagenet workload: count={count}; a positive number of images")
        val_map = self.dataset_dir / VAL_MAP
        names: list[str] = []
        labels: list[int] = []
        with open(val_map) as fh:
            for lineno, line in enumerate(fh, 1):
                if count is not None and len(names) >= int(count):
                    break
                if not line.strip():
                    continue
                parts = re.split(r"\s+", line.strip())
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise ValueError(f"imagenet workload: {val_map}:{lineno}: expected "
                                     f"'<image> <label>', got {line.strip()!r}")
                names.append(parts[0])
                labels.append(int(parts[1]))
        if not names:
            raise ValueError(f"imagenet workload: {val_map} lists no images")
        # The reference skips missing images silently; a smaller set would skew accuracy.
        present = set(os.listdir(self.dataset_dir))
        missing = [n for n in names
                   if (n not in present if "/" not in n else not (self.dataset_dir / n).is_file())]
        if missing:
            raise FileNotFoundError(
                f"imagenet workload: {len(missing)} image(s) listed in {val_map} are not in "
                f"{self.dataset_dir}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        return names, np.asarray(labels, dtype=np.int32)

    # --- family -------------------------------------------------------------------------
    def variant(self, model: str | None = None, precision: str = "fp32", **extra: Any) -> Variant:
        if extra:
            raise ValueError(f"imagenet workload: unknown model parameter(s) {sorted(extra)}; "
                             "known: model, precision")
        if model is None:
            if len(self.models) != 1:
                raise ValueError("imagenet workload: say which `model`; one of "
                                 f"{sorted(self.models)}")
            model = next(iter(self.models))
        if model not in self.models:
            raise ValueError(f"imagenet workload: model {model!r} is not in `models`; "
                             f"one of {sorted(self.models)}")
        if precision not in self.models[model]:
            raise ValueError(f"imagenet workload: no {precision!r} file for model {model!r} "
                             f"(models.{model} gives {sorted(self.models[model])})")
        path = self.models[model][precision]
        info = inspect_onnx(path)
        offset = (self._label_offset_override if self._label_offset_override is not None
                  else offset_for(info.num_classes))
        # measure() makes one variant per process: index outputs (ArgMax) use its offset.
        self.label_offset = offset
        self.num_classes = info.num_classes or 1000
        return Variant(f"{model}_{precision}", precision, info.height,
                       {"model": model, "path": str(path), "profile": self.profiles[model],
                        "layout": info.layout, "height": info.height, "width": info.width,
                        "num_classes": info.num_classes, "label_offset": offset})

    def model_file(self, variant: Variant, fmt: str = "onnx") -> Path:
        if fmt != "onnx":
            raise ValueError(f"imagenet workload has ONNX files only, not {fmt!r}")
        return Path(variant.params["path"])

    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        models = cls._parse_models(cfg.get("models"))
        cls._check_dataset_dir(cfg.get("dataset_dir"))
        probe = cls.__new__(cls)  # profile resolution reads only the model names
        probe.models = models
        for model in models:
            probe._resolve_profile(cfg.get("profile"), model)
        for model, files in models.items():  # each file takes the image the task declares
            for precision, path in files.items():
                key = f"models.{model}" + (f".{precision}" if precision != "fp32" else "")
                match_inputs(cls.inputs, model_io(path)[0],
                             f"imagenet workload: {key}: {path.name}")

    @classmethod
    def reference_accuracy(cls, cfg: Mapping[str, Any]) -> float | None:
        value = cfg.get("reference_accuracy")
        return None if value is None else float(value)

    @classmethod
    def model_choices(cls, cfg: Mapping[str, Any]) -> dict[str, tuple | None]:
        models = cfg.get("models")
        names = tuple(models) if isinstance(models, Mapping) else None
        return {"model": names, "precision": ("fp32", "int8")}

    def transpose_to_nhwc(self, variant: Variant, spec: TensorSpec) -> bool:
        return False  # load_batch lays samples out as the model file says

    def postprocess(self, logits: np.ndarray) -> np.ndarray:
        out = np.asarray(logits)
        if np.issubdtype(out.dtype, np.integer):  # already class indices (ArgMax output)
            return (out.reshape(len(out)) + self.label_offset).astype(np.int32)
        offset = (self._label_offset_override if self._label_offset_override is not None
                  else offset_for(out.shape[-1]))
        return (np.argmax(out.reshape(len(out), -1), axis=1) + offset).astype(np.int32)

    # --- dataset ------------------------------------------------------------------------
    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def load_batch(self, indices: list[int], variant: Variant) -> np.ndarray:
        """(N, 3, H, W) float32 (or (N, H, W, 3) for NHWC models), reference-preprocessed."""
        p = variant.params
        prof = PROFILES[p["profile"]]
        crops = [self._crop(int(i), prof.interpolation, p["height"], p["width"]) for i in indices]
        x = np.stack(crops) if crops else np.zeros((0, p["height"], p["width"], 3), np.uint8)
        x = prof.normalize(x.astype(np.float32))
        if p["layout"] == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x

    def _crop(self, index: int, interpolation: str, height: int, width: int) -> np.ndarray:
        key = (self._dataset_key, interpolation, height, width, index)
        crop = _CROPS.get(key)
        if crop is not None:
            return crop
        name = self.image_names[index]
        disk = (self.cache_dir / "imagenet" / self._dataset_key
                / f"{interpolation}-{height}x{width}-v{PREPROCESS_VERSION}" / f"{name}.npy")
        if self.disk_cache and disk.is_file():
            try:
                crop = np.load(disk)
            except (OSError, ValueError):
                crop = None  # a torn or foreign file: rebuild it
        if crop is None or crop.shape != (height, width, 3):
            crop = resize_crop(load_rgb(self.dataset_dir / name), height, width, interpolation)
            if self.disk_cache:  # atomic: several workers and threads may share one cache
                buffer = io.BytesIO()
                np.save(buffer, crop)
                atomic_write_bytes(disk, buffer.getvalue())
        _CROPS.put(key, crop)
        return crop

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "dataset_dir": str(self.dataset_dir),
                "models": {m: {k: str(v) for k, v in f.items()} for m, f in self.models.items()},
                "profiles": dict(self.profiles)}


WORKLOAD = ImagenetWorkload
