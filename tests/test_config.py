"""Hydra composition: typed schema, fail-fast validation naming the key, overrides."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from tests.conftest import ROOT
from tuner.config import ConfigError, register, validate

register()


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_default_space_composes_and_validates():
    cfg = composed("+space=mobilenet")
    validate(cfg)
    assert cfg.scenario.name == "SingleStream"
    assert list(cfg.space.model) == ["width", "resolution", "precision"]
    assert len(cfg.space.model.width.choices) >= 3 and len(cfg.space.model.resolution.choices) >= 3
    assert cfg.backends.onnxruntime.knobs.intra_op_threads.high >= 1


def test_overrides():
    cfg = composed("+space=mobilenet", "study.n_trials=20", "scenario=offline")
    assert cfg.study.n_trials == 20 and cfg.scenario.name == "Offline"
    assert "batch_size" in cfg.scenario.knobs


@pytest.mark.parametrize("override, key", [
    ("study.n_trial=3", "n_trial"),
    ("study.n_trials=abc", "n_trials"),
])
def test_unknown_key_or_wrong_type_fails_naming_key(override, key):
    with pytest.raises(ConfigCompositionException) as info:
        composed("+space=mobilenet", override)
    text = str(info.value) + str(info.value.__cause__)
    assert key in text


def test_typo_in_a_config_file_fails_naming_key(tmp_path):
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    (conf / "scenario" / "typo.yaml").write_text("name: Offline\nbatch_sise: 3\n")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        with pytest.raises(ConfigCompositionException) as info:
            compose("config", overrides=["+space=mobilenet", "scenario=typo"])
    assert "batch_sise" in str(info.value) + str(info.value.__cause__)


@pytest.mark.parametrize("override, key", [
    ("space.model.width.choices=[]", "space.model.width.choices"),
    ("space.backends=[]", "space.backends"),
    ("space.backends=[nosuchruntime]", "nosuchruntime"),
    ("study.n_trials=0", "study.n_trials"),
    ("cluster=ray", "cluster.address"),
])
def test_semantic_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(composed("+space=mobilenet", override))


def test_no_space_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"\+space="):
        validate(composed())


def test_thread_knobs_are_capped_by_the_nodes_cores():
    """A 1-core node searches 1 thread, for every thread knob (inter-op included)."""
    from tuner.fleet.dispatch import NodeInfo
    from tuner.study.plan import make_plans

    cfg = composed("+space=mobilenet", "space.backends=[onnxruntime]", "platform=x8664")
    node = NodeInfo("n1", "x8664", "127.0.0.1", devices=1, runtimes=["onnxruntime"], cores=1)
    (plan,) = make_plans(cfg, ["x8664"], {"x8664": [node]})
    dims = {d.name: d for d in plan.space.dims}
    for knob in ("onnxruntime.intra_op_threads", "onnxruntime.inter_op_threads"):
        assert (dims[knob].low, dims[knob].high) == (1, 1), knob


def test_a_space_dimension_the_workload_does_not_take_is_refused():
    from tuner.config import ParamSpec

    from omegaconf import open_dict

    cfg = composed("+space=mobilenet")
    with open_dict(cfg):
        cfg.space.model["depth"] = ParamSpec(choices=[1])
    with pytest.raises(ConfigError, match="space.model.depth.*digits.*take"):
        validate(cfg)
    cfg = composed("+space=mobilenet", "space.model.width.choices=[0.25,0.3]")
    with pytest.raises(ConfigError, match=r"space.model.width.choices: \[0.3\]"):
        validate(cfg)
