"""The search knows which objective depends on what: accuracy on the accuracy key only
(model dims, runtime, output-changing knobs), known accuracies certain, shared across a
fleet's studies and taken from a warm start; no import cycle among the samplers."""
from __future__ import annotations

import ast
from pathlib import Path

import optuna
import pytest

import search_spaces
from search_spaces import AccuracyBook, SearchSpace, make_sampler, plan_warm_start

optuna.logging.set_verbosity(optuna.logging.ERROR)

SPACE = {"model": {"width": {"type": "categorical", "ordered": True,
                             "choices": [0.25, 0.5, 0.75, 1.0]}},
         "backends": ["onnxruntime", "litert"]}
BACKENDS = {
    "onnxruntime": {"knobs": {
        "intra_op_threads": {"type": "int", "low": 1, "high": 3},
        "graph_optimization_level": {"type": "categorical", "choices": ["basic", "all"]}}},
    "litert": {"knobs": {"num_threads": {"type": "int", "low": 1, "high": 3},
                         "xnnpack": {"type": "categorical", "choices": [True, False]}}},
}
CHANGING = {"onnxruntime": ["graph_optimization_level"], "litert": ["xnnpack"]}
SCENARIO = {"knobs": {"batch_size": {"type": "int", "low": 1, "high": 2}}}


def space() -> SearchSpace:
    return SearchSpace.from_config(SPACE, BACKENDS, SCENARIO, output_changing=CHANGING)


def accuracy(p: dict) -> float:
    return 0.5 + 0.3 * p["width"] - 0.01 * (p["backend"] == "litert")


def latency(p: dict) -> float:
    threads = p.get("onnxruntime.intra_op_threads", p.get("litert.num_threads", 1))
    return 10.0 * p["width"] / threads * (1.1 if p["backend"] == "litert" else 1.0)


def tell(study: optuna.Study, params: dict, floor: float | None = None) -> None:
    study.enqueue_trial(params)
    trial = study.ask()
    p = space().suggest(trial)
    if floor is not None:
        trial.set_constraint("accuracy_floor", floor - accuracy(p))
    study.tell(trial, [latency(p), accuracy(p)])


def ort(width: float, threads: int = 1, level: str = "all", batch: int = 1) -> dict:
    return {"width": width, "backend": "onnxruntime", "onnxruntime.intra_op_threads": threads,
            "onnxruntime.graph_optimization_level": level, "batch_size": batch}


def test_accuracy_dims_follow_roles_and_declared_knobs():
    dims = {d.name: d for d in space().dims}
    assert dims["width"].affects_accuracy and dims["backend"].affects_accuracy
    assert dims["onnxruntime.graph_optimization_level"].affects_accuracy
    assert dims["litert.xnnpack"].affects_accuracy
    assert not dims["onnxruntime.intra_op_threads"].affects_accuracy
    assert not dims["litert.num_threads"].affects_accuracy
    assert not dims["batch_size"].affects_accuracy
    # a runtime's config may declare it, and a knob's own spec wins
    own = {"litert": {"output_changing": ["xnnpack"], "knobs": {
        **BACKENDS["litert"]["knobs"],
        "num_threads": {"type": "int", "low": 1, "high": 3, "affects_accuracy": True}}}}
    dims = {d.name: d for d in SearchSpace.from_config(
        {**SPACE, "backends": ["litert"]}, own).dims}
    assert dims["litert.xnnpack"].affects_accuracy and dims["litert.num_threads"].affects_accuracy


def test_thread_settings_share_an_accuracy_key_output_changing_knobs_do_not():
    sp = space()
    assert sp.accuracy_key(ort(0.5, 1)) == sp.accuracy_key(ort(0.5, 3, batch=2))
    assert sp.accuracy_key(ort(0.5, level="basic")) != sp.accuracy_key(ort(0.5, level="all"))
    assert sp.accuracy_key(ort(0.5)) != sp.accuracy_key(ort(0.75))
    litert = {"width": 0.5, "backend": "litert", "litert.num_threads": 2,
              "litert.xnnpack": True, "batch_size": 1}
    assert sp.accuracy_key(litert) != sp.accuracy_key(ort(0.5))


def _study(**options) -> tuple[optuna.Study, object]:
    sampler = make_sampler("front", 0, space=space(), **options)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    study.set_metric_names(["latency_ms", "accuracy"])
    return study, sampler


def test_measured_accuracy_is_shared_by_thread_settings_and_certain():
    study, sampler = _study()
    for params in (ort(0.25), ort(1.0), ort(0.5, 2), ort(0.75, level="basic")):
        tell(study, params)
    rows = {space().key(r["params"]): r for r in sampler.explain(study)}
    same = rows[space().key(ort(0.5, 3, batch=2))]  # another thread count and batch size
    assert same["accuracy_sd"] < 1e-12 and same["accuracy"] == pytest.approx(accuracy(ort(0.5)))
    unknown = rows[space().key(ort(0.75, level="all"))]  # another graph optimisation level
    assert unknown["accuracy_sd"] > 0.0


def test_known_accuracy_is_certain_and_settles_the_floor():
    book = AccuracyBook()
    book.add_point(space(), ort(0.5, level="basic"), 0.99)   # e.g. from another platform
    book.add_point(space(), ort(0.75, level="basic"), 0.40)  # below the floor
    study, sampler = _study(known_accuracy=book)
    for params in (ort(0.25), ort(1.0), ort(0.5, 2)):
        tell(study, params, floor=0.6)
    rows = {space().key(r["params"]): r for r in sampler.explain(study)}
    high = rows[space().key(ort(0.5, 3, level="basic"))]
    low = rows[space().key(ort(0.75, 2, level="basic"))]
    assert high["accuracy_sd"] < 1e-12 and high["accuracy"] == pytest.approx(0.99)
    assert high["feasible"] == 1.0 and low["feasible"] == 0.0
    # the study's own measurements went into the shared book, for the fleet's others
    assert book[space().accuracy_key(ort(1.0))] == pytest.approx(accuracy(ort(1.0)))
    assert len(book) == 2 + 3


def test_a_provider_is_asked_at_every_ask():
    asked = []

    def provider():
        asked.append(1)
        return {space().accuracy_key(ort(0.5)): 0.9}

    study, sampler = _study(known_accuracy=provider)
    for params in (ort(0.25), ort(1.0)):
        tell(study, params)
    rows = {space().key(r["params"]): r for r in sampler.explain(study)}
    assert asked and rows[space().key(ort(0.5, 2))]["accuracy"] == pytest.approx(0.9)


def test_warm_start_takes_other_platforms_accuracies_as_known_not_their_latencies():
    others = [{"platform": "rpi4", "params": p, "latency_ms": 100 * latency(p),
               "accuracy": accuracy(p)} for p in (ort(0.25, 3), ort(0.5, 2), ort(1.0, 1))]
    plan = plan_warm_start(others, space())
    assert plan.known_accuracy[space().accuracy_key(ort(0.5))] == accuracy(ort(0.5))
    study, sampler = _study(warm_start=plan)
    for params in (ort(0.25), ort(0.75)):
        tell(study, params)
    rows = {space().key(r["params"]): r for r in sampler.explain(study)}
    row = rows[space().key(ort(1.0, 2))]  # never measured here: known from rpi4
    assert row["accuracy_sd"] < 1e-12 and row["accuracy"] == pytest.approx(accuracy(ort(1.0)))
    # their latencies are a prior, not this platform's measurements: nothing is measured
    # here but the two trials told, and the point measured on rpi4 is still proposed
    assert len(study.trials) == 2 and space().key(ort(1.0, 1)) in rows


def test_a_prior_figure_is_replaced_by_the_first_measurement():
    book = AccuracyBook()
    key = space().accuracy_key(ort(0.5))
    book.merge({key: 0.90}, prior=True, source="shipped")
    book.merge({key: 0.10})  # a figure held already wins
    assert book[key] == 0.90 and book.source(key) == "shipped"
    book.add(key, 0.80, "fleet#3")  # measured: replaces the prior, not averaged with it
    book.add(key, 0.84)
    assert book[key] == pytest.approx(0.82) and book.source(key) == "fleet#3"


def test_known_accuracies_shorten_the_spread_out_start():
    """With accuracies known from elsewhere, the sampler stops spreading points after two
    trials (where they are below the floor is already known); without, after four."""
    def spreading_after_two(known) -> bool:
        study, sampler = _study(known_accuracy=known)
        for params in (ort(0.25), ort(1.0)):
            tell(study, params, floor=0.6)
        return sampler.spreading(study)

    book = AccuracyBook()
    book.merge({space().accuracy_key(ort(0.75, level="basic")): 0.4}, prior=True)
    assert spreading_after_two(None) and not spreading_after_two(book)


def test_no_import_cycle_among_search_spaces_modules():
    """Every import between search_spaces modules (lazy ones included) goes one way."""
    root = Path(search_spaces.__file__).parent
    graph = {}
    for path in root.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("search_spaces."):
                deps.add(node.module.split(".")[1])
        graph[path.stem] = deps - {path.stem}
    graph.pop("__init__")

    def reaches(start, goal, seen=()):
        return any(d == goal or (d not in seen and reaches(d, goal, (*seen, d)))
                   for d in graph.get(start, ()))

    assert not [m for m in graph if reaches(m, m)]
    assert "samplers" not in graph["front_sampler"] and "front_sampler" in graph["samplers"]
