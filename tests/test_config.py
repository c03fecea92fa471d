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
