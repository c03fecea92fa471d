"""Samplers by name, the front sampler on ordered/conditional spaces, exhaustion without
repeats, and warm start from foreign records."""
from __future__ import annotations

import optuna
import pytest

from search_spaces import SAMPLERS, SearchSpace, make_sampler, plan_warm_start, project
from search_spaces.front_sampler import FrontSampler, front_probability
from search_spaces.samplers import GridOrderSampler, RandomOrderSampler

optuna.logging.set_verbosity(optuna.logging.ERROR)

SPACE = {"model": {"width": {"type": "categorical", "ordered": True,
                             "choices": [1.0, 0.25, 0.5]},
                   "resolution": {"type": "categorical", "ordered": True, "choices": [32, 64]},
                   "precision": {"type": "categorical", "choices": ["fp32", "int8"]}},
         "backends": ["onnxruntime", "litert"]}
BACKENDS = {
    "onnxruntime": {"knobs": {
        "execution_mode": {"type": "categorical", "choices": ["sequential", "parallel"]},
        "inter_op_threads": {"type": "int", "low": 1, "high": 2,
                             "when": {"execution_mode": "parallel"}}}},
    "litert": {"knobs": {"num_threads": {"type": "int", "low": 1, "high": 2}}},
}


def space() -> SearchSpace:
    return SearchSpace.from_config(SPACE, BACKENDS)


def landscape(p: dict) -> list[float]:
    """Latency grows with width x resolution, int8 halves it; accuracy grows with both."""
    lat = p["width"] * p["resolution"] * (0.5 if p["precision"] == "int8" else 1.0)
    lat *= 1.2 if p["backend"] == "onnxruntime" else 1.0
    lat *= 0.9 if p.get("onnxruntime.inter_op_threads") == 2 else 1.0
    acc = 0.5 + 0.3 * p["width"] + 0.002 * p["resolution"] - 0.02 * (p["precision"] == "int8")
    return [lat, acc]


def run(sampler, sp: SearchSpace, trials: int) -> list[dict]:
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    seen = []
    for _ in range(trials):
        trial = study.ask()
        params = sp.suggest(trial)
        seen.append(params)
        study.tell(trial, landscape(params))
    return seen


def test_ordered_flag_sorts_choices_and_int_dims_are_ordered():
    dims = {d.name: d for d in space().dims}
    assert dims["width"].choices == (0.25, 0.5, 1.0) and dims["width"].is_ordered
    assert not dims["precision"].is_ordered
    assert dims["litert.num_threads"].is_ordered


def test_key_is_canonical():
    sp = space()
    a = {"width": 1, "resolution": 32, "precision": "fp32", "backend": "litert",
         "litert.num_threads": 2}
    b = {"litert.num_threads": 2.0, "backend": "litert", "precision": "fp32",
         "resolution": 32.0, "width": 1.0}
    assert sp.key(a) == sp.key(b)
    assert sp.contains(a) and not sp.contains({**a, "width": 0.75})


@pytest.mark.parametrize("kind", ["front", "random", "grid"])
def test_finite_space_exhausted_without_repeats(kind):
    sp = space()
    size = sp.size()  # 3 x 2 x 2 x (ORT: 1 + 2, LiteRT: 2) = 60
    assert size == 60
    seen = run(make_sampler(kind, 0, space=sp), sp, size)
    assert len({sp.key(p) for p in seen}) == size
    assert all(sp.contains(p) for p in seen)


def test_front_sampler_respects_conditional_dims():
    sp = space()
    for p in run(FrontSampler(sp, 1), sp, 25):
        other = "litert" if p["backend"] == "onnxruntime" else "onnxruntime"
        assert not any(k.startswith(other + ".") for k in p)
        assert ("onnxruntime.inter_op_threads" in p) == (
            p.get("onnxruntime.execution_mode") == "parallel")


def test_front_sampler_finds_front_before_random_order():
    sp = space()
    grid = sp.grid()
    values = [landscape(p) for p in grid]
    front = {sp.key(p) for p, v in zip(grid, values) if not any(
        w[0] <= v[0] and w[1] >= v[1] and w != v for w in values)}

    def trials_to_front(sampler) -> int:
        seen, order = set(), run(sampler, sp, len(grid))
        for i, p in enumerate(order):
            seen.add(sp.key(p))
            if front <= seen:
                return i + 1
        return len(grid)

    front_trials = sorted(trials_to_front(FrontSampler(sp, s)) for s in range(3))[1]
    random_trials = sorted(trials_to_front(RandomOrderSampler(sp, s)) for s in range(3))[1]
    assert front_trials < random_trials


def test_a_costly_runtime_gets_fewer_trials_when_cost_aware():
    """Trials told with their device seconds (``duration_s``, as the driver does): LiteRT's
    cost 20x ONNX Runtime's here, so a cost-aware sampler spends fewer of its trials, and
    far less device time, on it (seen: 7 of 36 trials against 21, 169 s against 435 s)."""
    from search_spaces.cost import COST_ATTR, expected_costs

    sp = space()

    def device_time(cost_aware: bool, seed: int) -> tuple[int, float]:
        study = optuna.create_study(directions=["minimize", "maximize"],
                                    sampler=FrontSampler(sp, seed, cost_aware=cost_aware))
        slow, seconds = 0, 0.0
        for _ in range(12):
            trial = study.ask()
            params = sp.suggest(trial)
            cost = 20.0 if params["backend"] == "litert" else 1.0
            slow += cost > 1
            seconds += cost
            trial.set_user_attr(COST_ATTR, cost)
            study.tell(trial, landscape(params))
        return slow, seconds

    aware = [device_time(True, s) for s in range(3)]
    blind = [device_time(False, s) for s in range(3)]
    assert sum(a for a, _ in aware) < sum(b for b, _ in blind)
    assert sum(t for _, t in aware) < 0.7 * sum(t for _, t in blind)
    # the expected cost: the runtime's median duration relative to all trials' median
    lite, ort = {"backend": "litert"}, {"backend": "onnxruntime"}
    costs = expected_costs([lite, ort, {"backend": "tvm"}], [(lite, 20.0), (ort, 1.0), (ort, 1.0)])
    assert list(costs) == [20.0, 1.0, 1.0]  # tvm not tried yet: the median of all
    assert list(expected_costs([lite], [])) == [1.0]


def test_front_probability_counts_domination():
    import numpy as np

    draws = np.array([[[1.0, 1.0], [2.0, 2.0], [0.5, 3.0]]])  # (1 draw, 3 candidates)
    p = front_probability(draws, np.array([[0.9, 1.5]]))  # minimise both
    assert list(p) == [1.0, 0.0, 1.0]


def test_front_probability_matches_the_pairwise_rule():
    """Two objectives take a sorted path; it must agree with the definition (k dominates i
    when no worse in both and better in one), checked pair by pair, with and without
    observed points, and for three objectives."""
    import numpy as np

    rng = np.random.RandomState(3)
    for objectives, n_obs in ((2, 0), (2, 7), (3, 5)):
        draws, observed = rng.randn(20, 15, objectives), rng.randn(n_obs, objectives) + 0.5

        def dominates(a, b):
            return bool((a <= b).all() and (a < b).any())

        expect = np.array([[any(dominates(o, d[i]) for o in observed)
                            or any(dominates(d[k], d[i]) for k in range(len(d)) if k != i)
                            for i in range(d.shape[0])] for d in draws])
        assert np.allclose(front_probability(draws, observed), 1.0 - expect.mean(0))
        assert 0 < front_probability(draws, observed).sum() < 15


def test_sampler_selection_by_name():
    sp = space()
    assert isinstance(make_sampler("tpe", 0, space=sp), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("nsga2", 0, space=sp), optuna.samplers.NSGAIISampler)
    assert isinstance(make_sampler("random", 0, space=sp), RandomOrderSampler)
    assert isinstance(make_sampler("grid", 0, space=sp), GridOrderSampler)
    assert isinstance(make_sampler("front", 0, space=sp), FrontSampler)
    assert set(SAMPLERS) == {"front", "tpe", "nsga2", "random", "grid"}
    with pytest.raises(ValueError, match="study.sampler: unknown sampler 'bogus'"):
        make_sampler("bogus", 0, space=sp)


def test_float_space_falls_back_to_tpe():
    sp = SearchSpace.from_config({"model": {"x": {"type": "float", "low": 0, "high": 1}},
                                  "backends": ["onnxruntime"]}, {})
    assert isinstance(make_sampler("front", 0, space=sp), optuna.samplers.TPESampler)


def foreign_records() -> list[dict]:
    """Another platform's records, spelt as imported ones are (other runtimes, a knob
    this space lacks, a width it lacks, ints as floats)."""
    out = []
    for width in (0.25, 0.35, 0.5, 1.0):
        for res in (32.0, 64.0, 96.0):
            for precision in ("fp32", "int8"):
                p = {"width": width, "resolution": res, "precision": precision,
                     "backend": "litert", "litert.num_threads": 4, "litert.xnnpack": True}
                lat, acc = landscape({**p, "resolution": res})
                out.append({"platform": "elsewhere", "params": p, "latency_ms": lat,
                            "accuracy": acc, "feasible": True})
    out.append({"platform": "elsewhere", "params": {"width": 0.5}, "latency_ms": None,
                "accuracy": None, "feasible": False})
    return out


def test_warm_start_points_lie_inside_target_space():
    sp = space()
    plan = plan_warm_start(foreign_records(), sp, n_enqueue=3)
    assert 1 <= len(plan.enqueue) <= 3
    assert all(sp.contains(p) for p in plan.enqueue), plan.enqueue
    assert len({sp.key(p) for p in plan.enqueue}) == len(plan.enqueue)
    assert any("left out" in n for n in plan.notes)
    # a runtime the space lacks cannot be mapped; a knob it lacks is dropped
    assert project({"width": 0.5, "resolution": 32, "precision": "fp32",
                    "backend": "armnn"}, sp) is None


def test_warm_started_study_measures_enqueued_first_and_never_repeats():
    sp = space()
    plan = plan_warm_start(foreign_records(), sp)
    sampler = make_sampler("front", 0, space=sp, warm_start=plan)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    for p in plan.enqueue:
        study.enqueue_trial(p)
    seen = []
    for _ in range(20):
        trial = study.ask()
        params = sp.suggest(trial)
        seen.append(sp.key(params))
        study.tell(trial, landscape(params))
    assert seen[:len(plan.enqueue)] == [sp.key(p) for p in plan.enqueue]
    assert len(set(seen)) == len(seen)


def test_restricted_space_holds_only_its_points():
    sp = space()
    points = sp.grid()[:7]
    small = sp.restricted(points + points[:2])
    assert small.size() == 7 and small.contains(points[0])
    assert not small.contains(sp.grid()[10])
    seen = run(make_sampler("front", 0, space=small), small, 7)
    assert {small.key(p) for p in seen} == {small.key(p) for p in points}
