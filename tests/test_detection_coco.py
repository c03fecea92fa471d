"""Bring-your-own COCO: hand-built SSD-interface and YOLO-interface ONNX models over a tiny
hand-made COCO folder; the workload's responder + score give exactly the mAP pycocotools
gives on the same detections, with the COCO ids right.

Each test image is one flat colour whose red value names it; the models look that value up
in a table of planted detections, so every image gets its own answer through the real
preprocessing, runtime and post-processing."""
from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest

from workloads.coco import COCO_80_TO_91, CocoWorkload

RES = 32
SIZES = [(40, 60), (50, 50), (64, 48), (30, 45)]  # (height, width) of the originals
COLOURS = [10, 70, 130, 200]
CATS = [1, 18, 44, 90]  # non-contiguous COCO ids
K = 3  # planted detections per image


def _folder(tmp_path):
    from PIL import Image

    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i, ((h, w), v) in enumerate(zip(SIZES, COLOURS)):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0], img[..., 1] = v, 255 - v
        name = f"{i:012d}.png"
        Image.fromarray(img).save(root / "val2017" / name)
        images.append({"id": 1000 + 7 * i, "file_name": name, "height": h, "width": w})
        for j in range(2):
            bw, bh = rng.uniform(0.2, 0.4) * w, rng.uniform(0.2, 0.4) * h
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append({"id": len(anns) + 1, "image_id": 1000 + 7 * i, "bbox": [x, y, bw, bh],
                         "area": bw * bh, "iscrowd": 0, "category_id": CATS[(i + j) % 4]})
    cats = [{"id": c, "name": f"c{c}"} for c in CATS]
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root, images, anns


def _planted(images, anns, rng):
    """Per image: K detections (normalised yxyx, score, COCO id) near its true boxes."""
    out = []
    for img in images:
        h, w = img["height"], img["width"]
        mine = [a for a in anns if a["image_id"] == img["id"]]
        dets = []
        for k in range(K):
            a = mine[k % len(mine)]
            x, y, bw, bh = a["bbox"]
            j = rng.normal(0, 0.03 * bw, 4)
            box = [(y + j[0]) / h, (x + j[1]) / w, (y + bh + j[2]) / h, (x + bw + j[3]) / w]
            cat = a["category_id"] if k < 2 else CATS[(CATS.index(a["category_id"]) + 1) % 4]
            dets.append((np.clip(box, 0, 1), float(rng.uniform(0.2, 0.99)), cat))
        out.append(dets)
    return out


def _gather_model(path, input_name, input_type, shape, tables, to_index):
    """An ONNX model whose outputs are ``tables[name][pixel value]`` of the first pixel."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = to_index
    outputs, inits = [], [numpy_helper.from_array(np.array([0], np.int64), "zero1")]
    for name, table in tables.items():
        inits.append(numpy_helper.from_array(table, name + ".table"))
        nodes.append(helper.make_node("Gather", [name + ".table", "idx"], [name], axis=0))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                     ["N", *table.shape[1:]]))
    graph = helper.make_graph(nodes, "planted", [helper.make_tensor_value_info(
        input_name, input_type, ["N", *shape])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _first_pixel_index(x: str, flat_index_of_red: list[int], scale: float | None):
    from onnx import helper

    starts, ends = flat_index_of_red, [i + 1 for i in flat_index_of_red]
    nodes = [
        helper.make_node("Constant", [], ["s"], value_ints=starts),
        helper.make_node("Constant", [], ["e"], value_ints=ends),
        helper.make_node("Constant", [], ["ax"], value_ints=[1, 2, 3]),
        helper.make_node("Slice", [x, "s", "e", "ax"], ["px"]),
        helper.make_node("Reshape", ["px", "shape_n"], ["px1"]),
        helper.make_node("Cast", ["px1"], ["pxf"], to=1),
    ]
    nodes.insert(0, helper.make_node("Constant", [], ["shape_n"], value_ints=[-1]))
    if scale is not None:
        nodes.append(helper.make_node("Constant", [], ["k"], value_float=scale))
        nodes.append(helper.make_node("Mul", ["pxf", "k"], ["pxs"]))
        nodes.append(helper.make_node("Round", ["pxs"], ["pxr"]))
    else:
        nodes.append(helper.make_node("Identity", ["pxf"], ["pxr"]))
    nodes.append(helper.make_node("Cast", ["pxr"], ["idx"], to=7))
    return nodes


def _run(workload, variant, model_path):
    import onnxruntime as ort

    from backends.base import TensorSpec

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    i = sess.get_inputs()[0]
    spec = TensorSpec(i.name, tuple(d if isinstance(d, int) else -1 for d in i.shape),
                      np.dtype(np.uint8 if "uint8" in i.type else np.float32))
    outputs = [TensorSpec(o.name, (), np.dtype(np.float32)) for o in sess.get_outputs()]
    respond = workload.responder(variant, lambda feeds: sess.run(None, feeds), [spec], outputs, 2)
    samples = workload.load_samples(range(workload.total_sample_count), variant)
    assert [int(s.image[0, 0, 0]) for s in samples] == COLOURS[:len(samples)]
    responses = {}
    for start in range(0, len(samples), 2):
        batch = samples[start:start + 2]
        for s, (addr, n) in zip(batch, respond(batch)):
            responses[s.index] = ctypes.string_at(addr, n) if n else b""
    return responses


def _pycocotools_map(annotation_file, images, dets_per_image):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(annotation_file))
    res = [{"image_id": img["id"], "category_id": int(cat), "score": float(score),
            "bbox": [b[1] * img["width"], b[0] * img["height"], (b[3] - b[1]) * img["width"],
                     (b[2] - b[0]) * img["height"]]}
           for img, dets in zip(images, dets_per_image) for b, score, cat in dets]
    ev = COCOeval(gt, gt.loadRes(res), iouType="bbox")
    ev.params.imgIds = [img["id"] for img in images]
    ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats


def test_ssd_interface_model(tmp_path):
    root, images, anns = _folder(tmp_path)
    planted = _planted(images, anns, np.random.default_rng(1))
    boxes = np.zeros((256, K + 1, 4), np.float32)  # one padding slot past num_detections
    scores, classes = np.zeros((256, K + 1), np.float32), np.zeros((256, K + 1), np.float32)
    num = np.zeros(256, np.float32)
    for v, dets in zip(COLOURS, planted):
        for k, (b, s, c) in enumerate(dets):
            boxes[v, k], scores[v, k], classes[v, k] = b, s, c
        boxes[v, K], scores[v, K], classes[v, K] = [0, 0, 1, 1], 0.9, 1  # not counted
        num[v] = K
    from onnx import TensorProto

    path = tmp_path / "ssd.onnx"
    tables = {"detection_boxes:0": boxes, "detection_scores:0": scores,
              "num_detections:0": num, "detection_classes:0": classes}
    _gather_model(path, "image_tensor:0", TensorProto.UINT8, [RES, RES, 3], tables,
                  _first_pixel_index("image_tensor:0", [0, 0, 0], None))
    workload = CocoWorkload(dataset_dir=str(root), models={"ssd": str(path)})
    v = workload.variant(model="ssd")
    assert (v.params["interface"], v.resolution, v.params["knobs"]) == ("ssd", RES, (0.0, None, None))
    score = workload.score(_run(workload, v, path))
    stats = _pycocotools_map(root / "annotations" / "instances_val2017.json", images, planted)
    assert 0.05 < score.value < 0.95
    assert score.value == pytest.approx(stats[0], abs=1e-9)
    assert score.extras["AP50"] == pytest.approx(stats[1], abs=1e-9)
    # a score threshold drops the low ones (a knob the space may list)
    v2 = workload.variant(model="ssd", score_threshold=0.5, max_detections=2)
    kept = [[d for d in dets[:2] if d[1] >= 0.5] for dets in planted]
    stats2 = _pycocotools_map(root / "annotations" / "instances_val2017.json", images, kept)
    assert workload.score(_run(workload, v2, path)).value == pytest.approx(stats2[0], abs=1e-9)


def test_yolo_interface_model_with_nms_and_80_to_91_ids(tmp_path):
    root, images, anns = _folder(tmp_path)
    planted = _planted(images, anns, np.random.default_rng(2))
    A = 3 * K + 1
    table = np.zeros((256, 84, A), np.float32)
    expected = []
    for v, img, dets in zip(COLOURS, images, planted):
        keep = []
        for k, (b, s, cat) in enumerate(dets):
            cls = int(np.flatnonzero(COCO_80_TO_91 == cat)[0])
            y0, x0, y1, x1 = np.asarray(b) * RES  # normalised -> input pixels
            col = [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
            table[v, :4, 3 * k] = col
            table[v, 4 + cls, 3 * k] = s
            table[v, :4, 3 * k + 1] = col  # a duplicate of lower score: NMS drops it
            table[v, 4 + cls, 3 * k + 1] = s * 0.9
            table[v, :4, 3 * k + 2] = col  # the same box, another class: NMS keeps it
            other = (cls + 5) % 80
            table[v, 4 + other, 3 * k + 2] = s * 0.5
            keep += [(b, s, cat), (b, s * 0.5, float(COCO_80_TO_91[other]))]
        table[v, :4, A - 1] = [5, 5, 4, 4]
        table[v, 4 + 3, A - 1] = 0.0005  # below the reference threshold 0.001
        expected.append(keep)
    from onnx import TensorProto

    path = tmp_path / "yolo.onnx"
    _gather_model(path, "images", TensorProto.FLOAT, [3, RES, RES], {"output0": table},
                  _first_pixel_index("images", [0, 0, 0], 255.0))
    workload = CocoWorkload(dataset_dir=str(root / "val2017" / ".."), models={"yolo": str(path)},
                            count=3)
    v = workload.variant()
    assert (v.params["interface"], v.params["knobs"]) == ("yolo", (0.001, 0.7, 300))
    responses = _run(workload, v, path)
    assert len(responses) == 3 and all(len(r) == 2 * K * 28 for r in responses.values())
    score = workload.score(responses)
    stats = _pycocotools_map(root / "annotations" / "instances_val2017.json", images[:3],
                             expected[:3])
    assert 0.05 < score.value < 0.95
    assert score.value == pytest.approx(stats[0], abs=1e-6)
    assert score.extras["AP50"] == pytest.approx(stats[1], abs=1e-6)


def test_config_errors_name_the_key(tmp_path):
    root, _, _ = _folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset_dir"):
        CocoWorkload(dataset_dir=str(tmp_path / "nowhere"), models={"a": __file__})
    with pytest.raises(FileNotFoundError, match="models.a"):
        CocoWorkload(dataset_dir=str(root), models={"a": str(tmp_path / "a.onnx")})
    with pytest.raises(ValueError, match="interface"):
        CocoWorkload.check({"dataset_dir": str(root), "models": {"a": __file__},
                            "interface": "retina"})
    with pytest.raises(ValueError, match="dataset_dir"):
        CocoWorkload.check({"dataset_dir": "???", "models": {}})
    assert CocoWorkload.model_choices({"models": {"a": 1, "b": 2}})["model"] == ("a", "b")


def test_tflite_detect_outputs_by_name_with_0_based_classes():
    """detect.tflite: float input in [-1, 1], outputs fetched by name, class + 1 = COCO id."""
    from backends.base import TensorSpec
    from workloads.coco import CocoResponder, CocoSample
    from workloads.tasks.detection_post import records

    seen = {}

    def predict(feeds):
        seen["x"] = feeds["input"]
        boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 0.2, 0.2]]], np.float32)
        # shuffled order: scores, count, boxes, classes
        return [np.array([[0.8, 0.3]], np.float32), np.array([2.0], np.float32), boxes,
                np.array([[0.0, 89.0]], np.float32)]

    spec = TensorSpec("input", (1, 300, 300, 3), np.dtype(np.float32))
    r = CocoResponder(predict, spec, "tflite_ssd", (0.5, None, None), 300)
    r.output_names = ["TFLite_Detection_PostProcess:2", "TFLite_Detection_PostProcess:3",
                      "TFLite_Detection_PostProcess", "TFLite_Detection_PostProcess:1"]
    img = np.full((300, 300, 3), 255, np.uint8)
    (addr, n), = r([CocoSample(5, img, 480, 640)])
    assert seen["x"].dtype == np.float32 and seen["x"].max() == 1.0
    rec = records(ctypes.string_at(addr, n))
    assert rec.shape == (1, 7) and rec[0, 0] == 5 and rec[0, 6] == 1 and rec[0, 5] == pytest.approx(0.8)
