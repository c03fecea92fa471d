"""Replay: trials answered from a table of records (ours or imported), no device.

Unit tests of ``ReplayDispatcher`` on a small table, then a 40-trial replay study through
the public driver (``tuner.study.driver.run``, a Hydra-composed config) on the imported Xavier
results in tests/data/published."""
from __future__ import annotations

import json

import optuna
import pytest
from hydra import compose, initialize_config_dir

from experiments.records import FILENAME, read, write
from search_spaces import SearchSpace
from tests.conftest import PUBLISHED_V10, ROOT
from tuner.config import ConfigError, register
from tuner.fleet.dispatch import DispatchError
from tuner.fleet.replay import NOT_IN_TABLE, ReplayDispatcher
from tuner.trial import TrialConfig

register()
V10 = PUBLISHED_V10


def _row(trial, params, **kw):
    base = {"study": "mine.rpi4", "trial": trial, "state": "complete", "fidelity": "short",
            "platform": "rpi4", "node": "n1", "backend": params["backend"], "model": "m",
            "scenario": "SingleStream", "objective": "latency_ms", "params": json.dumps(params),
            "latency_ms": 5.0 + trial, "p90_latency_ms": 5.0 + trial, "accuracy": 0.7,
            "valid": True, "log_dir": "trials/x", "system": json.dumps({"precision": "fp32"}),
            "config": json.dumps({"model": {k: v for k, v in params.items()
                                            if k in ("family", "width", "variant")}})}
    return {**base, **kw}


@pytest.fixture
def table(tmp_path):
    rows = [
        _row(0, {"family": "mobilenet-v1", "width": 0.5, "backend": "litert",
                 "litert.num_threads": 1}),
        _row(1, {"family": "mobilenet-v1", "width": 1, "backend": "litert",
                 "litert.num_threads": 4}),
        _row(2, {"family": "efficientnet-lite", "variant": "lite0", "backend": "onnxruntime",
                 "onnxruntime.intra_op_threads": 2}),
        # a promotion re-measurement is not what the search saw: not replayed
        _row(1, {"family": "mobilenet-v1", "width": 1, "backend": "litert",
                 "litert.num_threads": 4}, fidelity="compliant", latency_ms=99.0),
        _row(0, {"family": "mobilenet-v1", "width": 0.5, "backend": "litert",
                 "litert.num_threads": 1}, platform="milan", study="mine.milan"),
    ]
    write(tmp_path / FILENAME, rows)
    return tmp_path


def _tcfg(params, platform="rpi4", scenario="SingleStream"):
    return TrialConfig(study="s.rpi4", trial=7, platform=platform, workload={"name": "digits"},
                       model={}, backend=params["backend"], knobs={}, scenario=scenario,
                       params=params)


def test_space_from_the_table(table):
    space = ReplayDispatcher(table, platform="rpi4").space_config()
    assert space["backends"] == ["litert", "onnxruntime"]
    assert list(space["model"]) == ["family", "variant", "width"]  # family first
    width = {k: v for k, v in space["model"]["width"].items() if k != "ordered"}
    assert width == {"type": "categorical", "choices": [0.5, 1],
                     "when": {"family": ["mobilenet-v1"]}}
    assert space["model"]["variant"]["when"] == {"family": ["efficientnet-lite"]}
    knobs = {rt: {k: v["choices"] for k, v in ks.items()} for rt, ks in space["knobs"].items()}
    assert knobs == {"litert": {"num_threads": [1, 4]}, "onnxruntime": {"intra_op_threads": [2]}}
    # the space the driver builds from it reaches every point of the table
    built = SearchSpace.from_config(space, {rt: {"knobs": k} for rt, k in space["knobs"].items()})
    d = ReplayDispatcher(table, platform="rpi4")
    answers = [d.answer(_tcfg(p)) for p in built.grid()]
    assert sum(a.valid for a in answers) == 3


def test_answers_found_and_missing_points(table):
    d = ReplayDispatcher(table)
    assert sorted(d.platforms()) == ["milan", "rpi4"]
    assert d.check(["rpi4"], ["litert"]) == {"rpi4": 1}
    with pytest.raises(DispatchError, match="no records of platform 'jetson-nano'"):
        d.check(["jetson-nano"], ["litert"])
    found = {"family": "mobilenet-v1", "width": 1.0, "backend": "litert", "litert.num_threads": 4}
    missing = {**found, "litert.num_threads": 2}
    refs = [d.submit(_tcfg(found), 10), d.submit(_tcfg(missing), 10),
            d.submit(_tcfg(found, scenario="Offline"), 10)]
    assert d.wait(refs, 0.0) == refs
    hit, miss, other_scenario = (d.result(r) for r in refs)
    assert (hit.ok, hit.valid, hit.fidelity, hit.latency_ms) == (True, True, "replay", 6.0)
    source = json.loads(hit.source)
    assert (source["study"], source["trial"], source["fidelity"]) == ("mine.rpi4", 1, "short")
    assert source["table"].endswith(FILENAME)
    for result in (miss, other_scenario):
        assert (result.ok, result.valid, result.fidelity) == (True, False, "replay")
        assert result.cause.startswith(NOT_IN_TABLE)
    ref = d.submit(_tcfg(found), 10)
    d.cancel(ref)
    assert isinstance(d.result(ref), str)
    d.shutdown()


def test_empty_table_is_an_error(table):
    with pytest.raises(DispatchError, match="no records of platform 'x'"):
        ReplayDispatcher(table, platform="x")
    with pytest.raises(ConfigError, match="cluster.table: no trial records at"):
        ReplayDispatcher(table / "nowhere")


@pytest.mark.slow  # ~5 s: imports the 752 published results, then 40 replayed trials
def test_replay_study_of_40_trials_on_the_published_xavier_table(tmp_path):
    from experiments.published import write_run
    from tuner.study.driver import run

    imported = tmp_path / "published"
    write_run([V10], imported)
    run_dir = tmp_path / "replay"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "cluster=replay", f"cluster.table={imported}", "cluster.platforms=[jetson-xavier]",
            "study.n_trials=40", "study.accuracy_floor=0.0", f"run_dir={run_dir}",
            "progress=false"])
    run(cfg)
    rows = read(run_dir).to_pylist()
    assert len(rows) == 40
    assert {r["fidelity"] for r in rows} == {"replay"}
    assert {r["platform"] for r in rows} == {"jetson-xavier"}
    found = [r for r in rows if r["state"] == "complete"]
    assert found and all(json.loads(r["source"])["study"] ==
                         "published.jetson-xavier.singlestream" for r in found)
    assert all(r["cause"].startswith(NOT_IN_TABLE) for r in rows if r["latency_ms"] is None)
    assert (run_dir / "pareto.html").is_file() and (run_dir / "pareto.png").is_file()
    # a replayed answer costs no device time: the cost-aware ranking sees none
    from tuner.study.journal import open_journal

    study = optuna.load_study(study_name="mobilenet.jetson-xavier", storage=open_journal(run_dir))
    assert len(study.trials) >= 40 and not any("duration_s" in t.user_attrs for t in study.trials)


def test_the_command_line_sets_a_run_up_once(table, tmp_path, monkeypatch, capsys):
    """Validation, the floor and the replayed table's dispatcher: once per run, the
    command line's set-up handed to the driver (each was done twice)."""
    import tuner.fleet.replay as replay
    import tuner.study.run_setup as run_setup
    from tuner.__main__ import start

    calls = {"validate": 0, "fixed_floor": 0, "table": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(run_setup, "validate", counted("validate", run_setup.validate))
    monkeypatch.setattr(run_setup, "fixed_floor", counted("fixed_floor", run_setup.fixed_floor))
    monkeypatch.setattr(replay.ReplayDispatcher, "__init__",
                        counted("table", replay.ReplayDispatcher.__init__))
    run_dir = tmp_path / "run"
    start(["cluster=replay", f"cluster.table={table}", "cluster.platforms=[rpi4]",
           "study.n_trials=2", "study.accuracy_floor=0.0", f"run_dir={run_dir}",
           "progress=false"], show=False, print_cfg=None)
    assert len(read(run_dir).to_pylist()) == 2
    assert calls == {"validate": 1, "fixed_floor": 1, "table": 1}
