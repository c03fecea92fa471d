"""How sure a figure is (experiments.noise), drift seen by a canary (experiments.drift) and a
front that states its ties (experiments.ties), on record rows shaped as the driver writes
them."""
from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from experiments import drift, noise, ties

T0 = dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc)


def row(trial, latency, backend="onnxruntime", width=0.5, node="n1", measured_for="search",
        repeat_of=None, accuracy=0.99, state="complete", cause=None, at=None, windows_sd=0.0,
        **params):
    return {"study": "s.x8664", "trial": trial, "fidelity": "short", "state": state,
            "backend": backend, "model": f"w{width}", "node": node, "objective": "latency_ms",
            "params": json.dumps({"backend": backend, "width": width, **params}, sort_keys=True),
            "latency_ms": latency, "qps": None, "accuracy": accuracy, "accuracy_low": None,
            "accuracy_high": None, "measured_for": measured_for, "repeat_of": repeat_of,
            "cause": cause, "windows": 3, "valid": True,
            "started_at": T0 + dt.timedelta(seconds=10 * (trial if at is None else at)),
            "system": json.dumps({"windows_log_sd": windows_sd})}


def test_a_prediction_interval_widens_with_noise_and_narrows_with_repeats():
    one = noise.prediction(1.0, 0.05)
    many = noise.prediction(1.0, 0.05, n=8)
    assert one[0] < 1.0 < one[1]
    # 90%, sqrt(2): a later measurement of the same spread
    assert math.log(one[1]) == pytest.approx(noise.Z90 * 0.05 * math.sqrt(2))
    assert many[1] - many[0] < one[1] - one[0]
    # a trial's own windows widen it when they disagree (runs apart differ 3x as much)
    assert noise.record_sigma(0.3, 3, 0.05) == pytest.approx(0.3 * noise.RUN_TO_RUN)
    assert noise.record_sigma(0.01, 3, 0.05) == 0.05
    assert noise.record_sigma(0.0, 1, 0.05) == 0.05  # one window: the node's alone


def test_the_headline_window_is_the_median_one_and_steadiness_is_perf_analyzers_rule():
    assert noise.median_window([3.0, 1.0, 2.0]) == 2
    assert noise.median_window([4.0, 1.0, 3.0, 2.0]) == 3  # the lower of an even count
    assert noise.steady([1.0, 1.05, 1.02], 0.10)
    assert not noise.steady([1.0, 1.3, 1.02], 0.10)
    assert noise.steady([5.0, 1.0, 1.05, 1.02], 0.10)  # the last three count


def test_pooling_takes_the_median_and_ties_only_what_the_intervals_cannot_separate():
    rows = [row(0, 1.00), row(1, 1.02, backend="litert"), row(2, 1.50, width=0.75),
            row(3, 1.01, measured_for="race", repeat_of=0),
            row(4, 0.99, backend="litert", measured_for="race", repeat_of=1)]
    pooled = {p.row["trial"]: p for p in noise.pool(rows, "latency_ms")}
    assert set(pooled) == {0, 1, 2}
    assert pooled[0].n == 2 and pooled[0].row["latency_ms"] == pytest.approx(1.005)
    assert pooled[0].row["latency_low_ms"] < 1.005 < pooled[0].row["latency_high_ms"]
    assert not noise.separated(pooled[0], pooled[1])  # 2% apart, 5% noise
    assert noise.separated(pooled[0], pooled[2])  # 50% apart
    front = ties.front(rows, "latency_ms")
    assert len(front) == 1
    equivalent = json.loads(front[0]["equivalent"])
    assert [(e["backend"], e["params"]["width"]) for e in equivalent] == [
        ("litert" if front[0]["backend"] == "onnxruntime" else "onnxruntime", 0.5)]
    assert "onnxruntime or litert" in ties.tie_text(front[0]) \
        or "litert or onnxruntime" in ties.tie_text(front[0])


def test_a_tie_needs_the_same_accuracy_too():
    rows = [row(0, 1.00), row(1, 1.01, backend="litert", accuracy=0.97)]
    front = ties.front(rows, "latency_ms")
    assert [json.loads(p["equivalent"]) for p in front] == [[]]


def test_repeats_that_agree_can_be_shown_equivalent_within_a_margin():
    same = [row(i, 1.0 + 0.001 * (i % 2), backend="ab"[i % 2], measured_for="race",
                repeat_of=i % 2) for i in range(16)]
    a, b = noise.pool(same, "latency_ms", prior=0.01)
    assert not noise.separated(a, b)
    assert noise.within_margin(a, b, margin=0.03)
    assert not noise.within_margin(a, b, margin=0.0)


def test_a_canary_beyond_its_noise_flags_the_window_it_closes_and_rechecks_clear_it():
    rows = [row(0, 1.00), row(1, 2.0, width=0.75), row(2, 1.01, measured_for="canary",
                                                     repeat_of=0)]
    assert drift.verdict(rows, "s.x8664", "n1", 0, 1.02, "latency_ms", 0.05) is None
    why = drift.verdict(rows, "s.x8664", "n1", 0, 1.6, "latency_ms", 0.05)
    assert why.startswith(drift.DRIFT) and "+59%" in why and "n1" in why
    # trials 3-4 ran under a busy neighbour; canary 5 caught it, canary 7 is steady again
    rows += [row(3, 1.9, width=0.25), row(4, 3.0, width=1.0),
             row(5, 1.6, measured_for="canary", repeat_of=0, cause=why),
             row(6, 1.5, width=0.3, node="n2"),  # another node: not a suspect
             row(7, 1.0, measured_for="canary", repeat_of=0)]
    bad = drift.suspects(rows)
    assert {t for _, t, _ in bad} == {3, 4, 5}
    pooled = {p.row["trial"]: p for p in ties.pooled(rows, "latency_ms")}
    assert pooled[3].flagged and pooled[4].flagged and not pooled[1].flagged
    # re-measured once steady: the suspect figure no longer counts
    rows.append(row(8, 1.2, width=0.25, measured_for="recheck", repeat_of=3))
    pooled = {p.row["trial"]: p for p in ties.pooled(rows, "latency_ms")}
    assert not pooled[3].flagged and pooled[3].row["latency_ms"] == pytest.approx(1.2)
    assert [e["node"] for e in drift.events(rows)] == ["n1"]


def test_a_drift_still_open_makes_everything_since_the_last_steady_canary_suspect():
    why = "drift: canary 2 ms against 1 ms"
    rows = [row(0, 1.0), row(1, 1.0, measured_for="canary", repeat_of=0), row(2, 1.1, width=0.75),
            row(3, 2.0, measured_for="canary", repeat_of=0, cause=why), row(4, 2.2, width=0.25)]
    assert {t for _, t, _ in drift.suspects(rows)} == {2, 3, 4}


def test_a_promoted_figure_is_checked_against_its_short_interval():
    rows = [row(0, 1.0), row(1, 1.01, measured_for="race", repeat_of=0)]
    for r in rows:
        r["scenario"] = "SingleStream"
    inside = {**rows[0], "fidelity": "compliant", "latency_ms": 1.03}
    outside = {**rows[0], "fidelity": "compliant", "latency_ms": 2.0}
    assert noise.within_short_interval(rows, inside, "latency_ms") is True
    assert noise.within_short_interval(rows, outside, "latency_ms") is False
    assert noise.within_short_interval([], inside, "latency_ms") is None


def test_a_canary_that_ends_invalid_is_a_drift():
    why = drift.invalid("n1", "LoadGen INVALID: The test exited early")
    rows = [row(0, 1.0), row(1, 1.0, measured_for="canary", repeat_of=0),
            row(2, 9.0, width=0.75), row(3, None, measured_for="canary", repeat_of=0,
                                          state="infeasible", cause=why)]
    assert drift.drifted(rows[-1]) and "n1" in why
    assert {t for _, t, _ in drift.suspects(rows)} == {2, 3}
