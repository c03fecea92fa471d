"""Detection building blocks: digit canvases and their COCO boxes, the box codec, NMS, the
MLPerf response records, and mAP equal to pycocotools and to MLPerf's accuracy-coco.py.

None of these need the trained weights: a fake ``predict`` that answers the ground truth
drives the real responder (``tests/test_detection_models.py`` runs the shipped models)."""
from __future__ import annotations

import ctypes
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from workloads.digit_canvases import data, model as det
from workloads.tasks import coco_eval, detection_post as post
from workloads.digit_canvases.workload import DigitCanvasesWorkload, Sample

ACCURACY_COCO = ROOT.parent / "shared" / "mlperf" / "accuracy-coco.py"


def accuracy_coco_map(log: Path, coco_dir: Path) -> list[str]:
    """The ``mAP=`` lines MLPerf's accuracy-coco.py prints for an accuracy log against the
    COCO annotations under ``coco_dir`` (skips when ../shared/mlperf is not there)."""
    if not ACCURACY_COCO.exists():
        pytest.skip(f"runs MLPerf's scorer accuracy-coco.py from ../shared/mlperf: not at {ACCURACY_COCO}")
    out = subprocess.run([sys.executable, str(ACCURACY_COCO), "--mlperf-accuracy-file", str(log),
                          "--coco-dir", str(coco_dir),
                          "--output-file", str(coco_dir / "results.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return re.findall(r"mAP=[0-9.]+%", out.stdout)


def _bytes(response) -> bytes:
    addr, nbytes = response
    return ctypes.string_at(addr, nbytes) if nbytes else b""


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    return DigitCanvasesWorkload(cache_dir=tmp_path_factory.mktemp("cache"), count=60)


def test_canvases_are_deterministic_and_boxes_hold_the_ink():
    a, b = data.make_canvases("val", 30), data.make_canvases("val", 30)
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images))
    other = data.make_canvases("train", 30)
    assert not all(np.array_equal(x, y) for x, y in zip(a.images, other.images))
    for img, boxes, labels in zip(a.images, a.boxes, a.labels):
        H, W = img.shape
        assert H in data.CANVAS_SIZES and W in data.CANVAS_SIZES
        assert 1 <= len(boxes) == len(labels) <= data.MAX_DIGITS
        for x, y, w, h in boxes:
            assert 0 <= x and x + w <= W and 0 <= y and y + h <= H and w >= 1 and h >= 1
            inside = img[int(y):int(y + h), int(x):int(x + w)]
            assert inside.max() > 100  # the ink is in the box (background is below ~90)
        xyxy = np.c_[boxes[:, :2], boxes[:, :2] + boxes[:, 2:]]
        for i in range(len(xyxy)):
            for j in range(i + 1, len(xyxy)):  # digits never overlap
                assert (xyxy[i, 2] <= xyxy[j, 0] or xyxy[j, 2] <= xyxy[i, 0]
                        or xyxy[i, 3] <= xyxy[j, 1] or xyxy[j, 3] <= xyxy[i, 1])


def test_coco_annotations_ids_and_order():
    c = data.make_canvases("val", 12)
    ann = data.coco_annotations(c)
    assert [im["id"] for im in ann["images"]] == [data.IMAGE_ID_BASE + i for i in range(12)]
    assert [cat["id"] for cat in ann["categories"]] == list(range(1, 11))
    assert len(ann["annotations"]) == sum(len(b) for b in c.boxes)
    first = ann["annotations"][0]
    assert first["category_id"] == c.labels[0][0] + 1 and first["bbox"] == list(c.boxes[0][0])
    assert (data.VAL_COUNT, data.preprocess(c.images[:2], 64).shape) == (400, (2, 1, 64, 64))


def test_box_codec_round_trip_and_anchor_order():
    for res in (64, 96, 128):
        a = det.anchors(res)
        grids = [det.grid(res, s) ** 2 * det.PER_CELL for s in det.levels()]
        assert len(a) == sum(grids)
        boxes = np.tile(np.array([[0.2, 0.3, 0.45, 0.42]], np.float32), (len(a), 1))
        assert np.allclose(det.decode(det.encode(boxes, a), a), boxes, atol=1e-6)
    a = det.anchors(64)  # (level, y, x, anchor): the second cell is one step right
    assert a[0, 0] == a[det.PER_CELL, 0] and a[det.PER_CELL, 1] > a[0, 1]


def test_nms_keeps_the_best_and_respects_classes():
    boxes = np.array([[0, 0, 1, 1], [0, 0.05, 1, 1.05], [2, 2, 3, 3], [0, 0, 1, 1]], np.float32)
    scores = np.array([0.9, 0.95, 0.5, 0.8], np.float32)
    assert post.nms(boxes, scores, 0.5, 10).tolist() == [1, 2]
    assert post.nms(boxes, scores, 0.5, 1).tolist() == [1]
    assert post.nms(boxes, scores, 0.99, 10).tolist() == [1, 0, 2]  # 3 duplicates 0
    classes = np.array([0, 0, 0, 1])
    assert post.batched_nms(boxes, scores, classes, 0.5, 10).tolist() == [1, 3, 2]
    assert post.batched_nms(boxes[:0], scores[:0], classes[:0], 0.5, 10).tolist() == []
    s = np.zeros((5, 3), np.float32)
    s[1, 2], s[4, 0], s[3, 1] = 0.9, 0.6, 0.7
    anchor, cls, sc = post.select(s, 0.5, top_k=2)
    assert sorted(zip(anchor.tolist(), cls.tolist())) == [(1, 2), (3, 1)]


def test_record_writer_packs_mlperf_records():
    w = post.RecordWriter()
    out = w.pack([7, 8], [np.array([[0.1, 0.2, 0.3, 0.4]]), np.zeros((0, 4))],
                 [np.array([0.5]), np.zeros(0)], [np.array([3]), np.zeros(0)])
    assert out[1][1] == 0 and out[0][1] == 28
    rec = post.records(_bytes(out[0]))
    assert rec.tolist() == [[7, pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.3),
                             pytest.approx(0.4), 0.5, 3]]


def _ground_truth_outputs(workload, resolution, indices):
    """The (boxes, logits) a perfect model would give: each box on its best anchor."""
    a = det.anchors(resolution)
    a_yxyx = np.c_[a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2]
    reg = np.zeros((len(indices), len(a), 4), np.float32)
    logits = np.zeros((len(indices), len(a), det.OUT_CLASSES), np.float32)
    logits[..., 0] = 10.0
    c = workload.canvases
    for n, i in enumerate(indices):
        H, W = c.images[i].shape
        b = c.boxes[i]
        gt = np.c_[b[:, 1] / H, b[:, 0] / W, (b[:, 1] + b[:, 3]) / H, (b[:, 0] + b[:, 2]) / W]
        lt = np.maximum(a_yxyx[:, None, :2], gt[None, :, :2])
        rb = np.minimum(a_yxyx[:, None, 2:], gt[None, :, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), 2)
        best = []
        for j in range(len(gt)):  # two digits never share an anchor
            inter[best, j] = -1.0
            best.append(int(inter[:, j].argmax()))
        reg[n, best] = det.encode(gt.astype(np.float32), a[best])
        logits[n, best, 0] = 0.0
        logits[n, best, c.labels[i] + 1] = 10.0
    return reg, logits


@pytest.mark.parametrize("nhwc", [False, True])
def test_responder_on_perfect_outputs_scores_map_one(workload, nhwc):
    from backends.base import TensorSpec

    res = 64
    v = workload.variant(width=0.5, resolution=res, score_threshold=0.5)
    shape = (1, res, res, 1) if nhwc else (1, 1, res, res)
    seen = []

    def predict(feeds):
        x = feeds["image"]
        assert x.shape[1:] == shape[1:]
        seen.append(len(x))
        idx = next_indices.pop(0)
        reg, logits = _ground_truth_outputs(workload, res, idx)
        return [logits, reg]  # out of the model's order on purpose: read by the specs' names

    outputs = [TensorSpec("logits", (), np.dtype("float32")),
               TensorSpec("boxes", (), np.dtype("float32"))]
    respond = workload.responder(v, predict, [TensorSpec("image", shape, np.dtype("float32"))],
                                 outputs, 8)
    samples = workload.load_samples(range(workload.total_sample_count), v)
    assert isinstance(samples[3], Sample) and samples[3].index == 3
    assert samples[3].image.shape == (1, 1, res, res)
    next_indices, responses = [], {}
    for start in range(0, len(samples), 8):
        batch = samples[start:start + 8]
        next_indices.append([s.index for s in batch])
        for s, r in zip(batch, respond(batch)):
            responses[s.index] = _bytes(r)
    assert seen[0] == 8 and sum(seen) == len(samples)
    score = workload.score(responses)
    assert score.value == pytest.approx(1.0) and score.extras["AP50"] == pytest.approx(1.0)
    assert score.text == "mAP=100.000%" and score.count == len(samples)


def _noisy_log(workload, rng):
    """Responses with jittered boxes, some wrong classes and some empty images."""
    responses = {}
    for i, (img, boxes, labels) in enumerate(zip(workload.canvases.images, workload.canvases.boxes,
                                                 workload.canvases.labels)):
        if i % 7 == 3:
            responses[i] = b""
            continue
        H, W = img.shape
        recs = []
        for (x, y, w, h), lab in zip(boxes, labels):
            jx, jy = rng.normal(0, 1.5, 2)
            cls = lab + 1 if rng.random() > 0.15 else (lab + 3) % 10 + 1
            recs.append([i, (y + jy) / H, (x + jx) / W, (y + jy + h) / H, (x + jx + w) / W,
                         rng.random(), cls])
        recs.append([i, 0.1, 0.1, 0.3, 0.3, 0.05, 4])  # a false positive
        responses[i] = np.asarray(recs, np.float32).tobytes()
    return responses


def test_map_equals_pycocotools_on_pixel_boxes(workload):
    from pycocotools.cocoeval import COCOeval

    responses = _noisy_log(workload, np.random.default_rng(1))
    score = workload.score(responses)
    gt = workload.ground_truth
    dets, ids = coco_eval.detections(gt, responses)
    ev = COCOeval(gt, gt.loadRes(dets), iouType="bbox")
    ev.params.imgIds = ids
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert 0.2 < score.value < 0.9
    assert score.value == ev.stats[0] and score.extras["AP50"] == ev.stats[1]
    assert coco_eval.score(gt, {0: b""}).value == 0.0  # no detection at all: 0, not a crash


def test_map_equals_mlperf_accuracy_coco(workload, tmp_path):
    """MLPerf's own script on a LoadGen-format accuracy log prints our mAP exactly."""
    responses = _noisy_log(workload, np.random.default_rng(2))
    log = [{"seq_id": n, "qsl_idx": i, "data": responses[i].hex()}
           for n, i in enumerate(sorted(responses, key=lambda k: (k * 37) % 61))]
    log.append(dict(log[0], seq_id=len(log)))  # a repeated sample is de-duplicated by both
    acc = tmp_path / "mlperf_log_accuracy.json"
    acc.write_text(json.dumps(log))
    workload.annotation_file(tmp_path / "coco")
    assert accuracy_coco_map(acc, tmp_path / "coco") == [workload.score(responses).text]


def test_variant_knobs_and_errors(workload):
    v = workload.variant(width=1.0, resolution=96, precision="int8", score_threshold=0.3,
                         nms_iou=0.6, max_detections=10)
    assert v.name == "ssd_digits_w1.0_r96_int8_s0.3_n0.6_m10"
    assert (v.resolution, v.precision, v.params["max_detections"]) == (96, "int8", 10)
    assert set(DigitCanvasesWorkload.model_choices({})) == {
        "width", "resolution", "precision", "score_threshold", "nms_iou", "max_detections",
        "nms"}
    for bad, key in [({"width": 0.3}, "width"), ({"resolution": 100}, "resolution"),
                     ({"nms": "gpu"}, "nms"),
                     ({"nms_iou": 0}, "nms_iou"), ({"score_threshold": 1.5}, "score_threshold"),
                     ({"max_detections": 0}, "max_detections"), ({"depth": 3}, "depth")]:
        with pytest.raises(ValueError, match=key):
            workload.variant(**bad)
    with pytest.raises(ValueError, match="count"):
        DigitCanvasesWorkload(count=0)
    with pytest.raises(ValueError, match="colour"):
        DigitCanvasesWorkload(colour=1)
    with pytest.raises(ValueError, match="'pb'"):
        workload.model_file(v, "pb")
    assert DigitCanvasesWorkload.metric.name == "mAP" and DigitCanvasesWorkload.loadgen_model == "yolo"


def test_space_selects_the_detection_workload():
    """``+space=ssd_mobilenet`` overrides the workload group (Hydra 1.3) and validates."""
    from hydra import compose, initialize_config_dir

    from tuner.config import register, validate

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+space=ssd_mobilenet", "workload.count=50"])
    validate(cfg)
    assert (cfg.workload.name, cfg.workload.count, cfg.study.name) == ("digit_canvases", 50,
                                                                       "ssd_mobilenet")
    assert set(cfg.space.model) == set(DigitCanvasesWorkload.model_choices({}))
