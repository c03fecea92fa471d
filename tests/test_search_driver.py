"""The search as the driver runs it, on real device landscapes (the published v1.0 results,
replayed): a replay study proposes only points the table holds and none twice, and warm
start reads imported records and our own records of other platforms."""
from __future__ import annotations

import json

import optuna
import pytest
from hydra import compose, initialize_config_dir

from experiments import published
from experiments.records import read, write
from tests.conftest import PUBLISHED_V10, ROOT
from tuner.config import register
from tuner.study.driver import Driver

register()
V10 = PUBLISHED_V10


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("published")
    rows, problems = published.import_trees([V10])
    assert not problems
    write(out / "trials.parquet", [r for r in rows if r["scenario"] == "SingleStream"])
    return out


def replay(run_dir, table, platform, *overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "cluster=replay", f"cluster.table={table}", f"cluster.platforms=[{platform}]",
            f"run_dir={run_dir}", "progress=false", "study.accuracy_floor=0",
            "study.name=s", *overrides])
    return Driver(cfg).run()


def test_a_replay_study_proposes_only_table_points_and_none_twice(tmp_path, imported):
    (ps,) = replay(tmp_path, imported, "jetson-xavier", "study.n_trials=40")
    rows = read(tmp_path).to_pylist()
    assert len(rows) == 40 and ps.finished == 40
    assert all(r["fidelity"] == "replay" and r["source"] for r in rows)
    assert not [r for r in rows if (r["cause"] or "").startswith("not in table")]
    assert len({r["params"] for r in rows}) == 40


def test_warm_start_reads_imported_and_own_records(tmp_path, imported, capsys):
    # our own records of the Xavier (a replay run), then a Pi 4 study that learns from them
    replay(tmp_path / "xavier", imported, "jetson-xavier", "study.n_trials=30")
    for source in (imported, tmp_path / "xavier"):
        run = tmp_path / f"pi-from-{source.name}"
        (ps,) = replay(run, imported, "rpi4", "study.n_trials=12",
                       f"study.warm_start=[{source}]")
        said = capsys.readouterr().out
        assert "rpi4: warm start from" in said and "point(s) measured first" in said
        warm = [t for t in ps.study.trials if t.user_attrs.get("warm_start")]
        assert warm, said  # the other platform's front points were measured first
        assert min(t.number for t in warm) == 0
        rows = {r["trial"]: r for r in read(run).to_pylist()}
        for t in warm:  # mapped into this platform's table: answered, not "not in table"
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert not (rows[t.number]["cause"] or "").startswith("not in table")
            assert rows[t.number]["platform"] == "rpi4"
            assert json.loads(rows[t.number]["params"]) == {
                k: v for k, v in t.params.items()}


def test_warm_start_names_a_bad_source(tmp_path, imported):
    from tuner.config import ConfigError

    with pytest.raises(ConfigError, match="study.warm_start"):
        replay(tmp_path, imported, "rpi4", "study.n_trials=2", "study.warm_start=[nosuch]")
