"""The shipped digit-canvas detectors: the ONNX and LiteRT graphs built from the weights
agree, int8 stays close to fp32, and the mAP on the first validation canvases is what a
trained detector gives (the whole-set figures are in assets/manifest.json)."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from backends.base import TensorSpec
from workloads.digit_canvases import data, model as det
from workloads.digit_canvases.workload import DigitCanvasesWorkload

WIDTH, RES = 1.0, 64  # the cheapest shipped variant that detects well
COUNT = 60


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    if not det.weights_path(WIDTH).exists():
        pytest.skip("detector weights not shipped")
    return DigitCanvasesWorkload(cache_dir=tmp_path_factory.mktemp("cache"), count=COUNT)


def _ort(path):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda feeds: sess.run(None, feeds)


def _litert(path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    d = interp.get_input_details()[0]
    outs = {o["name"]: o["index"] for o in interp.get_output_details()}

    def predict(feeds):
        x = feeds["image"]
        interp.resize_tensor_input(d["index"], list(x.shape))
        interp.allocate_tensors()
        interp.set_tensor(d["index"], x)
        interp.invoke()
        return [interp.get_tensor(outs["logits"]), interp.get_tensor(outs["boxes"])]

    return predict


def _outputs(*names):
    return [TensorSpec(name, (), np.dtype("float32")) for name in names]


ORT_OUTPUTS = _outputs("boxes", "logits")  # the ONNX graph's order
LITERT_OUTPUTS = _outputs("logits", "boxes")  # what _litert's predict returns


def _map(workload, variant, predict, nhwc=False, outputs=ORT_OUTPUTS):
    shape = (1, RES, RES, 1) if nhwc else (1, 1, RES, RES)
    respond = workload.responder(variant, predict, [TensorSpec("image", shape, np.dtype("float32"))],
                                 outputs, 1)
    responses = {}
    for s in workload.load_samples(range(COUNT), variant):
        (addr, n), = respond([s])
        responses[s.index] = ctypes.string_at(addr, n) if n else b""
    return workload.score(responses)


def test_onnx_and_tflite_fp32_agree(workload):
    v = workload.variant(width=WIDTH, resolution=RES)
    x = data.preprocess(workload.canvases.images[:4], RES)
    boxes, logits = _ort(workload.model_file(v, "onnx"))({"image": x})
    lite_logits, lite_boxes = _litert(workload.model_file(v, "tflite"))(
        {"image": x.reshape(4, RES, RES, 1)})
    assert boxes.shape == (4, len(det.anchors(RES)), 4)
    assert np.allclose(lite_boxes, boxes, atol=1e-4) and np.allclose(lite_logits, logits, atol=1e-4)
    fp32 = _map(workload, v, _ort(workload.model_file(v, "onnx")))
    assert fp32.value > 0.2 and fp32.extras["AP50"] > 0.4
    assert _map(workload, v, _litert(workload.model_file(v, "tflite")), nhwc=True,
                outputs=LITERT_OUTPUTS).value == \
        pytest.approx(fp32.value, abs=0.005)


def test_int8_models_stay_close(workload):
    fp32 = _map(workload, workload.variant(width=WIDTH, resolution=RES),
                _ort(workload.model_file(workload.variant(width=WIDTH, resolution=RES))))
    v = workload.variant(width=WIDTH, resolution=RES, precision="int8")
    ort_int8 = _map(workload, v, _ort(workload.model_file(v, "onnx")))
    lite_int8 = _map(workload, v, _litert(workload.model_file(v, "tflite")), nhwc=True,
                     outputs=LITERT_OUTPUTS)
    assert abs(ort_int8.value - fp32.value) < 0.05 and abs(lite_int8.value - fp32.value) < 0.05


def test_knobs_trade_detections_for_speed(workload):
    """A higher score threshold and fewer detections answer fewer records."""
    loose = workload.variant(width=WIDTH, resolution=RES, score_threshold=0.05)
    tight = workload.variant(width=WIDTH, resolution=RES, score_threshold=0.5, max_detections=2)
    predict = _ort(workload.model_file(loose))
    sizes = []
    for v in (loose, tight):
        respond = workload.responder(v, predict, [TensorSpec("image", (1, 1, RES, RES),
                                                             np.dtype("float32"))], ORT_OUTPUTS, 4)
        sizes.append(sum(n for _, n in respond(workload.load_samples(range(4), v))))
    assert sizes[0] > sizes[1] > 0 and sizes[1] <= 4 * 2 * 28


def test_nms_in_the_graph_answers_what_the_harness_does(workload):
    """``nms=model``: the ONNX graph decodes and runs NonMaxSuppression; its records score
    the same mAP as the harness's numpy NMS on the same detector, batched or not, and
    the thresholds are inputs (one file for every knob setting). Other formats refuse it."""
    from workloads.digit_canvases import nms_graph

    for precision in ("fp32", "int8"):
        harness = workload.variant(width=WIDTH, resolution=RES, precision=precision,
                                   nms_iou=0.45, max_detections=10)
        graph = workload.variant(width=WIDTH, resolution=RES, precision=precision,
                                 nms_iou=0.45, max_detections=10, nms="model")
        assert graph.name == harness.name + "_nmsgraph"  # its own accuracy key
        path = workload.model_file(graph)
        assert path != workload.model_file(harness)
        assert workload.model_file(workload.variant(width=WIDTH, resolution=RES,
                                                    precision=precision, nms="model")) == path
        predict = _ort(path)
        import onnxruntime as ort

        names = [i.name for i in ort.InferenceSession(str(path)).get_inputs()]
        assert names == ["image", *nms_graph.KNOB_INPUTS]
        specs = [TensorSpec("image", (-1, 1, RES, RES), np.dtype("float32")),
                 TensorSpec("score_threshold", (), np.dtype("float32"))]
        by_harness = _map(workload, harness, _ort(workload.model_file(harness)))
        by_graph = _map(workload, graph, predict, outputs=_outputs(*nms_graph.OUTPUTS))
        assert by_graph.value == pytest.approx(by_harness.value, abs=1e-9), precision
        # a batch of 8 answers each canvas what it answers alone
        respond = workload.responder(graph, predict, specs, _outputs(*nms_graph.OUTPUTS), 8)
        samples = workload.load_samples(range(8), graph)
        batched = [ctypes.string_at(a, n) for a, n in respond(samples)]
        alone = [ctypes.string_at(*respond([s])[0]) for s in samples]
        assert batched == alone and all(len(b) <= 10 * 28 for b in batched)
        assert sum(map(len, batched)) > 0
    with pytest.raises(ValueError, match="nms=model"):
        workload.model_file(graph, "tflite")


def test_digit_pool_is_the_digits_split():
    from workloads.digits import data as digits_data

    pool, split = data._digit_pool(), digits_data.load_split()
    assert all(np.array_equal(pool[k], split[k]) and pool[k].dtype == split[k].dtype for k in split)
