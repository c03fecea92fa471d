"""The task contract: the registry and conf/workload/ agree, every workload declares what a
run needs (no default stands in), and a workload or model that does not is refused by the
config check before any trial, in one line naming the workload and the input."""
from __future__ import annotations

import json

import numpy as np
import pytest

import workloads
from experiments.mlperf import METRIC_OF_KEY
from tests.conftest import ROOT
from tests.test_config import composed
from tuner.config import ConfigError, validate
from workloads.tasks.classification import ClassificationWorkload


def test_the_registry_lists_every_conf_workload_and_no_other():
    assert set(workloads.names()) == {p.stem for p in (ROOT / "conf" / "workload").glob("*.yaml")}
    for name in workloads.names():
        assert workloads.workload_class(name).name == name
    with pytest.raises(KeyError, match="unknown workload 'nosuch'; known: click_logs"):
        workloads.workload_class("nosuch")


@pytest.mark.parametrize("name", workloads.names())
def test_every_workload_declares_its_loadgen_model_inputs_and_metric(name):
    cls = workloads.workload_class(name)
    assert cls.declared_problem() is None
    assert cls.loadgen_model and cls.inputs
    # the packer reads the score's accuracy.txt line back by the metric's key
    assert METRIC_OF_KEY[cls.metric.mlperf_key] == cls.metric.name


def test_input_data_types_come_from_the_declaration_or_the_model_file(cache_dir):
    """measurements.json's input_data_types: no fp32 default for a DLRM or a uint8 SSD."""
    from workloads.base import Variant

    click = workloads.create({"name": "click_logs", "pairs": 4096}, cache_dir=str(cache_dir))
    assert click.weights_description(click.variant(), "onnxruntime")["input_data_types"] == \
        "fp32 dense, int64 sparse"
    digits = workloads.create({"name": "digits"}, cache_dir=str(cache_dir))
    assert digits.weights_description(digits.variant(), "onnxruntime")["input_data_types"] == "fp32"
    coco = workloads.workload_class("coco").__new__(workloads.workload_class("coco"))
    ssd = Variant("ssd_fp32", "fp32", 300, {"path": "ssd.onnx", "input_dtypes": {"image": "uint8"}})
    assert coco.weights_description(ssd, "onnxruntime")["input_data_types"] == "uint8"
    with pytest.raises(ValueError, match="image input may be uint8|float32"):
        coco.input_data_types(Variant("x", "fp32", 300, {}))  # the file must say which


class Forgetful(ClassificationWorkload):
    """A new task of a known kind that forgets its LoadGen model."""

    name = "forgetful"


def test_a_workload_without_a_loadgen_model_is_refused_naming_it(monkeypatch):
    monkeypatch.setattr(workloads, "workload_class", lambda name: Forgetful)
    with pytest.raises(ConfigError) as info:
        validate(composed("+space=mobilenet"))
    message = str(info.value)
    assert message.startswith("workload: forgetful workload: declares no `loadgen_model`")
    assert "\n" not in message
    with pytest.raises(ValueError, match="forgetful workload: declares no `loadgen_model`"):
        workloads.create({"name": "digits"})  # the worker refuses it too


def _onnx(path, inputs):
    """An ONNX file whose inputs are ``inputs`` ((name, TensorProto type, shape)), its one
    output the first input."""
    import onnx
    from onnx import helper

    graph = helper.make_graph([helper.make_node("Identity", [inputs[0][0]], ["out"])], "g",
                              [helper.make_tensor_value_info(*i) for i in inputs],
                              [helper.make_tensor_value_info("out", inputs[0][1], inputs[0][2])])
    onnx.save(helper.make_model(graph), str(path))
    return str(path)


def test_a_dlrm_with_other_inputs_is_refused_before_any_trial(tmp_path):
    from onnx import TensorProto

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "day_23").write_text("0" + "\t1" * 13 + "\ta" * 26 + "\n")
    bad = _onnx(tmp_path / "bad.onnx", [("x", TensorProto.FLOAT, ["N", 13]),
                                         ("ids", TensorProto.INT32, ["N", 26])])
    cfg = composed("+space=criteo", f"workload.dataset_dir={tmp_path / 'data'}",
                   f"workload.models={{dlrm: {bad}}}")
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    assert message.startswith("workload: criteo workload: models.dlrm: bad.onnx has inputs")
    assert "'ids' int32[None, 26]" in message and "sparse int64 [N, 26]" in message
    assert "\n" not in message


def test_the_cli_refuses_it_in_one_line(tmp_path, cache_dir):
    from onnx import TensorProto

    from tests.test_cli import run

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "day_23").write_text("0" + "\t1" * 13 + "\ta" * 26 + "\n")
    bad = _onnx(tmp_path / "bad.onnx", [("x", TensorProto.FLOAT, ["N", 13]),
                                         ("ids", TensorProto.INT32, ["N", 26])])
    proc = run(["-m", "tuner", "+space=criteo", f"workload.dataset_dir={tmp_path / 'data'}",
                f"workload.models={{dlrm: {bad}}}", f"hydra.run.dir={tmp_path / 'run'}"],
               tmp_path, cache_dir, 120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "error: workload: criteo workload: models.dlrm: bad.onnx has inputs 'x' "
        "float32[None, 13], 'ids' int32[None, 26]; the task takes dense float32 [N, 13]; "
        "sparse int64 [N, 26] (no input is its sparse)"]
    assert not (tmp_path / "run" / "trials.parquet").exists()


def test_a_coco_model_that_takes_no_image_is_refused_before_any_trial(tmp_path):
    from onnx import TensorProto

    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": []}))
    flat = _onnx(tmp_path / "flat.onnx", [("pixels", TensorProto.FLOAT, ["N", 900])])
    cfg = composed("+space=coco", f"workload.dataset_dir={tmp_path}",
                   f"workload.models={{ssd: {flat}}}", "space.model.model.choices=[ssd]")
    with pytest.raises(ConfigError, match=r"^workload: coco workload: models.ssd: flat.onnx has "
                                          r"inputs 'pixels' float32\[None, 900\]; the task "
                                          r"takes image uint8\|float32 \[N, \?, \?, \?\]"):
        validate(cfg)


def test_an_imagenet_model_with_an_extra_input_is_refused(tmp_path):
    from onnx import TensorProto

    (tmp_path / "val_map.txt").write_text("a.JPEG 1\n")
    (tmp_path / "a.JPEG").write_bytes(b"")
    two = _onnx(tmp_path / "resnet50.onnx", [("image", TensorProto.FLOAT, ["N", 3, 224, 224]),
                                              ("scale", TensorProto.FLOAT, [1])])
    cfg = composed("+space=imagenet", "workload=imagenet", f"workload.dataset_dir={tmp_path}",
                   f"workload.models={{resnet50: {two}}}", "space.model.model.choices=[resnet50]")
    with pytest.raises(ConfigError, match="imagenet workload: models.resnet50: resnet50.onnx "
                                          "has inputs .*input 'scale' is none of these"):
        validate(cfg)


def test_the_responder_reads_outputs_by_the_runtimes_names(cache_dir):
    """Detection reads boxes and logits by name from the output specs, whatever the order
    a predict returns them in; a model without them is one clear error."""
    from backends.base import TensorSpec

    w = workloads.create({"name": "digit_canvases", "count": 2}, cache_dir=str(cache_dir))
    v = w.variant(width=0.5, resolution=64)
    image = [TensorSpec("image", (1, 1, 64, 64), np.dtype("float32"))]
    named = lambda *n: [TensorSpec(x, (), np.dtype("float32")) for x in n]  # noqa: E731
    with pytest.raises(ValueError, match="no output 'boxes'; its outputs: .'scores', 'deltas'."):
        w.responder(v, lambda feeds: [], image, named("scores", "deltas"), 1)


SYNTHETIC = ("workloads.digits", "workloads.digit_canvases", "workloads.click_logs")


def imported_modules(path) -> set[str]:
    """Every module a file imports, lazily or not (``from a import b``: a and a.b)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("module", ["coco.py", "criteo.py", "imagenet.py", "images.py",
                                    "tasks", "models"])
def test_real_datasets_tasks_and_helpers_do_not_lean_on_the_synthetic_ones(module):
    path = ROOT / "workloads" / module
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    leaning = [f"{f.relative_to(ROOT)} imports {name}" for f in files
               for name in imported_modules(f) if name.startswith(SYNTHETIC)]
    assert not leaning
