"""Accuracy belongs to the model and runtime: inherited after an identical spot check,
estimated sequentially until the floor verdict is settled, undecided when it is not.
Through the public paths: ``measure`` (a real LoadGen run), the recorder, the book."""
from __future__ import annotations

import json
import pickle
from dataclasses import replace

import numpy as np
import pytest

from experiments import loadgen_logs, sequential
from tuner.accuracy.plan import AccuracyPlan, Front, Inherit, PairedReference
from tuner.trial import Fidelity, TrialConfig, TrialResult

VARIANT = {"width": 0.25, "resolution": 32, "precision": "fp32"}
SHORT = Fidelity("short", min_duration_ms=300, min_query_count=32, max_duration_ms=5000)


def trial(cache_dir, accuracy: AccuracyPlan, knobs=None) -> TrialConfig:
    return TrialConfig(study="acc", trial=0, platform="test", workload={"name": "digits"},
                       model=dict(VARIANT), backend="onnxruntime",
                       knobs=knobs or {"intra_op_threads": 1}, scenario="SingleStream",
                       fidelity=SHORT, cache_dir=str(cache_dir), accuracy=accuracy)


@pytest.fixture(scope="module")
def full(cache_dir):
    """One whole-set measurement: the source later trials inherit from."""
    import multiprocessing as mp

    from tests.conftest import _measure

    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_measure, (trial(cache_dir, AccuracyPlan(sequential=False)),))


def spot_from(result: TrialResult, count: int = 32) -> dict[str, str]:
    logged = json.loads(result.logs["accuracy/" + loadgen_logs.ACCURACY])
    by_idx = {e["qsl_idx"]: e["data"] for e in logged}
    order = sequential.shuffled_order(len(by_idx))[:count]
    return {str(int(i)): by_idx[int(i)] for i in order}


def test_a_whole_pass_is_measured(full):
    assert full.ok and full.accuracy_source == "measured"
    assert full.accuracy_total == 359 and full.accuracy_low is None


def test_inherited_needs_an_identical_spot_check(measure_fresh, cache_dir, full):
    inherit = Inherit("acc/0", full.accuracy, "top1", spot=spot_from(full))
    # other threads: an output-invariant knob, so the same key
    r = measure_fresh(trial(cache_dir, AccuracyPlan(inherit=inherit),
                            knobs={"intra_op_threads": 2}))
    assert r.ok and r.accuracy_source == "inherited" and r.accuracy_from == "acc/0"
    assert r.accuracy == full.accuracy and r.accuracy_total == 32
    # one response changed: the check fails, the trial measures its own and says so
    bad = dict(inherit.spot)
    first = next(iter(bad))
    bad[first] = np.array([(int.from_bytes(bytes.fromhex(bad[first]), "little") + 1) % 10],
                          np.int32).tobytes().hex()
    r = measure_fresh(trial(cache_dir, AccuracyPlan(inherit=replace(inherit, spot=bad))))
    assert r.ok and r.accuracy_source == "measured" and r.accuracy_total == 359
    assert r.system["spot_check_mismatch"]["differ"] == [int(first)]
    assert "spot check against acc/0 differed on 1 of 32" in r.cause


def test_a_settled_verdict_stops_early(measure_fresh, cache_dir, full):
    # a floor far below the model's accuracy: settled after the first chunk(s)
    r = measure_fresh(trial(cache_dir, AccuracyPlan(sequential=True, floor=0.5,
                                                    confidence=0.99, width=0.0)))
    assert r.ok and r.accuracy_source == "estimated"
    assert r.accuracy_total < 359 and r.accuracy_low > 0.5
    assert r.accuracy_low <= full.accuracy <= r.accuracy_high
    assert "from 64 of 359 samples" in r.logs["accuracy/accuracy.txt"]


def test_an_unsettled_pass_scores_the_whole_set(measure_fresh, cache_dir, full):
    r = measure_fresh(trial(cache_dir, AccuracyPlan(sequential=True, floor=full.accuracy,
                                                    confidence=0.99, width=0.0)))
    assert r.accuracy_source == "measured" and r.accuracy == full.accuracy


def test_a_point_surely_off_the_front_stops_early(measure_fresh, cache_dir, full):
    """No floor verdict, no width: a point of the study's front that is faster and more
    accurate than the interval's high end stops the pass; a slower one does not."""
    fast = Front("latency_ms", maximize=False, points=[[1e-6, 0.9999]])
    r = measure_fresh(trial(cache_dir, AccuracyPlan(sequential=True, width=0.0, front=fast)))
    assert r.ok and r.accuracy_source == "estimated" and r.accuracy_total == 64
    assert r.accuracy_high < 0.9999 and r.accuracy_low <= full.accuracy <= r.accuracy_high
    assert "off the front: latency_ms 1e-06 at 0.99990" in r.logs["accuracy/accuracy.txt"]
    assert "off the study's front" in r.cause
    slow = replace(fast, points=[[1e9, 0.9999]])
    r = measure_fresh(trial(cache_dir, AccuracyPlan(sequential=True, width=0.0, front=slow)))
    assert r.accuracy_source == "measured" and r.accuracy == full.accuracy


def test_the_planner_hands_a_trial_its_studys_front(tmp_path):
    from types import SimpleNamespace

    from tuner.accuracy.planner import AccuracyPlanner

    fidelity = SimpleNamespace(sequential_accuracy=True, share_accuracy=True,
                               accuracy_confidence=0.99, accuracy_width=0.005,
                               sequential_min_samples=2000, spot_check_samples=32)

    def row(trial, latency, acc, low=None, state="complete", study="s"):
        return {"study": study, "trial": trial, "state": state, "fidelity": "short",
                "objective": "latency_ms", "latency_ms": latency, "accuracy": acc,
                "accuracy_low": low}

    planner = AccuracyPlanner(tmp_path, fidelity, [
        row(0, 1.0, 0.80), row(1, 2.0, 0.90), row(2, 3.0, 0.85),  # 2 is dominated by 1
        row(3, 4.0, 0.95, low=0.93),  # an estimate counts at its low end
        row(4, 0.5, 0.99, state="infeasible"), row(5, 0.1, 0.99, study="other")])
    cfg = TrialConfig(study="s", trial=9, platform="p", workload={"name": "digits"},
                      model=dict(VARIANT), backend="onnxruntime", knobs={},
                      scenario="SingleStream")
    plan = planner.plan(cfg, 0.5)
    assert plan.front == Front("latency_ms", False, [[1.0, 0.80], [2.0, 0.90], [4.0, 0.93]])
    other = planner.plan(TrialConfig(**{**vars(cfg), "study": "new", "trial": 10,
                                     "knobs": {"graph_optimization": "basic"}}), 0.5)
    assert isinstance(other, AccuracyPlan) and other.sequential and other.front is None


def test_the_plan_crosses_the_wire_and_older_records_still_load():
    plan = AccuracyPlan(sequential=True, floor=0.7, min_samples=2000,
                        front=Front("qps", True, [[100.0, 0.71]]),
                        reference=PairedReference("s/1", 0.72, {"3": "00ff"}),
                        inherit=Inherit("s/2", 0.71, "top1", 0.70, 0.72, {"5": "0a"}))
    cfg = TrialConfig(study="s", trial=3, platform="p", workload={"name": "digits"},
                      model=dict(VARIANT), backend="onnxruntime", knobs={},
                      scenario="Offline", accuracy=plan)
    # the record's config column is JSON; Ray pickles
    assert TrialConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert pickle.loads(pickle.dumps(cfg)).accuracy == plan
    # a record written before the plan was typed: an untyped dict, "from" for its source
    old = {**cfg.to_dict(), "accuracy": {
        "sequential": True, "floor": 0.7, "confidence": 0.99, "width": 0.01,
        "min_samples": 2000, "front": {"objective": "qps", "maximize": True,
                                       "points": [[100.0, 0.71]]},
        "reference": {"accuracy": 0.72, "responses": {"3": "00ff"}, "from": "s/1"},
        "inherit": {"from": "s/2", "accuracy": 0.71, "metric": "top1", "low": 0.70,
                    "high": 0.72, "spot": {"5": "0a"}}}}
    assert TrialConfig.from_dict(old).accuracy == plan
    assert TrialConfig.from_dict({**old, "accuracy": {}}).accuracy == AccuracyPlan()


def test_an_interval_straddling_the_floor_is_undecided(tmp_path):
    from experiments.records import Records
    from tuner.accuracy.floor import AccuracyFloor
    from tuner.study.outcome import Recorder

    recorder = Recorder(tmp_path, Records(tmp_path), AccuracyFloor(0.9, 0.99))
    cfg = TrialConfig(study="s", trial=1, platform="p", workload={"name": "digits"},
                      model=dict(VARIANT), backend="onnxruntime", knobs={},
                      scenario="SingleStream")
    result = TrialResult(ok=True, valid=True, latency_ms=1.0, accuracy=0.91,
                         accuracy_low=0.88, accuracy_high=0.94, accuracy_source="estimated",
                         accuracy_total=100, accuracy_metric="top1")
    row = recorder.row(cfg, result, "latency_ms", store=False)
    assert row["state"] == "undecided" and "straddles floor 0.9000" in row["cause"]
    assert (row["accuracy_low"], row["accuracy_high"], row["accuracy_samples"]) == (0.88, 0.94, 100)
    below = TrialResult(ok=True, valid=True, latency_ms=1.0, accuracy=0.85,
                        accuracy_low=0.82, accuracy_high=0.89)
    assert recorder.row(cfg, below, "latency_ms", store=False)["state"] == "infeasible"


def test_intervals():
    # Wilson with a finite population: the whole set scored leaves no width
    assert sequential.wilson(300, 359, 359, 0.99).width == 0
    w = sequential.wilson(90, 100, 10_000, 0.99)
    assert w.low < 0.9 < w.high and w.width > 0.1
    # paired: few disagreements with the reference give a far tighter interval
    p = sequential.paired([0.0] * 98 + [-1.0, 1.0], 0.9, 10_000, 0.99)
    assert p.width < w.width / 2 and p.low < 0.9 < p.high
    # half-sampling of a set-level metric agrees with Wilson on a proportion
    x = np.random.default_rng(1).random(800) < 0.8
    h = sequential.half_sample(lambda pos: x[pos].mean(), 800, 50_000, 0.99, draws=60)
    ref = sequential.wilson(int(x.sum()), 800, 50_000, 0.99)
    assert abs(h.width - ref.width) < 0.35 * ref.width
    assert sequential.chunks(359, 64) == [64, 128, 256, 359]
    assert sequential.verdict(sequential.Interval(0.9, 0.85, 0.95, 10), 0.8) == "above"
    assert sequential.verdict(sequential.Interval(0.9, 0.85, 0.95, 10), 0.96) == "below"
    assert sequential.verdict(sequential.Interval(0.9, 0.85, 0.95, 10), 0.9) == "undecided"
    # off the front: beaten only by a point as fast (or faster) and surely more accurate
    i = sequential.Interval(0.9, 0.85, 0.95, 10)
    assert sequential.dominated_by(i, 2.0, [[3.0, 0.99], [2.0, 0.96]], False) == [2.0, 0.96]
    assert sequential.dominated_by(i, 2.0, [[3.0, 0.99], [1.0, 0.95]], False) is None
    assert sequential.dominated_by(i, 100.0, [[120.0, 0.96]], True) == [120.0, 0.96]
    assert sequential.dominated_by(i, None, [[0.0, 1.0]], False) is None


def test_the_key_ignores_output_invariant_knobs():
    from tuner.accuracy.planner import accuracy_key

    def key(backend, knobs):
        return accuracy_key(TrialConfig(study="s", trial=0, platform="a",
                                        workload={"name": "digits"}, model=dict(VARIANT),
                                        backend=backend, knobs=knobs, scenario="Offline"))

    assert key("onnxruntime", {"intra_op_threads": 1}) == key("onnxruntime", {"intra_op_threads": 4})
    assert key("onnxruntime", {"graph_optimization": "basic"}) != \
        key("onnxruntime", {"graph_optimization": "all"})
    assert key("litert", {"num_threads": 1}) != key("onnxruntime", {})
    assert key("litert", {"num_threads": 1, "xnnpack": True}) != \
        key("litert", {"num_threads": 1, "xnnpack": False})
