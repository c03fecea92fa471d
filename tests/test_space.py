"""Space config -> Optuna suggestions: conditional dims, split, grid."""
from __future__ import annotations

import optuna
import pytest

from search_spaces import SearchSpace

SPACE = {"model": {"width": {"type": "categorical", "choices": [0.25, 0.5]},
                   "resolution": {"type": "categorical", "choices": [32, 64]}},
         "backends": ["onnxruntime", "litert"]}
BACKENDS = {
    "onnxruntime": {"knobs": {
        "intra_op_threads": {"type": "int", "low": 1, "high": 2},
        "execution_mode": {"type": "categorical", "choices": ["sequential", "parallel"]},
        "inter_op_threads": {"type": "int", "low": 1, "high": 2,
                             "when": {"execution_mode": "parallel"}}}},
    "litert": {"knobs": {"num_threads": {"type": "int", "low": 1, "high": 4}}},
}
SCENARIO = {"knobs": {"batch_size": {"type": "categorical", "choices": [1, 8]}}}


def space() -> SearchSpace:
    return SearchSpace.from_config(SPACE, BACKENDS, SCENARIO)


def test_dimension_names_and_roles():
    names = [d.name for d in space().dims]
    assert names == ["width", "resolution", "backend", "onnxruntime.intra_op_threads",
                     "onnxruntime.execution_mode", "onnxruntime.inter_op_threads",
                     "litert.num_threads", "batch_size"]


def test_suggest_only_active_knobs():
    study = optuna.create_study(directions=["minimize", "maximize"],
                                sampler=optuna.samplers.RandomSampler(seed=1))
    seen_backends = set()
    for _ in range(40):
        trial = study.ask()
        params = space().suggest(trial)
        backend = params["backend"]
        seen_backends.add(backend)
        other = "litert" if backend == "onnxruntime" else "onnxruntime"
        assert not any(k.startswith(other + ".") for k in params), params
        nested = "onnxruntime.inter_op_threads" in params
        assert nested == (params.get("onnxruntime.execution_mode") == "parallel")
        study.tell(trial, [1.0, 1.0])
    assert seen_backends == {"onnxruntime", "litert"}


def test_split_routes_each_param():
    point = space().split({"width": 0.5, "resolution": 32, "backend": "onnxruntime",
                           "onnxruntime.intra_op_threads": 2,
                           "onnxruntime.execution_mode": "sequential", "batch_size": 8})
    assert point.model == {"width": 0.5, "resolution": 32}
    assert point.backend == "onnxruntime"
    assert point.knobs == {"intra_op_threads": 2, "execution_mode": "sequential"}
    assert point.scenario == {"batch_size": 8}
    with pytest.raises(KeyError, match="not a dimension"):
        space().split({"backend": "onnxruntime", "bogus": 1})


def test_grid_expands_conditionals():
    grid = space().grid()
    # ORT: 2 threads x (sequential + parallel x 2 inter) = 6; LiteRT: 4 -> 10 per model x batch
    assert len(grid) == 2 * 2 * 10 * 2
    assert len({tuple(sorted(p.items())) for p in grid}) == len(grid)
    assert all("litert.num_threads" not in p for p in grid if p["backend"] == "onnxruntime")


def test_empty_backends_rejected():
    with pytest.raises(ValueError, match="space.backends"):
        SearchSpace.from_config({**SPACE, "backends": []}, BACKENDS)


def test_a_model_dim_may_depend_on_the_runtime():
    """A model dim with ``when: {backend: ...}`` (what only one runtime can run, such as
    NMS inside the graph) is suggested after the runtime, only for it, and is a model dim
    of the accuracy key."""
    spec = {**SPACE, "model": {**SPACE["model"], "nms": {
        "type": "categorical", "choices": ["harness", "model"],
        "when": {"backend": "onnxruntime"}}}}
    s = SearchSpace.from_config(spec, BACKENDS, SCENARIO)
    names = [d.name for d in s.dims]
    assert names.index("nms") == names.index("backend") + 1
    grid = s.grid()
    assert {p.get("nms") for p in grid if p["backend"] == "onnxruntime"} == {"harness", "model"}
    assert all("nms" not in p for p in grid if p["backend"] == "litert")
    point = next(p for p in grid if p.get("nms") == "model")
    assert s.split(point).model["nms"] == "model" and ("nms", "model") in s.accuracy_key(point)
