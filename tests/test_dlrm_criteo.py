"""Bring-your-own Criteo: MLPerf DLRM v1 preprocessing of a hand-written day_23, and a
hand-built ONNX DLRM whose AUC through the workload is exactly scikit-learn's."""
from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from backends.base import TensorSpec
from workloads.criteo import CriteoWorkload, parse_day

RANGE = 97  # max_ind_range of the hand-built model's tables


def write_day(folder, rows: int, seed: int = 0):
    """A Criteo TSV: label, 13 ints, 26 hex; some fields empty, some ints negative."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(rows):
        dense = [str(int(v)) if rng.random() > 0.1 else "" for v in rng.integers(-2, 500, 13)]
        cats = [f"{int(v):08x}" if rng.random() > 0.1 else "" for v in rng.integers(0, 2**32, 26)]
        # the label leans on the categories' mean hashed id: AUC well above 0.5
        mean = np.mean([(int(c or "0", 16) % RANGE) / RANGE for c in cats])
        label = int(rng.random() < 1 / (1 + math.exp(-30 * (mean - 0.5))))
        lines.append("\t".join([str(label), *dense, *cats]))
    folder.mkdir(exist_ok=True)
    (folder / "day_23").write_text("\n".join(lines) + "\n")
    return lines


def tiny_dlrm(path):
    """p = sigmoid(sum_f table[sparse_f] + dense . w): Gather + ReduceSum, elementwise only,
    so a row's output does not depend on the batch it is run in."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    table = (np.arange(RANGE, dtype=np.float32) / RANGE - 0.5)[:, None] * rng.uniform(0.5, 1.5, (1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(table, "table"),
             numpy_helper.from_array(rng.normal(0, 0.1, 13).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1, 2], np.int64), "axes")]
    nodes = [helper.make_node("Gather", ["table", "ids"], ["rows"]),  # [N, 26, 1]
             helper.make_node("ReduceSum", ["rows", "axes"], ["emb"], keepdims=0),  # [N]
             helper.make_node("Mul", ["x", "w"], ["xw"]),
             helper.make_node("ReduceSum", ["xw", "axes_1"], ["lin"], keepdims=0),
             helper.make_node("Add", ["emb", "lin"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["p"])]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axes_1"))
    graph = helper.make_graph(  # inputs in the "wrong" order: matched by dtype, not position
        nodes, "tiny_dlrm",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 26]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 13])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def test_preprocessing_is_mlperf_v1(tmp_path):
    lines = write_day(tmp_path / "data", 50)
    dense, sparse, labels = parse_day(tmp_path / "data" / "day_23", 40, RANGE)
    assert dense.shape == (40, 13) and sparse.shape == (40, 26) and labels.shape == (40,)
    for row, line in enumerate(lines[:40]):
        fields = line.split("\t")
        assert labels[row] == int(fields[0])
        for j, v in enumerate(fields[1:14]):
            assert np.isclose(dense[row, j], math.log(max(int(v or 0), 0) + 1), rtol=1e-6, atol=0)
        for j, v in enumerate(fields[14:]):
            assert sparse[row, j] == (int(v, 16) if v else 0) % RANGE
    _, raw, _ = parse_day(tmp_path / "data" / "day_23", None, 0)  # 0: no modulo
    assert len(raw) == 50 and raw.max() > RANGE


def test_auc_is_exactly_sklearns(tmp_path, cache_dir):
    import onnxruntime as ort

    lines = write_day(tmp_path / "data", 1500)
    model = tiny_dlrm(tmp_path / "tiny.onnx")
    w = CriteoWorkload(cache_dir=cache_dir, dataset_dir=tmp_path / "data",
                       models={"tiny": str(model)}, count=1200, max_ind_range=RANGE)
    assert w.pair_count == 1200 and w.total_sample_count == len(w.user_offsets) - 1
    variant = w.variant()
    sess = ort.InferenceSession(str(w.model_file(variant)), providers=["CPUExecutionProvider"])
    inputs = [TensorSpec(i.name, tuple(i.shape), np.dtype(np.int64 if "int64" in i.type else np.float32))
              for i in sess.get_inputs()]
    respond = w.responder(variant, lambda feeds: sess.run(None, feeds), inputs, [], 300)
    responses = {}
    for query in ([0, 2], [1], list(range(3, w.total_sample_count))):
        for idx, (address, nbytes) in zip(query, respond(w.load_samples(query, variant))):
            responses[idx] = ctypes.string_at(address, nbytes)
    score = w.score(responses)
    # The same predictions, made without the workload: the test's own parse of the TSV.
    rows = [line.split("\t") for line in lines[:1200]]
    x = np.log(np.maximum(np.array([[int(v or 0) for v in r[1:14]] for r in rows]), 0).astype(np.float32) + 1)
    ids = np.array([[(int(v, 16) if v else 0) % RANGE for v in r[14:]] for r in rows], np.int64)
    pred = sess.run(None, {"x": x, "ids": ids})[0]
    labels = np.array([int(r[0]) for r in rows])
    assert score.value == roc_auc_score(labels, pred) and score.value > 0.6
    assert score.extras["pairs"] == 1200


def test_config_errors_name_the_key(tmp_path, cache_dir):
    import onnx
    from onnx import TensorProto, helper

    write_day(tmp_path / "data", 200)
    good = str(tiny_dlrm(tmp_path / "tiny.onnx"))
    with pytest.raises(FileNotFoundError, match="day_23"):
        CriteoWorkload(cache_dir=cache_dir, dataset_dir=tmp_path, models={"m": good})
    with pytest.raises(FileNotFoundError, match="models.m: file"):
        CriteoWorkload(cache_dir=cache_dir, dataset_dir=tmp_path / "data", models={"m": "/nope.onnx"})
    with pytest.raises(ValueError, match="unknown config key"):
        CriteoWorkload(cache_dir=cache_dir, dataset_dir=tmp_path / "data", models={"m": good}, day=1)
    # a model with an int32 sparse input is not a DLRM as LoadGen samples feed it
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["p"])], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 13]),
         helper.make_tensor_value_info("ids", TensorProto.INT32, ["N", 26])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 13])])
    bad = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph), str(bad))
    w = CriteoWorkload(cache_dir=cache_dir, dataset_dir=tmp_path / "data",
                       models={"m": good, "bad": str(bad)}, count=150, max_ind_range=RANGE)
    with pytest.raises(ValueError, match="models.bad: bad.onnx has inputs"):
        w.variant(model="bad")
    with pytest.raises(ValueError, match="say which `model`"):
        w.variant()
    (tmp_path / "data" / "day_23").write_text("1\t2\t3\n")
    with pytest.raises(ValueError, match=r"day_23:1: 3 tab-separated fields"):
        CriteoWorkload(cache_dir=cache_dir, dataset_dir=tmp_path / "data", models={"m": good},
                       disk_cache=False)
