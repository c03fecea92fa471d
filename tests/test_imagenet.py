"""The bring-your-own ImageNet workload on a small fixture in the exact MLPerf layout.

The fixture (JPEGs named ``ILSVRC2012_val_0000000k.JPEG`` plus ``val_map.txt``) and tiny
1001-class MobileNets (width 0.25) are made in a temporary folder; nothing is downloaded.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tuner.trial import Fidelity, TrialConfig
from workloads import create
from workloads.imagenet import ImagenetWorkload, load_rgb
from workloads.models.mobilenet import build_onnx, layer_plan, weight_shapes

# (height, width): both orientations, odd ratios, two smaller than the 256 resize (so the
# resize enlarges), and an exact 2x shrink (cv2's whole-number INTER_AREA path).
SIZES = [(375, 500), (500, 375), (333, 500), (500, 333), (427, 640), (640, 427),
         (256, 256), (300, 451), (451, 300), (180, 240), (240, 180), (512, 1024)]
GRAY = 6  # index of the one greyscale JPEG (cv2.imread makes it 3-channel; so must we)
MEANS = np.array([123.68, 116.78, 103.94])
MODEL = "mobilenet_v1_0.25_224"


def image_name(k: int) -> str:
    return f"ILSVRC2012_val_{k:08d}.JPEG"


def write_images(folder: Path, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, (h, w) in enumerate(SIZES, 1):
        # smooth colour blobs plus grain: resampling differences show, as in photos
        tint = 128 + rng.uniform(-90, 90, 3)  # a mean colour of its own (see color_weights)
        small = np.clip(tint + rng.uniform(-40, 40, (h // 16 + 2, w // 16 + 2, 3)), 0, 255)
        img = np.asarray(Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.BICUBIC))
        img = np.clip(img + rng.integers(-25, 26, img.shape), 0, 255).astype(np.uint8)
        pil = Image.fromarray(img)
        if k - 1 == GRAY:
            pil = pil.convert("L")
        pil.save(folder / image_name(k), format="JPEG", quality=90)


def write_val_map(folder: Path, labels: list[int]) -> None:
    (folder / "val_map.txt").write_text(
        "".join(f"{image_name(k)} {label}\n" for k, label in enumerate(labels, 1)))


def color_weights(width: float, num_classes: int, seed: int) -> dict[str, np.ndarray]:
    """A MobileNet whose logits follow each image's mean colour, so predictions differ.

    (Random weights collapse: every image gets the same class.) The stem copies one colour
    into each channel, shifted by +1 so ReLU6 passes it; depthwise and pointwise convs are
    identities; the classifier scores the pooled colours with random directions, minus the
    shift: logits = A @ mean_colour with A random (classes x 3).
    """
    rng = np.random.default_rng(seed)
    plan = layer_plan(width)
    w = {key: np.zeros(shape, np.float32)
         for key, shape in weight_shapes(width, num_classes).items()}
    colour = np.arange(plan[0].out_channels) % 3  # the input colour each channel carries
    w["stem.w"][np.arange(len(colour)), colour, 1, 1] = 1.0
    w["stem.b"][:] = 1.0
    for conv in plan[1:]:
        if conv.depthwise:
            w[f"{conv.name}.w"][:, 0, 1, 1] = 1.0
        else:
            src = np.arange(conv.out_channels) % conv.in_channels
            w[f"{conv.name}.w"][np.arange(conv.out_channels), src, 0, 0] = 1.0
            colour = colour[src]
    a = rng.normal(size=(num_classes, 3)).astype(np.float32)
    counts = np.bincount(colour, minlength=3)
    w["fc.w"][:] = a[:, colour] / counts[colour]  # each colour's channels share its weight
    w["fc.b"][:] = -a.sum(axis=1)  # undo the +1 shift
    return w


def save(model, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def constant_model(path: Path, num_classes: int, k: int, resolution: int = 32,
                   argmax_first: bool = False, nhwc: bool = False) -> Path:
    """A MobileNet whose logits are the one-hot bias: argmax is k for every image."""
    import onnx
    from onnx import TensorProto, helper

    weights = {key: np.zeros(shape, np.float32)
               for key, shape in weight_shapes(0.25, num_classes).items()}
    weights["fc.b"][k] = 10.0
    model = build_onnx(weights, 0.25, resolution, num_classes)
    graph = model.graph
    if argmax_first:  # as the MLPerf ResNet50: ArgMax:0 (int64) before the softmax
        graph.node.append(helper.make_node("ArgMax", ["logits"], ["argmax"], axis=1, keepdims=0))
        logits = graph.output.pop()
        graph.output.extend([helper.make_tensor_value_info("argmax", TensorProto.INT64, ["N"]),
                             logits])
    if nhwc:  # a TF-exported layout: (N, H, W, 3) transposed inside the graph
        graph.node.insert(0, helper.make_node("Transpose", ["input_nhwc"], ["input"],
                                              perm=[0, 3, 1, 2]))
        graph.input.pop()
        graph.input.append(helper.make_tensor_value_info(
            "input_nhwc", TensorProto.FLOAT, ["N", resolution, resolution, 3]))
    onnx.checker.check_model(model)
    return save(model, path)


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # shared CI cores
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def fixture(tmp_path_factory, cache_dir) -> dict:
    """The dataset, a 1001-class MobileNet, and val_map labels with a known top-1.

    Labels are chosen from the model's own predictions: even images whose top-1 logit
    clears the runner-up get label argmax - 1 (counted good), the rest a class that is
    neither of the top two (wrong however a near-tie rounds), so the expected accuracy is
    exact and a wrong offset or preprocessing would show.
    """
    root = tmp_path_factory.mktemp("imagenet")
    data = root / "val"
    data.mkdir()
    write_images(data)
    write_val_map(data, [0] * len(SIZES))  # provisional: the workload needs a val_map to load
    model = save(build_onnx(color_weights(0.25, 1001, seed=1), 0.25, 224, 1001),
                 root / f"{MODEL}.onnx")
    workload = ImagenetWorkload(cache_dir=cache_dir, dataset_dir=data, models={MODEL: model},
                                disk_cache=False)
    logits = run_onnx(model, workload.load_batch(list(range(len(SIZES))), workload.variant()))
    order = np.argsort(logits, axis=1)
    top1, top2 = order[:, -1], order[:, -2]
    margin = logits[np.arange(len(SIZES)), top1] - logits[np.arange(len(SIZES)), top2]
    labels, good = [], 0
    for i in range(len(SIZES)):
        if i % 2 == 0 and top1[i] >= 1 and margin[i] > 1e-3 * np.abs(logits[i]).max():
            labels.append(int(top1[i]) - 1)
            good += 1
        else:
            taken = {int(top1[i]) - 1, int(top2[i]) - 1}
            labels.append(next(c for c in range(1000) if c not in taken))
    write_val_map(data, labels)
    return {"root": root, "data": data, "model": model, "labels": labels, "good": good,
            "distinct_top1": len(set(top1.tolist()))}


# --- an independent numpy re-implementation of the reference math -----------------------
def ref_geometry(h: int, w: int, out: int = 224) -> tuple[int, int, int, int]:
    """resize_with_aspectratio's (h, w) and center_crop's (top, left), reference formulas."""
    new = int(100.0 * out / 87.5)
    rh, rw = (int(new * h / w), new) if h > w else (new, int(new * w / h))
    return rh, rw, int((rh - out) / 2), int((rw - out) / 2)


def ref_bilinear(img: np.ndarray, rh: int, rw: int) -> np.ndarray:
    """cv2.INTER_LINEAR semantics in float64: pixel centres, border replicated, rounded."""
    def axis(n_in, n_out):
        f = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        f = np.clip(f, 0, n_in - 1)
        i0 = np.floor(f).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, f - i0
    y0, y1, fy = axis(img.shape[0], rh)
    x0, x1, fx = axis(img.shape[1], rw)
    a = img.astype(np.float64)
    top = a[y0][:, x0] * (1 - fx)[None, :, None] + a[y0][:, x1] * fx[None, :, None]
    bot = a[y1][:, x0] * (1 - fx)[None, :, None] + a[y1][:, x1] * fx[None, :, None]
    return np.rint(top * (1 - fy)[:, None, None] + bot * fy[:, None, None])


def ref_area(img: np.ndarray, rh: int, rw: int) -> np.ndarray:
    """cv2.INTER_AREA when shrinking: mean over each output pixel's footprint (dense)."""
    def matrix(n_in, n_out):
        s = n_in / n_out
        d = np.arange(n_out)[:, None]
        j = np.arange(n_in)[None, :]
        overlap = np.minimum(j + 1, (d + 1) * s) - np.maximum(j, d * s)
        return np.clip(overlap, 0, None) / s
    my, mx = matrix(img.shape[0], rh), matrix(img.shape[1], rw)
    rows = np.tensordot(my, img.astype(np.float64), axes=(1, 0))  # (rh, w, 3)
    return np.rint(np.tensordot(rows, mx, axes=(1, 1)).transpose(0, 2, 1))


def reference_sample(path: Path, profile: str) -> np.ndarray:
    img = load_rgb(path)
    rh, rw, top, left = ref_geometry(*img.shape[:2])
    resized = ref_bilinear(img, rh, rw) if profile == "mobilenet" else ref_area(img, rh, rw)
    crop = resized[top:top + 224, left:left + 224]
    x = crop / 255.0 * 2 - 1 if profile == "mobilenet" else crop - MEANS
    return x.transpose(2, 0, 1)


@pytest.mark.parametrize("profile", ["mobilenet", "resnet50"])
def test_preprocessing_matches_reference_math(fixture, cache_dir, profile):
    wl = ImagenetWorkload(cache_dir=cache_dir, dataset_dir=fixture["data"],
                          models={"m": fixture["model"]}, profile=profile, disk_cache=False)
    x = wl.load_batch(list(range(len(SIZES))), wl.variant(model="m"))
    assert x.shape == (len(SIZES), 3, 224, 224) and x.dtype == np.float32
    lo, hi = (-1.0, 1.0) if profile == "mobilenet" else (-MEANS.max(), 255 - MEANS.min())
    assert x.min() >= lo - 1e-4 and x.max() <= hi + 1e-4
    # The grey image is replicated to 3 equal channels (after the per-channel means).
    gray = x[GRAY] + (0 if profile == "mobilenet" else MEANS[:, None, None])
    assert np.allclose(gray[0], gray[1], atol=1e-4) and np.allclose(gray[1], gray[2], atol=1e-4)

    i = SIZES.index((300, 451))  # one non-square landscape image, shrunk at a fractional scale
    ref = reference_sample(fixture["data"] / image_name(i + 1), profile)
    grey_level = 2 / 255 if profile == "mobilenet" else 1.0
    diff = np.abs(x[i] - ref)
    # Exact rounding here vs cv2's: at most one grey level apart, on few pixels (its 11-bit
    # fixed-point bilinear truncates: ~13% of pixels one level lower), so the mean moves by
    # a fraction of a level. A wrong size, crop offset, interpolation or normalisation would
    # be many levels off on most pixels.
    assert diff.max() <= grey_level * 1.0001
    assert np.mean(diff > 1e-3) < (0.2 if profile == "mobilenet" else 0.02)
    assert abs(np.mean(x[i] - ref)) < 0.2 * grey_level


def test_matches_opencv_reference_when_installed(fixture, cache_dir):
    """The MLCommons pre_process_* functions verbatim in spirit, when cv2 is around."""
    cv2 = pytest.importorskip("cv2")

    def resize_crop(img, inter):
        rh, rw, top, left = ref_geometry(*img.shape[:2])
        return cv2.resize(img, (rw, rh), interpolation=inter)[top:top + 224, left:left + 224]

    for profile, inter in (("mobilenet", cv2.INTER_LINEAR), ("resnet50", cv2.INTER_AREA)):
        wl = ImagenetWorkload(cache_dir=cache_dir, dataset_dir=fixture["data"],
                              models={"m": fixture["model"]}, profile=profile, disk_cache=False)
        x = wl.load_batch(list(range(len(SIZES))), wl.variant(model="m"))
        for i in range(len(SIZES)):
            rgb = cv2.cvtColor(cv2.imread(str(fixture["data"] / image_name(i + 1))),
                               cv2.COLOR_BGR2RGB)
            crop = resize_crop(rgb, inter).astype(np.float32)
            ref = ((crop / 255.0 - 0.5) * 2 if profile == "mobilenet"
                   else crop - MEANS.astype(np.float32))
            diff = np.abs(x[i] - ref.transpose(2, 0, 1))
            assert diff.max() <= (2 / 255 if profile == "mobilenet" else 1.0) * 1.0001
            assert np.mean(diff > 1e-3) < 0.01


def test_label_offset_from_output_width(fixture, cache_dir, tmp_path):
    k = 7
    m1001 = constant_model(tmp_path / "mobilenet_1001.onnx", 1001, k)
    m1000 = constant_model(tmp_path / "mobilenet_1000.onnx", 1000, k)
    argmax = constant_model(tmp_path / "resnet_argmax.onnx", 1001, k, argmax_first=True)
    nhwc = constant_model(tmp_path / "mobilenet_nhwc.onnx", 1001, k, nhwc=True)
    wl = ImagenetWorkload(cache_dir=cache_dir, dataset_dir=fixture["data"], count=4,
                          profile="mobilenet", disk_cache=False,
                          models={"a": m1001, "b": m1000, "c": argmax, "d": nhwc})
    assert wl.total_sample_count == 4
    expected = {"a": k - 1, "b": k, "c": k - 1, "d": k - 1}
    for name, label in expected.items():
        v = wl.variant(model=name)
        assert v.resolution == 32  # read from the ONNX input shape
        x = wl.load_batch([0, 1, 2, 3], v)
        assert x.shape == ((4, 32, 32, 3) if name == "d" else (4, 3, 32, 32))
        pred = wl.postprocess(run_onnx(wl.model_file(v), x))
        assert pred.dtype == np.int32 and pred.tolist() == [label] * 4, name
    assert wl.postprocess(np.eye(1001, dtype=np.float32)[[k]]).tolist() == [k - 1]
    assert wl.postprocess(np.eye(1000, dtype=np.float32)[[k]]).tolist() == [k]

    forced = ImagenetWorkload(cache_dir=cache_dir, dataset_dir=fixture["data"], label_offset=0,
                              models={"a": m1001}, disk_cache=False)
    v = forced.variant()
    assert v.params["label_offset"] == 0
    assert forced.postprocess(run_onnx(m1001, forced.load_batch([0], v))).tolist() == [k]


def test_config_errors_name_the_key_or_file(fixture, cache_dir, tmp_path):
    data, model = fixture["data"], fixture["model"]
    good = {"name": "imagenet", "dataset_dir": str(data), "models": {MODEL: str(model)}}

    def fails(exc, match, **change):
        cfg = {**good, **change}
        with pytest.raises(exc, match=match):
            create({k: v for k, v in cfg.items() if v is not None}, cache_dir=str(cache_dir))

    fails(ValueError, "`dataset_dir` is required", dataset_dir=None)
    fails(ValueError, "`dataset_dir` is required", dataset_dir="???")  # Hydra's unset value
    fails(FileNotFoundError, "dataset_dir .*nowhere.* is not a folder",
          dataset_dir=str(tmp_path / "nowhere"))
    fails(FileNotFoundError, "has no val_map.txt", dataset_dir=str(tmp_path))
    fails(ValueError, "`models` must map", models=None)
    fails(FileNotFoundError, r"models\.x: file .*missing\.onnx", models={"x": "/no/missing.onnx"})
    fails(FileNotFoundError, r"models\.x\.int8: file .*q\.onnx",
          models={"x": {"fp32": str(model), "int8": "/no/q.onnx"}})
    fails(ValueError, r"models\.x has precision\(s\) \['fp16'\]",
          models={"x": {"fp16": str(model)}})
    fails(ValueError, "profile='vgg' is not a known profile", profile="vgg")
    fails(ValueError, r"profile\.mobilenet_v1_0\.25_224='inception'",
          profile={MODEL: "inception"})
    plain = tmp_path / "net.onnx"  # neither the name nor the file says mobilenet/resnet
    plain.write_bytes(model.read_bytes())
    fails(ValueError, "cannot tell the preprocessing of model 'x'.*set `profile`",
          models={"x": str(plain)})
    fails(ValueError, r"unknown config key\(s\) \['dataset'\]", dataset="x")
    fails(ValueError, "count=0", count=0)

    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / image_name(1)).write_bytes((data / image_name(1)).read_bytes())
    (listed / "val_map.txt").write_text(f"{image_name(1)} 3\n{image_name(2)} 5\n")
    fails(FileNotFoundError, f"1 image.* not in .*listed: {image_name(2)}", dataset_dir=str(listed))
    (listed / "val_map.txt").write_text(f"{image_name(1)}\n")
    fails(ValueError, r"val_map\.txt:1: expected '<image> <label>'", dataset_dir=str(listed))

    wl = create(good, cache_dir=str(cache_dir))
    with pytest.raises(ValueError, match="model 'resnet' is not in `models`"):
        wl.variant(model="resnet")
    with pytest.raises(ValueError, match=f"no 'int8' file for model '{MODEL}'"):
        wl.variant(model=MODEL, precision="int8")
    with pytest.raises(ValueError, match=r"unknown model parameter\(s\) \['width'\]"):
        wl.variant(width=0.5)
    with pytest.raises(ValueError, match="ONNX files only"):
        wl.model_file(wl.variant(), "tflite")


def test_family_and_caches(fixture, cache_dir, tmp_path):
    model = fixture["model"]
    data = tmp_path / "val"  # a folder of its own: crops of the shared one are in memory
    shutil.copytree(fixture["data"], data)
    wl = create({"name": "imagenet", "dataset_dir": str(data),
                 "models": {MODEL: {"fp32": str(model), "int8": str(model)}},
                 "reference_accuracy": 0.71676}, cache_dir=str(tmp_path / "cache"))
    assert type(wl).reference_accuracy({"reference_accuracy": 0.71676}) == pytest.approx(0.71676)
    assert wl.labels.tolist() == fixture["labels"]
    v = wl.variant(model=MODEL, precision="int8")  # a user-given int8 file is a variant
    assert v.name == f"{MODEL}_int8" and v.precision == "int8"
    assert wl.model_file(v, "onnx") == model.resolve()
    first = wl.load_batch([3, 1], v)
    on_disk = sorted((tmp_path / "cache" / "imagenet").rglob("*.npy"))
    assert [p.name for p in on_disk] == [image_name(2) + ".npy", image_name(4) + ".npy"]
    # A fresh workload (as in the next trial's process) reads the crops back identically.
    again = create({"name": "imagenet", "dataset_dir": str(data),
                    "models": {MODEL: str(model)}}, cache_dir=str(tmp_path / "cache"))
    assert np.array_equal(again.load_batch([3, 1], again.variant()), first)


def test_trial_through_loadgen(fixture, cache_dir, measure_fresh):
    cfg = TrialConfig(
        study="imagenet-test", trial=0, platform="cpu",
        workload={"name": "imagenet", "dataset_dir": str(fixture["data"]),
                  "models": {MODEL: str(fixture["model"])}},
        model={"model": MODEL, "precision": "fp32"}, backend="onnxruntime",
        knobs={"intra_op_threads": 1, "inter_op_threads": 1}, scenario="SingleStream",
        fidelity=Fidelity(min_duration_ms=300, min_query_count=16), cache_dir=str(cache_dir))
    result = measure_fresh(cfg)
    assert result.ok, result.cause
    assert result.valid, result.cause
    assert result.model_name == f"{MODEL}_fp32"
    assert result.accuracy_total == len(SIZES)  # every fixture image scored once
    # Predictions differ per image, so this also checks each sample meets its own label.
    assert fixture["distinct_top1"] >= 4
    assert result.accuracy_good == fixture["good"] >= 1
    assert result.accuracy == pytest.approx(fixture["good"] / len(SIZES))
    assert result.latency_ms and result.latency_ms > 0
