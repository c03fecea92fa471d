"""A promoted detection point on an edge platform, end to end on the real stack: a one-trial
study of the digit canvases' SSD, promoted with the test setting (300 ms, recorded as
'compliant-reduced'), packed as yolo-99 (SingleStream measured, MultiStream and Offline
inferred, `mAP=` then `hash=` in accuracy.txt) into a tree our checker accepts."""
from __future__ import annotations

import json
import re

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments import check as checks
from experiments import submission
from experiments.loadgen_logs import DETAIL
from experiments.records import Records
from tests.conftest import ROOT
from tests.test_study import PLATFORM, dispatcher  # noqa: F401 (fixture)
from tests.test_submission import ORG, TEST_MS, passed_off_as_compliant
from tuner.commands import promote
from tuner.study.driver import Driver


def detection_config(run_dir, cache_dir):
    overrides = ["+space=ssd_mobilenet", "space.backends=[onnxruntime]",
                 f"platform.name={PLATFORM}", "progress=false",
                 f"run_dir={run_dir}", f"cache_dir={cache_dir}", "workload.count=100",
                 "space.model.width.choices=[0.5]", "space.model.resolution.choices=[64]",
                 "space.model.precision.choices=[fp32]",
                 "space.model.score_threshold.choices=[0.3]", "space.model.nms_iou.choices=[0.45]",
                 "space.model.max_detections.choices=[10]",
                 "fidelity.min_duration_ms=300", "fidelity.min_query_count=32",
                 "fidelity.max_duration_ms=3000",
                 "backends.onnxruntime.knobs.intra_op_threads.high=1",
                 "backends.onnxruntime.knobs.execution_mode.choices=[sequential]",
                 "backends.onnxruntime.knobs.allow_spinning.choices=[false]",
                 "study.trial_timeout_s=120", "study.n_trials=1", "study.accuracy_floor=0.0",
                 f"promotion.min_duration_ms={TEST_MS}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.fixture(scope="module")
def detection_run(tmp_path_factory, cache_dir, dispatcher):
    run_dir = tmp_path_factory.mktemp("detection")
    cfg = detection_config(run_dir, cache_dir)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    Driver(cfg, dispatcher=dispatcher).run()
    new = promote.promote(run_dir, dispatcher=dispatcher, out=lambda _s: None)
    return run_dir, new


def test_mlperf_accuracy_coco_prints_the_recorded_map_on_the_studys_own_logs(detection_run,
                                                                            tmp_path):
    """MLPerf's accuracy-coco.py (the copy in ../shared/mlperf), run on the accuracy logs
    LoadGen wrote in this study (the search trial and the promoted run) against the
    canvases' COCO annotation file, prints the mAP each record holds."""
    from tests.test_detection import accuracy_coco_map
    from workloads.digit_canvases.workload import DigitCanvasesWorkload

    run_dir, _ = detection_run
    DigitCanvasesWorkload(count=100).annotation_file(tmp_path / "coco")
    rows = Records(run_dir).rows
    assert {r["fidelity"] for r in rows} >= {"short", "compliant-reduced"}
    for r in rows:
        log = run_dir / r["log_dir"] / "accuracy" / "mlperf_log_accuracy.json"
        assert accuracy_coco_map(log, tmp_path / "coco") == [f"mAP={100 * r['accuracy']:.3f}%"], \
            r["fidelity"]


def test_detection_point_packs_as_yolo_99_and_passes_the_check(detection_run, tmp_path):
    src, new = detection_run
    (ss,) = new
    assert ss["scenario"] == "SingleStream" and ss["valid"] and ss["state"] == "complete", ss["cause"]
    assert ss["accuracy_metric"] == "mAP" and ss["accuracy_source"] == "measured"
    assert json.loads(ss["system"])["benchmark"] == "yolo-99"
    run_dir, _ = passed_off_as_compliant(src, tmp_path / "run")
    out = submission.pack(run_dir, tmp_path / "tree", ORG, say=lambda _s: None)
    org = out / "open" / ORG
    mapping = json.loads((org / "model_mapping.json").read_text())
    assert mapping == {ss["model"]: "yolo-99"}
    (system_json,) = (org / "systems").glob("*.json")
    model_dir = org / "results" / system_json.stem / ss["model"]
    assert sorted(p.name for p in model_dir.iterdir()) == ["MultiStream", "Offline", "SingleStream"]
    lines = (model_dir / "SingleStream" / "accuracy" / "accuracy.txt").read_text().splitlines()
    assert re.match(r"mAP=\d+\.\d{3}%", lines[0]) and re.fullmatch(r"hash=[0-9a-f]{64}", lines[-1])
    perf = checks.parse_detail((model_dir / "SingleStream/performance/run_1" / DETAIL).read_text())
    assert perf.get("effective_performance_sample_count") >= 64  # yolo's count in mlperf.conf
    printed: list[str] = []
    assert checks.main(str(out), out=printed.append) == 0, printed
