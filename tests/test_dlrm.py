"""The click_logs DLRM workload: a learnable click model, MLPerf's user blocks, the
responder's (prediction, label) layout, and AUC = scikit-learn = MLPerf's accuracy-dlrm.py."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from backends.base import TensorSpec
from tests.conftest import DATA, ROOT
from workloads.click_logs import WORKLOAD
from workloads.click_logs.data import VOCAB, ClickModel
from workloads.click_logs.model import DIMS, PRECISIONS, build_onnx
from workloads.tasks.recommendation import QUANTILE, PairResponder, read_quantile, user_offsets
from workloads.click_logs.workload import ASSETS

SHARED = ROOT.parent / "shared" / "mlperf"  # MLPerf's scorers, run as oracles
INPUTS = [TensorSpec("dense", ("N", 13), np.dtype(np.float32)),
          TensorSpec("sparse", ("N", 26), np.dtype(np.int64))]


@pytest.fixture(scope="module")
def small(cache_dir):
    return WORKLOAD(cache_dir=cache_dir, pairs=20000)


def ort_predict(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # shared CI cores
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda feeds: sess.run(None, feeds)


# --- the click model --------------------------------------------------------------------
def test_click_model_is_learnable_stable_and_deterministic():
    model = ClickModel()
    aucs = []
    for seed in (23, 7, 8):
        logs = model.draw(50000, seed)
        aucs.append(roc_auc_score(logs.labels, logs.probability))
        assert 0.2 < logs.labels.mean() < 0.35  # a Criteo-like click rate
    assert min(aucs) > 0.86 and max(aucs) - min(aucs) < 0.01, aucs
    a, b = model.draw(1000, 23), model.draw(1000, 23)
    assert np.array_equal(a.sparse, b.sparse) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(model.draw(1000, 24).labels, a.labels)
    assert (a.sparse >= 0).all() and (a.sparse < np.asarray(VOCAB)).all()
    assert (a.dense_raw[:, 1] < 0).any() and (a.dense >= 0).all()  # log(max(x, 0) + 1)


# --- users ------------------------------------------------------------------------------
def test_quantile_copy_equals_mlperf_file():
    assert read_quantile(DATA / "mlperf" / "dist_quantile.txt").tolist() == list(QUANTILE)


def test_user_blocks_follow_mlperf_reference():
    quantile = read_quantile()
    pairs = 50000
    # MLPerf's criteo.py loop, verbatim in spirit: global numpy seeded 123, scalar draws.
    state = np.random.get_state()
    np.random.seed(123)
    ref, qo = [], 0
    while True:
        ref.append(qo)
        qo = min(qo + quantile[np.random.randint(low=0, high=len(quantile))], pairs)
        if qo >= pairs:
            break
    ref.append(qo)
    np.random.set_state(state)
    offsets = user_offsets(pairs, quantile)
    assert offsets.tolist() == ref
    sizes = np.diff(offsets)
    assert set(sizes[:-1].tolist()) <= set(quantile.tolist()) and 0 < sizes[-1] <= 700
    assert 240 < user_offsets(2_000_000, quantile)[1:].size and \
        abs(np.diff(user_offsets(2_000_000, quantile)).mean() - 270) < 10


def test_samples_are_users(small):
    assert small.total_sample_count == len(small.user_offsets) - 1
    users = small.load_samples([3, 0], small.variant())
    o = small.user_offsets
    assert users[0].index == 3 and len(users[0]) == o[4] - o[3]
    assert np.shares_memory(users[0].dense, small.dense)  # views: loading copies nothing
    assert users[1].sparse.dtype == np.int64 and users[1].dense.dtype == np.float32
    described = small.describe()
    assert described["users"] == small.total_sample_count and described["user_offsets"][-1] == 20000
    assert small.trace_text().splitlines()[0] == f"0, {o[1]}, {o[1]}"
    assert abs(small.pairs_per_sample - 270) < 30 and small.samples_per_batch(64) == 1
    assert small.items_per_sample() == small.pairs_per_sample and small.item_name == "pair"
    assert small.samples_per_batch(4096) == round(4096 / small.pairs_per_sample)


# --- the responder ----------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [64, 700, 100000])
def test_responder_interleaves_prediction_and_label(small, batch_size):
    import ctypes

    seen = []

    def predict(feeds):  # a "model" whose output is known: the first dense feature
        seen.append(len(feeds["d"]))
        assert feeds["d"].dtype == np.float32 and feeds["s"].dtype == np.int64
        return [feeds["d"][:, :1] * 0.1]

    inputs = [TensorSpec("s", (-1, 26), np.dtype(np.int64)), TensorSpec("d", (-1, 13), np.dtype(np.float32))]
    respond = PairResponder(predict, inputs, batch_size, small)
    # scattered, one user, consecutive (fed as views), a repeat (staged), all users
    for query in ([5, 1, 9, 2], [4], [3, 4, 5, 6], [7, 2, 7, 8], list(range(small.total_sample_count))[::-1]):
        users = small.load_samples(query, small.variant())
        seen.clear()
        responses = respond(users)
        assert sum(seen) == sum(len(u) for u in users)
        assert all(n == batch_size for n in seen[:-1]) and seen[-1] <= batch_size  # full batches
        for user, (address, nbytes) in zip(users, responses):
            got = np.frombuffer(ctypes.string_at(address, nbytes), np.float32).reshape(-1, 2)
            assert np.allclose(got[:, 0], user.dense[:, 0] * 0.1) and np.array_equal(got[:, 1], user.labels)


def test_responder_refuses_a_model_that_is_not_a_dlrm(small):
    with pytest.raises(ValueError, match="float32 dense"):
        PairResponder(lambda f: [], INPUTS[:1], 64, small)
    bad = PairResponder(lambda f: [np.zeros((3, 2), np.float32)], INPUTS, 64, small)
    with pytest.raises(ValueError, match="one click probability per pair"):
        bad(small.load_samples([0], small.variant()))


# --- the model family -------------------------------------------------------------------
def test_shipped_models_small_and_accurate():
    sizes = sum(p.stat().st_size for p in ASSETS.iterdir())
    assert sizes < 3 * 2**20, f"assets {sizes} bytes"
    auc = json.loads((ASSETS / "manifest.json").read_text())["auc"]
    assert set(auc) == {f"dlrm_d{d}_{p}" for d in DIMS for p in PRECISIONS}
    assert all(v > 0.8 for v in auc.values()), auc
    assert WORKLOAD.reference_accuracy({}) == max(auc[f"dlrm_d{d}_fp32"] for d in DIMS)
    assert WORKLOAD.model_choices({}) == {"dim": DIMS, "precision": PRECISIONS}


def test_variants_and_their_errors(small):
    v = small.variant(dim=8, precision="int8")
    assert v.name == "dlrm_d8_int8" and v.precision == "int8"
    for bad, match in (({"dim": 12}, "dim=12"), ({"precision": "int4"}, "precision='int4'"),
                       ({"width": 1}, "width")):
        with pytest.raises(ValueError, match=match):
            small.variant(**bad)
    with pytest.raises(ValueError, match="tflite"):
        small.model_file(v, "tflite")
    with pytest.raises(ValueError, match="bogus"):
        WORKLOAD(pairs=1000, bogus=1)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_graph_is_plain_gathers_and_matches_fp32(small, precision):
    import onnx

    path = small.model_file(small.variant(dim=8, precision=precision))
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not ops & {"Loop", "EmbeddingBag", "SequenceAt", "SplitToSequence"}
    assert "Gather" in ops
    x = {"dense": small.dense[:2000], "sparse": small.sparse[:2000]}
    got = ort_predict(path)(x)[0]
    want = ort_predict(small.model_file(small.variant(dim=8)))(x)[0]
    assert got.shape == (2000, 1)
    assert np.abs(got - want).max() < (1e-6 if precision == "fp32" else 2e-2)


def test_graph_matches_numpy_dlrm(small):
    from workloads.click_logs.model import lower_triangle, row_offsets

    w = dict(np.load(ASSETS / "dlrm_d8.npz"))
    dense, sparse = small.dense[:500], small.sparse[:500]
    x = np.maximum(np.maximum(dense @ w["bot0.w"].T + w["bot0.b"], 0) @ w["bot1.w"].T + w["bot1.b"], 0)
    t = np.concatenate([x[:, None], w["emb"][sparse + row_offsets()]], axis=1)
    dots = np.einsum("nid,njd->nij", t, t).reshape(len(t), -1)[:, lower_triangle()]
    h = np.concatenate([x, dots], axis=1)
    for i in range(3):
        h = h @ w[f"top{i}.w"].T + w[f"top{i}.b"]
        h = np.maximum(h, 0) if i < 2 else 1 / (1 + np.exp(-h))
    got = ort_predict(small.model_file(small.variant(dim=8)))({"dense": dense, "sparse": sparse})[0]
    assert np.abs(got - h).max() < 1e-5


# --- the score --------------------------------------------------------------------------
def test_dlrm_v3_figures_are_normalized_entropy_accuracy_and_grouped_auc():
    """The lines dlrm-v3's checker reads, against scikit-learn on the same pairs: NE = log
    loss / the entropy of the click rate, ACC at 0.5, GAUC = the mean AUC of the users
    with both clicks and non-clicks (a one-class user has no AUC)."""
    from sklearn.metrics import log_loss

    from workloads.tasks.recommendation import score_pairs

    rng = np.random.default_rng(5)
    users = [(rng.random(n).astype(np.float32), (rng.random(n) < 0.3).astype(np.float32))
             for n in (40, 25, 60)] + [(np.full(5, 0.2, np.float32), np.zeros(5, np.float32))]
    responses = {i: np.stack([p, y], 1).astype(np.float32).tobytes()
                 for i, (p, y) in enumerate(users)}
    score = score_pairs(responses)
    lines = score.text.splitlines()
    figures = dict(re.match(r"metric/lifetime_(\w+)/rating: ([\d.]+)$", line).groups()
                   for line in lines[1:])
    pred = np.concatenate([p for p, _ in users])
    labels = np.concatenate([y for _, y in users])
    rate = labels.mean()
    ne = log_loss(labels, pred) / -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    gauc = np.mean([roc_auc_score(y, p) for p, y in users[:3]])
    assert lines[0].startswith(f"AUC={100 * roc_auc_score(labels, pred):.3f}%")
    assert float(figures["ne"]) == pytest.approx(ne, abs=1e-5)
    assert float(figures["accuracy"]) == pytest.approx(np.mean(pred.round() == labels), abs=1e-5)
    assert float(figures["gauc"]) == pytest.approx(gauc, abs=1e-5)
    assert score.extras["ne"] == pytest.approx(ne) and score.extras["gauc"] == pytest.approx(gauc)


def test_auc_equals_sklearn_and_mlperf_accuracy_script(small, tmp_path):
    import ctypes

    if not (SHARED / "accuracy-dlrm.py").is_file():
        pytest.skip(f"runs MLPerf's scorer accuracy-dlrm.py from ../shared/mlperf: not at {SHARED}")
    variant = small.variant(dim=8, precision="int8")
    respond = small.responder(variant, ort_predict(small.model_file(variant)), INPUTS, [], 1024)
    order = list(np.random.default_rng(0).permutation(small.total_sample_count))
    responses, log = {}, []
    for seq, start in enumerate(range(0, len(order), 7)):  # queries of 7 users
        query = order[start:start + 7]
        for idx, (address, nbytes) in zip(query, respond(small.load_samples(query, variant))):
            responses[int(idx)] = ctypes.string_at(address, nbytes)
            log.append({"seq_id": len(log), "qsl_idx": int(idx), "data": responses[int(idx)].hex().upper()})
    log.append(dict(log[0], seq_id=len(log)))  # LoadGen may log a sample twice: deduped
    score = small.score(responses)
    both = np.concatenate([np.frombuffer(responses[i], np.float32).reshape(-1, 2)
                           for i in range(small.total_sample_count)])
    assert score.value == roc_auc_score(both[:, 1], both[:, 0])
    assert np.array_equal(np.sort(both[:, 1]), np.sort(small.labels))  # every pair, once
    assert score.count == small.total_sample_count and score.extras["pairs"] == 20000
    (tmp_path / "mlperf_log_accuracy.json").write_text(json.dumps(log))
    out = subprocess.run([sys.executable, str(SHARED / "accuracy-dlrm.py"), "--mlperf-accuracy-file",
                          str(tmp_path / "mlperf_log_accuracy.json")],
                         capture_output=True, text=True, check=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("AUC=")][0]
    assert line == score.text.splitlines()[0]  # then the lines dlrm-v3's checker reads
    assert re.match(r"AUC=\d+\.\d{3}%", score.text) and score.value > 0.8


def test_score_refuses_a_response_of_the_wrong_size(small):
    with pytest.raises(ValueError, match="sample 0"):
        small.score({0: np.zeros(6, np.float32).tobytes()})
    with pytest.raises(ValueError, match="empty"):
        small.score({})


@pytest.mark.slow  # TVM's import and compile take 5-20 s on a shared 2-core host
def test_tvm_imports_and_agrees(small):
    tvm = pytest.importorskip("tvm")
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    w = dict(np.load(ASSETS / "dlrm_d8.npz"))
    model = build_onnx(w, 8, "int8")
    mod = from_onnx(model, shape_dict={"dense": [64, 13], "sparse": [64, 26]})
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    args = [tvm.runtime.tensor(a) for a in (small.dense[:64], small.sparse[:64])]
    got = vm["main"](*args).numpy()
    want = ort_predict(small.model_file(small.variant(dim=8, precision="int8")))(
        {"dense": small.dense[:64], "sparse": small.sparse[:64]})[0]
    assert np.abs(got - want).max() < 1e-5


# --- configuration ------------------------------------------------------------------------
def _compose(*overrides):
    from hydra import compose, initialize_config_dir

    from tuner.config import register

    register()  # the schemas, as the CLI registers them
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_space_selects_the_workload_and_offline():
    from tuner.config import validate

    cfg = _compose("+space=dlrm")
    validate(cfg)
    assert cfg.workload.name == "click_logs" and cfg.scenario.name == "Offline"
    assert cfg.backends.tvm.fixed.batch_size == 256
    assert _compose("+space=dlrm", "scenario=server").scenario.name == "Server"
    crit = _compose("+space=criteo", "workload.dataset_dir=/d", "workload.models={m: /m.onnx}")
    assert crit.workload.name == "criteo" and crit.workload.max_ind_range == 40_000_000
