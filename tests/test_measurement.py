"""Every figure with its uncertainty, on the real stack: a trial's LoadGen windows (the
worker), racing, the canary and pooled tells (the driver over a local Ray on 127.0.0.1),
ties in pareto.csv, replay with noise, and one-line errors for the new options."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import optuna
import pytest

from experiments import loadgen_logs
from experiments.records import read
from tests.conftest import ROOT
from tests.test_study import config, dispatcher  # noqa: F401 - the module's Ray fixture
from tuner.study.driver import Driver
from tuner.trial import Fidelity, TrialConfig

VARIANT = {"width": 0.25, "resolution": 32, "precision": "fp32"}


def trial(cache_dir, fidelity: Fidelity) -> TrialConfig:
    return TrialConfig(study="noise", trial=0, platform="test", workload={"name": "digits"},
                       model=dict(VARIANT), backend="onnxruntime",
                       knobs={"intra_op_threads": 1}, scenario="SingleStream",
                       fidelity=fidelity, cache_dir=str(cache_dir), run_accuracy=False)


def test_a_trial_measures_in_windows_and_reports_the_median_one(measure_fresh, cache_dir):
    fidelity = Fidelity("short", min_duration_ms=600, min_query_count=32, max_duration_ms=5000,
                        windows=3, max_windows=5, stability=0.10)
    r = measure_fresh(trial(cache_dir, fidelity))
    assert r.ok and r.valid, r.cause
    windows = r.system["windows"]
    assert 3 <= len(windows) <= 5 and r.windows == len(windows)
    figures = [w["figure"] for w in windows]
    assert r.latency_ms == sorted(figures)[(len(figures) - 1) // 2]  # a real window's figure
    # performance/ holds that window's own LoadGen log; every window's is kept
    head = loadgen_logs.performance_metrics(
        loadgen_logs.parse_detail(r.logs["performance/" + loadgen_logs.DETAIL]), "SingleStream")
    assert head.latency_ms == pytest.approx(r.latency_ms)
    for n in range(1, len(windows) + 1):
        assert f"performance_window_{n}/{loadgen_logs.DETAIL}" in r.logs
    # each window ran a share of the duration
    assert "min_duration = 200" in r.logs["user.conf"]
    # how steady the node was, from what Linux shows
    assert 0.0 <= r.system["steadiness"]["other_cpu"] <= 1.0
    assert r.system["steadiness"]["loadavg_1m"] >= 0.0
    # a run that used every window says so in cause exactly when its last three still
    # disagree (the fifth window may be the one that steadied it)
    from experiments import noise

    if len(windows) == 5:
        unsteady = not noise.steady(figures, 0.10)
        assert unsteady == (r.cause or "").startswith("unsteady"), (figures, r.cause)
    else:
        assert not (r.cause or "").startswith("unsteady")


def test_one_window_keeps_the_compliant_layout(measure_fresh, cache_dir):
    fidelity = Fidelity("short", min_duration_ms=300, min_query_count=32, max_duration_ms=5000)
    r = measure_fresh(trial(cache_dir, fidelity))
    assert r.ok and r.valid and r.windows == 1
    assert not any(k.startswith("performance_window") for k in r.logs)
    assert f"performance/{loadgen_logs.DETAIL}" in r.logs


def test_a_study_races_near_the_front_and_tells_optuna_the_pooled_figure(
        tmp_path, cache_dir, dispatcher):  # noqa: F811
    cfg = config(tmp_path, cache_dir, "study.n_trials=5", "fidelity.windows=2", "study.accuracy_floor=0.0",
                 "fidelity.max_windows=2", "fidelity.accuracy_sample_count=null",
                 "measurement.race_budget=0.4", "measurement.canary_every=2",
                 "measurement.racing=true",
                 "space.model.width.choices=[0.25]", "space.model.resolution.choices=[32]",
                 "space.model.precision.choices=[fp32]",
                 "backends.onnxruntime.knobs.graph_optimization.choices=[basic,extended,all]")
    Driver(cfg, dispatcher=dispatcher).run()
    rows = read(tmp_path).to_pylist()
    search = [r for r in rows if r["measured_for"] == "search"]
    again = [r for r in rows if r["measured_for"] != "search"]
    assert len(search) <= 5 and again, [r["measured_for"] for r in rows]
    kinds = {r["measured_for"] for r in again}
    assert kinds <= {"race", "canary", "recheck"} and "canary" in kinds
    assert sum(r["measured_for"] == "race" for r in rows) <= 2  # 0.4 x 5 trials
    by_trial = {r["trial"]: r for r in rows}
    for r in again:  # linked to the first record, same configuration, accuracy inherited
        first = by_trial[r["repeat_of"]]
        assert first["measured_for"] == "search" and first["params"] == r["params"]
        assert r["accuracy_source"] == "inherited" and r["accuracy"] == first["accuracy"]
        assert r["accuracy_from"] == f"{first['study']}/{first['trial']}"
    for r in rows:
        if r["state"] != "failed":
            assert r["latency_low_ms"] < r["latency_ms"] < r["latency_high_ms"]
            assert r["windows"] == 2
    # Optuna was told the configuration's pooled figure for each re-measurement
    from tuner.study.journal import open_journal

    study = optuna.load_study(study_name=rows[0]["study"], storage=open_journal(tmp_path))
    told = {t.number: t.values[0] for t in study.trials if t.values}
    for r in again:
        same = sorted(x["latency_ms"] for x in rows if x["params"] == r["params"]
                      and x["trial"] <= r["trial"] and x["latency_ms"])
        assert told[r["trial"]] in same or told[r["trial"]] == pytest.approx(
            (same[len(same) // 2 - 1] + same[len(same) // 2]) / 2)
    # the front states its ties; every tie names a configuration of the study
    from experiments.report import render

    render(tmp_path)
    with open(tmp_path / "pareto.csv") as fh:
        front = list(csv.DictReader(fh))
    assert front
    for point in front:
        for tie in json.loads(point["equivalent"]):
            assert set(tie) == {"backend", "model", "params"}
            assert json.dumps(tie["params"], sort_keys=True) in {r["params"] for r in rows}
    assert "90% interval" in (tmp_path / "pareto.html").read_text()


def noisy_replay(tmp_path, noise: float):
    """A replay study over a device table of 12 points, two nearly as fast as each other."""
    from hydra import compose, initialize_config_dir

    from experiments.records import FILENAME, write
    from tests.test_replay import _row

    rows, n = [], 0
    for width in (0.25, 0.5, 0.75):
        for backend in ("litert", "onnxruntime"):
            for threads in (1, 2):
                params = {"family": "mobilenet-v1", "width": width, "backend": backend,
                          f"{backend}.num_threads": threads}
                rows.append(_row(n, params, latency_ms=width * 10 * (1 + 0.01 * threads),
                                 accuracy=0.5 + width / 2))
                n += 1
    write(tmp_path / "table" / FILENAME, rows)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "cluster=replay", f"cluster.table={tmp_path / 'table'}",
            f"cluster.replay_noise={noise}", "study.n_trials=10", "study.accuracy_floor=0.0",
            f"run_dir={tmp_path / 'run'}", "progress=false", "measurement.race_budget=0.5"])
    Driver(cfg).run()
    return read(tmp_path / "run").to_pylist()


def test_replay_with_noise_answers_each_repeat_anew_and_races(tmp_path):
    rows = noisy_replay(tmp_path, 0.05)
    noisy = [json.loads(r["system"])["replay_noise"] for r in rows if r["state"] != "failed"]
    assert noisy and all(n["log_sd"] == 0.05 for n in noisy)
    assert len({n["factor"] for n in noisy}) == len(noisy)  # each answer drawn anew
    assert any(r["measured_for"] == "race" for r in rows)
    assert {r["fidelity"] for r in rows} == {"replay"}


def test_replay_without_noise_never_races(tmp_path):
    rows = noisy_replay(tmp_path, 0.0)
    assert {r["measured_for"] for r in rows} == {"search"}


@pytest.mark.parametrize("override, key", [
    ("measurement.race_budget=2", "measurement.race_budget"),
    ("fidelity.windows=0", "fidelity.windows"),
    ("cluster.replay_noise=-1", "cluster.replay_noise"),
    ("measurement.canary_every=-3", "measurement.canary_every"),
])
def test_a_bad_noise_option_is_one_line_naming_its_key(tmp_path, override, key):
    done = subprocess.run([sys.executable, "-m", "tuner", "+space=mobilenet", override,
                           f"hydra.run.dir={tmp_path}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and key in lines[0], done.stderr
    assert "Traceback" not in done.stderr
