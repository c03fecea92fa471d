"""Published MLPerf results as records: the real v1.0 excerpts in tests/data/published, a
pre-MLLOG (v0.7-style) tree, a tree with broken results, the CLI, the compare report,
HTML escaping, and that published/replayed rows are never promoted or packed."""
from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from experiments import published
from experiments.__main__ import main as cli
from experiments.published_names import parse_model, platform_of, runtime_of
from experiments.records import FILENAME, read, write
from tests.conftest import PUBLISHED_V10, PUBLISHED_V10_TASKS

V10, V10_TASKS = PUBLISHED_V10, PUBLISHED_V10_TASKS


@pytest.fixture(scope="module")
def v10():
    rows, problems = published.import_trees([V10])
    return rows, problems


# --------------------------------------------------------------------------- the v1.0 excerpt

def test_v10_excerpt_imports_every_result(v10):
    rows, problems = v10
    scenario_dirs = [p for p in V10.glob("open/*/results/*/*/*") if p.is_dir()]
    assert problems == []
    assert len(rows) == len(scenario_dirs) == 752  # 4 systems x 94 models x 2 scenarios
    assert {r["platform"] for r in rows} == {"rpi4", "jetson-xavier"}
    assert {r["backend"] for r in rows} == {"tflite", "armnn"}
    assert Counter(r["study"] for r in rows) == {
        f"published.{p}.{s}": 188 for p in ("rpi4", "jetson-xavier")
        for s in ("singlestream", "offline")}
    assert all(r["fidelity"] == "published" and r["source"] for r in rows)
    facts = json.loads(rows[0]["system"])
    assert (facts["round"], facts["division"], facts["submitter"]) == ("v1.0", "open", "Krai")
    assert facts["system_json"]["framework"]


def test_v10_figures_equal_the_summaries_and_accuracy_txt(v10):
    rows, _ = v10
    for r in rows:
        sdir = Path(r["source"])
        summary = (sdir / "performance/run_1/mlperf_log_summary.txt").read_text()
        p90 = int(re.search(r"^90th percentile latency \(ns\)\s*:\s*(\d+)", summary, re.M)[1])
        assert r["p90_latency_ms"] == p90 / 1e6
        if r["scenario"] == "SingleStream":
            assert r["latency_ms"] == p90 / 1e6  # v1.0's SingleStream headline
        else:  # Offline inferred from the SingleStream run, as the checker does
            qps = float(re.search(r"^QPS w/o loadgen overhead\s*:\s*(\S+)", summary, re.M)[1])
            assert r["qps"] == pytest.approx(qps, abs=0.01)
        acc = re.match(r"accuracy=([\d.]+)%", (sdir / "accuracy/accuracy.txt").read_text())
        assert r["accuracy"] == pytest.approx(float(acc[1]) / 100, abs=1e-9)
        assert r["valid"] == ("Result is : VALID" in summary)


def test_v10_model_structure_parsed(v10):
    rows, _ = v10
    by_model = {r["model"]: json.loads(r["params"]) for r in rows}
    assert by_model["mobilenet-v1-0.25-128-quantized"] == {
        "family": "mobilenet-v1", "width": 0.25, "resolution": 128, "precision": "int8",
        "backend": by_model["mobilenet-v1-0.25-128-quantized"]["backend"]}
    assert by_model["mobilenet-v2-1.4-224-non-quantized"]["precision"] == "fp32"
    assert all(p.get("family") for p in by_model.values())


def test_model_and_system_names():
    assert parse_model("mobilenet-v3-large_224_1.0_uint8") == {
        "family": "mobilenet-v3", "variant": "large", "width": 1.0, "resolution": 224,
        "precision": "int8"}
    assert parse_model("efficientnet-lite3-non-quantized") == {
        "family": "efficientnet-lite", "variant": "lite3", "precision": "fp32"}
    assert parse_model("my-own-net-v7") == {}  # nothing guessed
    pi = {"system_name": "Raspberry Pi 4", "host_processor_model_name": "Arm Cortex-A72 MP4",
          "accelerators_per_node": "0", "accelerator_model_name": "-"}
    assert platform_of(pi) == "rpi4"  # a "coral" folder name without a listed accelerator
    assert platform_of({**pi, "accelerators_per_node": "1",
                        "accelerator_model_name": "Google Coral Edge TPU"}) == "rpi4-coral"
    assert platform_of({"host_processor_model_name": "NVIDIA Carmel (ARMv8.2)"}) == "jetson-xavier"
    assert platform_of({"host_processor_model_name": "Mystery CPU"}) is None
    assert runtime_of("TFLite v2.4.1 (ruy)") == ("tflite", "2.4.1")
    assert runtime_of("ArmNN v21.02 (Neon)") == ("armnn", "21.02")


# --------------------------------------------------------------------------- other tasks

def _summary_value(sdir: Path, label: str) -> float:
    summary = (sdir / "performance/run_1/mlperf_log_summary.txt").read_text()
    return float(re.search(rf"^{re.escape(label)}\s*:\s*(\S+)", summary, re.M)[1])


def test_v10_detection_and_dlrm_results_import_with_their_metric():
    rows, problems = published.import_trees([V10_TASKS])
    assert problems == []
    assert len(rows) == len([p for p in V10_TASKS.glob("closed/*/results/*/*/*") if p.is_dir()])
    by = {(r["model"], r["scenario"]): r for r in rows}
    assert sorted(by) == [("dlrm-99", "Offline"), ("dlrm-99", "Server"),
                          ("ssd-small", "Offline"), ("ssd-small", "SingleStream")]
    for (model, scenario), r in by.items():
        sdir = Path(r["source"])
        text = (sdir / "accuracy/accuracy.txt").read_text()
        facts = json.loads(r["system"])
        if model == "ssd-small":
            assert (r["accuracy_metric"], facts["task"]) == ("mAP", "detection")
            assert r["accuracy"] == pytest.approx(
                float(re.search(r"^mAP=([\d.]+)%", text, re.M)[1]) / 100, abs=1e-9)
            assert json.loads(r["params"])["family"] == "ssd-mobilenet"
            # what it was in v1.0 (SSD-MobileNet-v1 on COCO), and what it is compared as today
            assert (facts["benchmark"], facts["compared_as"]) == ("ssd-mobilenet", "yolo-99")
        else:
            assert (r["accuracy_metric"], facts["task"]) == ("AUC", "recommendation")
            # the AUC line after the JSON dump, not the dump's own click "accuracy" (96.6)
            assert r["accuracy"] == pytest.approx(
                float(re.search(r"^AUC=([\d.]+)$", text, re.M)[1]) / 100, abs=1e-8)
            assert 0.80 < r["accuracy"] < 0.81
            # DLRM v1 on Criteo Terabyte in v1.0, not v6's dlrm-v3 (compared as it today)
            assert (facts["benchmark"], facts["compared_as"]) == ("dlrm", "dlrm-v3")
        # samples/s as LoadGen's summary states them (v1.0 Server: scheduled samples/s)
        if scenario == "Offline":
            assert r["qps"] == _summary_value(sdir, "Samples per second")
        elif scenario == "Server":
            assert r["qps"] == _summary_value(sdir, "Scheduled samples per second")
        else:
            assert r["latency_ms"] == _summary_value(sdir, "90th percentile latency (ns)") / 1e6
        assert r["valid"] and r["state"] == "complete"
    # two unrelated x86 systems keep apart, each under its own name
    assert {r["platform"] for r in rows} == {
        "x8664-1-node-4s-cpx-pytorch-bf16", "x8664-centaur-technology-reference-design-v1-0d"}
    assert by[("ssd-small", "Offline")]["backend"] == "tflite"  # "TensorFlow-Lite 2.2.0"


def _unmapped_tree(tmp_path: Path) -> Path:
    """The real Centaur ssd-small results under a system we cannot map: an FPGA card with
    its vendor's own framework, on a host CPU no platform class names."""
    tree = tmp_path / "inference_results_v1.0"
    shutil.copytree(V10_TASKS / "closed" / "Centaur Technology", tree / "closed" / "Acme FPGA")
    (sys_json,) = (tree / "closed" / "Acme FPGA" / "systems").glob("*.json")
    system = json.loads(sys_json.read_text())
    sys_json.write_text(json.dumps({
        **system, "system_name": "Acme FPGA Card 2", "host_processor_model_name": "Mystery CPU",
        "accelerator_model_name": "Acme FPGA", "framework": "Internal Framework"}))
    return tree


def test_a_system_we_cannot_map_is_imported_under_its_own_names(tmp_path, capsys):
    tree = _unmapped_tree(tmp_path)
    rows, problems = published.import_trees([tree])
    assert problems == [] and sorted(r["scenario"] for r in rows) == ["Offline", "SingleStream"]
    for r in rows:
        facts = json.loads(r["system"])
        assert r["backend"] == "Internal Framework"  # its framework as published
        assert r["platform"] == "system-acme-fpga-card-2" and r["state"] == "complete"
        assert facts["our_runtime"] is False and facts["framework"] == "Internal Framework"
    # in the CLI's count, then in a comparison beside another system's results
    out = tmp_path / "run"
    assert cli(["import", str(tree), str(V10_TASKS), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "imported 6 results (0 skipped)" in said
    assert ("2 published record(s) of a framework none of our runtimes is ('Internal "
            "Framework') left out of replay and warm start") in said
    assert cli(["results", str(out), "--format", "csv"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split(",")[:5] for line in table if "Acme FPGA" in line] == [
        ["closed", "Acme FPGA", "Centaur-AIC-2.0GHz", "ssd-small", "ssd-mobilenet"]] * 2
    # replay leaves it out, saying so; our runtimes' rows still answer
    from tuner.fleet.replay import ReplayDispatcher

    both = read(out).to_pylist()
    replay = ReplayDispatcher(both)
    assert "left out of replay table rows" in capsys.readouterr().out
    assert "system-acme-fpga-card-2" not in replay.platforms()
    assert {r["backend"] for r in replay.rows} == {"tflite", "pytorch"}


def test_classification_rows_name_their_metric(v10):
    rows, _ = v10
    assert {r["accuracy_metric"] for r in rows} == {"top1"}
    assert {json.loads(r["system"])["task"] for r in rows} == {"classification"}


FIREFLY = {"division": "open", "submitter": "Acme", "system_name": "Firefly-RK3399 (firefly)",
           "host_processor_model_name": "Arm Cortex-A72 MP2 (big); Arm Cortex-A53 MP4 (LITTLE)",
           "accelerators_per_node": "0", "accelerator_model_name": "-",
           "framework": "TFLite v2.4.1 (ruy)", "system_type": "edge"}


def test_a_cortex_a72_board_that_is_not_a_pi_keeps_its_own_name(tmp_path):
    assert platform_of(FIREFLY) == "aarch64-firefly-rk3399-firefly"
    tree = tmp_path / "inference_results_v1.0"
    _result(tree, "pi4-tflite", "mobilenet-v1-1.0-224-quantized", "singlestream")
    _result(tree, "firefly-tflite", "mobilenet-v1-1.0-224-quantized", "singlestream",
            p90=40_000_000)
    (tree / "open/Acme/systems/firefly-tflite.json").write_text(json.dumps(FIREFLY))
    rows, problems = published.import_trees([tree])
    assert problems == []
    by_node = {r["node"]: r for r in rows}
    assert by_node["pi4-tflite"]["platform"] == "rpi4"
    assert by_node["firefly-tflite"]["platform"] == "aarch64-firefly-rk3399-firefly"
    assert by_node["firefly-tflite"]["study"] == "published.aarch64-firefly-rk3399-firefly.singlestream"


def test_boards_by_their_identity_not_a_shared_core():
    coral_dev = {"system_name": "Coral Dev Board", "accelerators_per_node": "1",
                 "host_processor_model_name": "NXP i.MX 8M (Arm Cortex-A53 MP4)",
                 "accelerator_model_name": "Google Edge TPU"}
    assert platform_of(coral_dev) == "aarch64-coral-dev-board"  # not rpi4-coral
    assert platform_of({"system_name": "Raspberry Pi 4 Model B",
                        "host_processor_model_name": "Broadcom BCM2711"}) == "rpi4"
    assert platform_of({"system_name": "NVIDIA Jetson Nano",
                        "host_processor_model_name": "Arm Cortex-A57"}) == "jetson-nano"
    assert platform_of({"system_name": "", "host_processor_model_name": "AMD EPYC 7763"}) == "milan"
    assert platform_of({"host_processor_model_name": "Arm Neoverse-N1"}) == "aarch64-arm-neoverse-n1"


def test_other_tasks_names_and_metric_lines(tmp_path):
    assert parse_model("ssd-resnet34") == {"family": "ssd-resnet34", "resolution": 1200}
    assert parse_model("retinanet")["family"] == "retinanet"
    assert parse_model("dlrm-v2-99.9") == {"family": "dlrm-v2", "accuracy_target": 0.999}
    tree = tmp_path / "inference_results_v0.7"
    dump = '{"TestScenario.Offline": {"accuracy": 96.6, "roc_auc": 80.2}}'
    _result(tree, "pi4-tflite", "dlrm-v2-99", "singlestream", accuracy=dump + "\nAUC=80.312%")
    _result(tree, "pi4-tflite", "retinanet", "singlestream", accuracy="mAP=37.1%")
    _result(tree, "pi4-tflite", "ssd-large", "singlestream", accuracy=dump)  # no metric line
    rows, problems = published.import_trees([tree])
    got = {r["model"]: (r["accuracy"], r["accuracy_metric"]) for r in rows}
    assert got == {"dlrm-v2-99": (0.80312, "AUC"), "retinanet": (0.371, "mAP")}
    assert [p.why for p in problems] == ["accuracy/accuracy.txt has no 'mAP=N%' line"]


# --------------------------------------------------------------------------- synthetic trees

SYSTEM = {"division": "open", "submitter": "Acme", "system_name": "Raspberry Pi 4",
          "host_processor_model_name": "Arm Cortex-A72", "accelerators_per_node": "0",
          "accelerator_model_name": "-", "framework": "TFLite v2.1", "system_type": "edge"}
SUMMARY_07 = """================================================
MLPerf Results Summary
================================================
SUT name : TFLite_SUT
Scenario : Single Stream
Mode     : Performance
90th percentile latency (ns) : {p90}
Result is : {validity}
  Min duration satisfied : Yes
  Min queries satisfied : Yes
================================================
Additional Stats
================================================
QPS w/ loadgen overhead         : 40.00
QPS w/o loadgen overhead        : 41.00
90.00 percentile latency (ns)   : {p90}
"""
# The pre-MLLOG detail log: "pid", "tid", "ts" then key : value.
DETAIL_07 = """"pid": 100, "tid": 100, "ts": 1000ns : loadgen_version : 0.7 @ abc
"pid": 100, "tid": 100, "ts": 2000ns : effective_scenario : SingleStream
"pid": 100, "tid": 100, "ts": 9000ns : result_validity : {validity}
"pid": 100, "tid": 100, "ts": 9000ns : result_90.00_percentile_latency_ns : {p90}
"pid": 100, "tid": 100, "ts": 9000ns : result_qps_with_loadgen_overhead : 40.0
"""


def _result(root: Path, system: str, model: str, scenario: str, *, p90=25_000_000,
            validity="VALID", accuracy="accuracy=70.500%, good=35250, total=50000",
            summary=True, detail=True) -> Path:
    sdir = root / "open" / "Acme" / "results" / system / model / scenario
    run = sdir / "performance" / "run_1"
    run.mkdir(parents=True)
    if summary:
        (run / "mlperf_log_summary.txt").write_text(
            SUMMARY_07.format(p90=p90, validity=validity))
    if detail:
        (run / "mlperf_log_detail.txt").write_text(DETAIL_07.format(p90=p90, validity=validity))
    if accuracy is not None:
        (sdir / "accuracy").mkdir()
        (sdir / "accuracy" / "accuracy.txt").write_text(accuracy + "\n")
    systems = root / "open" / "Acme" / "systems"
    systems.mkdir(parents=True, exist_ok=True)
    if not (systems / f"{system}.json").exists() and system != "no-json":
        (systems / f"{system}.json").write_text(json.dumps(SYSTEM))
    return sdir


def test_plain_text_detail_log_of_an_older_round(tmp_path):
    tree = tmp_path / "inference_results_v0.7"
    _result(tree, "pi4-tflite", "mobilenet-v1-1.0-224-quantized", "singlestream", p90=31_500_000)
    _result(tree, "pi4-tflite", "mobilenet-v1-0.5-128-quantized", "singlestream",
            p90=9_000_000, validity="INVALID")
    # summary gone: the plain-text detail log alone still gives the figures
    _result(tree, "pi4-tflite", "mobilenet-v1-0.5-160-quantized", "singlestream",
            p90=12_000_000, summary=False)
    rows, problems = published.import_trees([tree])
    assert problems == []
    by_model = {r["model"]: r for r in rows}
    first = by_model["mobilenet-v1-1.0-224-quantized"]
    assert (first["scenario"], first["latency_ms"], first["accuracy"]) == ("SingleStream", 31.5, 0.705)
    assert json.loads(first["system"])["round"] == "v0.7"
    assert json.loads(first["system"])["headline_log"] == "summary"  # v0.7's checker read it
    invalid = by_model["mobilenet-v1-0.5-128-quantized"]
    assert (invalid["state"], invalid["valid"]) == ("infeasible", False)
    assert invalid["cause"].startswith("LoadGen run INVALID")
    text_only = by_model["mobilenet-v1-0.5-160-quantized"]
    assert text_only["latency_ms"] == 12.0
    assert json.loads(text_only["system"])["headline_log"] == "text"


def test_broken_results_are_reported_and_skipped(tmp_path):
    tree = tmp_path / "inference_results_v0.7"
    good = _result(tree, "pi4-tflite", "mobilenet-v1-1.0-224-quantized", "singlestream")
    no_acc = _result(tree, "pi4-tflite", "mobilenet-v1-0.5-224-quantized", "singlestream",
                     accuracy=None)
    bad_acc = _result(tree, "pi4-tflite", "mobilenet-v1-0.25-224-quantized", "singlestream",
                      accuracy="mAP=22.1%")
    no_logs = _result(tree, "pi4-tflite", "mobilenet-v1-0.75-224-quantized", "singlestream",
                      summary=False, detail=False)
    _result(tree, "no-json", "mobilenet-v1-1.0-224-quantized", "singlestream")
    rows, problems = published.import_trees([tree])
    assert [r["source"] for r in rows] == [str(good.resolve())]
    why = {Path(p.path).name if Path(p.path).name != "singlestream" else Path(p.path).parent.name:
           p.why for p in problems}
    assert why[no_acc.parent.name] == "no accuracy/accuracy.txt"
    # a classification folder whose accuracy.txt gives another task's metric
    assert why[bad_acc.parent.name] == ("accuracy/accuracy.txt gives mAP= but a "
                                        "classification model is scored by accuracy=")
    assert "neither mlperf_log_detail.txt nor mlperf_log_summary.txt" in why[no_logs.parent.name]
    assert "system description unreadable" in why["no-json.json"]


def test_cli_import_then_results_and_refuse_overwrite(tmp_path, capsys):
    tree = tmp_path / "inference_results_v0.7"
    _result(tree, "pi4-tflite", "mobilenet-v1-1.0-224-quantized", "singlestream", p90=31_500_000)
    _result(tree, "pi4-tflite", "broken-model", "singlestream", accuracy=None)
    out = tmp_path / "run"
    assert cli(["import", str(tree), "--out", str(out)]) == 0
    err = capsys.readouterr()
    assert "imported 1 results (1 skipped)" in err.out and "broken-model" in err.err
    assert len(read(out).to_pylist()) == 1
    assert cli(["import", str(tree), "--out", str(out)]) == 2  # never over earlier records
    capsys.readouterr()
    for source in (out, tree):  # an imported run dir, and the tree itself
        assert cli(["results", str(source), "--format", "csv"]) == 0
        text = capsys.readouterr().out
        assert "mobilenet-v1-1.0-224-quantized" in text and "31.5" in text
        assert "90th percentile latency" in text


# --------------------------------------------------------------------------- reports

def _row(**kw):
    base = {"study": "mine.rpi4", "trial": 0, "state": "complete", "fidelity": "short",
            "platform": "rpi4", "node": "n1", "backend": "litert", "model": "m",
            "scenario": "SingleStream", "objective": "latency_ms",
            "params": json.dumps({"width": 1.0}), "latency_ms": 5.0, "p90_latency_ms": 5.0,
            "accuracy": 0.7, "valid": True, "log_dir": "", "config": "{}", "system": "{}"}
    return {**base, **kw}


def test_report_escapes_hostile_names(tmp_path):
    from experiments.report import render

    evil = "<script>alert(1)</script>"
    write(tmp_path / FILENAME, [
        _row(model=evil, backend=evil, params=json.dumps({"width": evil})),
        _row(trial=1, model="ok", latency_ms=9.0, accuracy=0.5, state="infeasible",
             cause=evil, valid=False),
        _row(study=evil, trial=0, model=evil)])
    page = render(tmp_path)["html"].read_text()
    assert evil not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_compare_draws_published_fronts_beside_ours(tmp_path):
    from experiments.report import render

    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    write(mine / FILENAME, [_row(trial=i, latency_ms=5.0 + i, accuracy=0.6 + i / 20)
                            for i in range(3)])
    write(theirs / FILENAME, [
        _row(study="published.rpi4.singlestream", fidelity="published", trial=i,
             model=f"pub-{i}", latency_ms=4.0 + i, accuracy=0.65 + i / 20) for i in range(3)]
        + [_row(study="published.milan.singlestream", fidelity="published", platform="milan",
                model="far-away", latency_ms=1.0)]
        # another task on this device: its mAP is never drawn beside our top-1
        + [_row(study="published.rpi4.ssd", fidelity="published", model="a-detector",
                latency_ms=2.0, accuracy=0.22, accuracy_metric="mAP")])
    paths = render(mine, compare=[theirs])
    page = paths["html"].read_text()
    assert "published.rpi4.singlestream [theirs] front" in page
    assert "far-away" not in page  # a front of another device when one of this device exists
    assert "a-detector" not in page and "published.rpi4.ssd" not in page
    assert paths["png"].stat().st_size > 0


# --------------------------------------------------------------------------- never packed

def test_published_and_replayed_rows_are_never_promoted_or_packed(tmp_path):
    from experiments.selection import promoted, to_promote
    from experiments.submission import pack

    rows = [_row(fidelity="published", study="published.rpi4.singlestream"),
            _row(fidelity="replay", study="mobilenet.rpi4", trial=0)]
    write(tmp_path / FILENAME, rows)
    assert to_promote(rows) == []
    for pick in ("published.rpi4.singlestream:0", "mobilenet.rpi4:0"):
        with pytest.raises(ValueError, match="cannot be promoted"):
            to_promote(rows, [pick])
    assert promoted(rows) == []
    for draft in (False, True):
        with pytest.raises(ValueError, match="no promoted records"):
            pack(tmp_path, tmp_path / f"tree{draft}", "Org", draft=draft, say=lambda *_: None)
