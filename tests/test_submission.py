"""From the Pareto front to an MLPerf submission, on the real stack: a small study (local
Ray on 127.0.0.1, LoadGen, ONNX Runtime), promotion of its front with the documented
test-only duration (300 ms, recorded as 'compliant-reduced'), reproduce, packing, the
packer's refusals (each crafted by editing a copy of real logs) and our tree check."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments import check as checks
from experiments import results_table, submission
from experiments.records import Records, read
from tests.test_study import PLATFORM, config, dispatcher  # noqa: F401 (fixture)
from tuner.commands import promote
from tuner.commands.reproduce import reproduce
from tuner.study.driver import Driver
from experiments.loadgen_logs import DETAIL, PREFIX
from experiments.system_json import SYSTEM_KEYS, SYSTEM_KEYS_NON_EMPTY

TEST_MS = 300  # the documented test setting (--min-duration-ms / promotion.min_duration_ms)
ORG = "TunerTest"




@pytest.fixture(scope="module")
def run(tmp_path_factory, cache_dir, dispatcher):
    """A 3-trial study, saved as the Hydra app saves it, then its front promoted."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = config(run_dir, cache_dir, "study.n_trials=3", "study.accuracy_floor=0.0",
                 "space.model.width.choices=[0.25]", "space.model.resolution.choices=[32]",
                 f"promotion.min_duration_ms={TEST_MS}")
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    Driver(cfg, dispatcher=dispatcher).run()
    printed: list[str] = []
    new = promote.promote(run_dir, dispatcher=dispatcher, out=printed.append)
    run_dir.joinpath("promote.out").write_text("\n".join(printed))
    return run_dir, new


def rows(run_dir: Path, fidelity: str | None = None) -> list[dict]:
    return [r for r in read(run_dir).to_pylist() if fidelity in (None, r["fidelity"])]


# --------------------------------------------------------------------------- promotion

def test_promotion_records_the_front_beside_the_short_rows(run):
    from experiments.report import fronts, render

    run_dir, new = run
    short = rows(run_dir, "short")
    assert len(short) == 3
    front = fronts(short)[f"mobilenet.{PLATFORM}"]
    # testbox has no platform YAML and the run's system_type is auto: edge, so only
    # SingleStream is measured (MultiStream and Offline are inferred when packing)
    assert sorted((r["trial"], r["scenario"]) for r in new) == \
        sorted((r["trial"], "SingleStream") for r in front)
    assert [(r["trial"], r["log_dir"]) for r in rows(run_dir, "compliant-reduced")] == \
        [(r["trial"], r["log_dir"]) for r in new]
    for r in new:
        assert r["valid"] and r["state"] == "complete", r["cause"]
        assert r["log_dir"] == f"trials/mobilenet.{PLATFORM}/{r['trial']:05d}/compliant-reduced/SingleStream"
        logs = run_dir / r["log_dir"]
        perf = (logs / "performance" / DETAIL).read_text()
        assert '"effective_min_duration_ms", "value": 300' in perf
        # the whole validation set (359 held-out digits), though the search used 120
        assert (logs / "accuracy" / "accuracy.txt").read_text().endswith("total=359\n")
        cfg = json.loads(r["config"])
        assert cfg["fidelity"]["name"] == "compliant-reduced" and cfg["accuracy_sample_count"] is None
        facts = json.loads(r["system"])["facts"]  # probed on the measuring node
        assert facts["platform"] == PLATFORM and facts["cores"] >= 1
    printed = (run_dir / "promote.out").read_text()
    assert printed.startswith("TEST SETTING: min_duration 300 ms")
    assert printed.count("inferred (as preprocess_submission.py): MultiStream ") == len(new)
    paths = render(run_dir)
    html = paths["html"].read_text()
    assert "Re-measured" in html and "compliant-reduced" in html and "star" in html


def test_test_setting_and_compliant_fidelity():
    cfg = OmegaConf.create({"promotion": {"min_duration_ms": None}})
    assert promote.promotion_fidelity(promote.reduced_min_duration(cfg, None)).compliant
    assert promote.promotion_fidelity(promote.reduced_min_duration(OmegaConf.create({}), None)).compliant
    cfg.promotion.min_duration_ms = 250  # the run's config key; the CLI flag wins over it
    assert promote.reduced_min_duration(cfg, 120) == 120
    fid = promote.promotion_fidelity(promote.reduced_min_duration(cfg, None))
    assert (fid.name, fid.min_duration_ms, fid.compliant) == ("compliant-reduced", 250, False)
    assert promote.scenarios_for("edge", None) == (["SingleStream"], ["MultiStream", "Offline"])
    assert promote.scenarios_for("datacenter", None) == (["Offline", "Server"], [])
    assert promote.scenarios_for("edge", ["SingleStream", "Offline"]) == \
        (["SingleStream", "Offline"], ["MultiStream"])


def test_reproduce_prints_old_and_new_side_by_side(run, dispatcher):
    run_dir, _ = run
    printed: list[str] = []
    old, new = reproduce(run_dir, "0", fidelity="short", dispatcher=dispatcher,
                                 out=printed.append)
    assert old["fidelity"] == "short" and new["fidelity"] == "reproduce"
    assert new["trial"] == 0 and new["valid"] and new["config"] == old["config"]
    assert new["log_dir"].endswith("/00000/reproduce/1")
    table = next(p for p in printed if "reproduced" in p)  # a cause may follow it
    assert "recorded" in table and "reproduced" in table
    for key in ("latency_ms", "qps", "accuracy", "valid"):
        assert re.search(rf"^{key}\s", table, re.M), key


def test_cli_routes_subcommands_before_hydra(tmp_path):
    for argv in (["-m", "tuner", "promote", "--help"], ["-m", "tuner", "reproduce", "--help"]):
        proc = subprocess.run([sys.executable, *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0 and "--" in proc.stdout, proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "tuner", "promote", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no saved config" in proc.stderr


# --------------------------------------------------------------------------- packing

def pack(run_dir: Path, out: Path, draft: bool = False, **kw) -> Path:
    return submission.pack(run_dir, out, ORG, "open", draft=draft, say=lambda _s: None, **kw)


def test_reduced_runs_are_refused_without_draft(run, tmp_path):
    run_dir, _ = run
    with pytest.raises(submission.Refused) as err:
        pack(run_dir, tmp_path / "tree")
    text = str(err.value)
    assert "[perf.fidelity]" in text and "[perf.min_duration]" in text
    assert not (tmp_path / "tree").exists()


def test_draft_tree_layout_fields_and_check(run, tmp_path, capsys):
    run_dir, new = run
    out = pack(run_dir, tmp_path / "tree", draft=True)
    org = out / "open" / ORG
    (system_json,) = (org / "systems").glob("*.json")
    system = system_json.stem
    desc = json.loads(system_json.read_text())
    assert list(desc) == list(SYSTEM_KEYS) and len(SYSTEM_KEYS) == 35
    assert all(str(desc[k]).strip() for k in SYSTEM_KEYS_NON_EMPTY)
    assert len(SYSTEM_KEYS_NON_EMPTY) == 26
    assert (desc["division"], desc["submitter"], desc["system_type"]) == ("open", ORG, "edge")
    assert desc["accelerators_per_node"] == "0" and desc["framework"].startswith("ONNX Runtime")
    assert desc["sw_notes"].startswith("DRAFT")
    assert (org / "src" / "config.yaml").read_text() == (run_dir / ".hydra/config.yaml").read_text()
    assert "reproduce" in (org / "src" / "README.md").read_text()

    mapping = json.loads((org / "model_mapping.json").read_text())
    for r in new:
        model_dir = org / "results" / system / r["model"]
        assert mapping[r["model"]] == "resnet"
        for scenario in ("SingleStream", "MultiStream", "Offline"):  # two inferred
            d = model_dir / scenario
            for rel in checks.SCENARIO_FILES:
                assert (d / rel).stat().st_size > 0, d / rel
        src = run_dir / r["log_dir"]
        ss = model_dir / "SingleStream"
        original = (src / "accuracy" / "mlperf_log_accuracy.json").read_bytes()
        acc_txt = (ss / "accuracy" / "accuracy.txt").read_text().splitlines()
        assert re.fullmatch(r"accuracy=\d+\.\d{3}%, good=\d+, total=359", acc_txt[0])
        assert acc_txt[1] == "hash=" + hashlib.sha256(original).hexdigest()
        truncated = (ss / "accuracy" / "mlperf_log_accuracy.json").read_text()
        assert len(original) > checks.MAX_ACCURACY_LOG_SIZE  # 359 entries: ~20 KB
        assert truncated == original.decode()[:4096] + "\n\n...\n\n" + original.decode()[-4096:]
        meas = json.loads((ss / "measurements.json").read_text())
        assert all(str(meas[k]).strip() for k in checks.MEASUREMENTS_KEYS)
        assert meas["weight_data_types"] == json.loads(r["config"])["model"]["precision"]
        assert (ss / "user.conf").read_text().startswith("resnet50.SingleStream.target_latency")
        assert (ss / "performance/run_1" / DETAIL).read_bytes() == \
            (src / "performance" / DETAIL).read_bytes()
        assert "inferred from SingleStream" in (model_dir / "MultiStream" / "README.md").read_text()

    # the results table: one row per system/model/scenario, figures as MLPerf computes them
    table = list(results_table.results_table(out))
    assert len(table) == 3 * len(new)
    perf = checks.parse_detail((org / "results" / system / new[0]["model"] / "SingleStream"
                                / "performance/run_1" / DETAIL).read_text())
    by = {(t["model"], t["scenario"]): t for t in table}
    ss, ms, off = (by[(new[0]["model"], s)] for s in ("SingleStream", "MultiStream", "Offline"))
    assert ss["value"] == pytest.approx(perf.get("early_stopping_latency_ss") / 1e6, rel=1e-3)
    assert ms["value"] == pytest.approx(perf.get("early_stopping_latency_ms") * 8 / 1e6, rel=1e-3)
    assert off["value"] == pytest.approx(perf.get("result_qps_without_loadgen_overhead"), rel=1e-3)
    assert ms["inferred_from"] == "SingleStream"
    first_txt = (org / "results" / system / new[0]["model"] / "SingleStream" / "accuracy"
                 / "accuracy.txt").read_text()
    assert ss["accuracy"] == checks.parse_accuracy_txt(first_txt)[0]
    assert (out / "results.csv").read_text().count("\n") == 1 + len(table)
    assert "| SingleStream |" in (out / "results.md").read_text()

    # draft tree: only the failures the test setting causes, waived with --draft
    failures, checked = checks.check_tree(out)
    assert checked == 3 * len(new)
    assert {f.rule for f in failures} == {"tree.draft", "perf.fidelity", "perf.min_duration"}
    assert checks.main(str(out), draft=True, out=lambda _s: None) == 0
    assert checks.main(str(out), draft=False, out=lambda _s: None) == 1


# --------------------------------------------------------------------------- refusals

def edit_detail(path: Path, **values) -> None:
    """Rewrite keys of a LoadGen detail log (and append an error entry for error=...)."""
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith(PREFIX):
            entry = json.loads(line[len(PREFIX):])
            if entry.get("key") in values:
                entry["value"] = values[entry["key"]]
                line = PREFIX + json.dumps(entry)
        lines.append(line)
    if "error" in values:
        lines.append(PREFIX + json.dumps({"key": "error_runtime", "value": values["error"],
                                          "metadata": {"is_error": True}}))
    path.write_text("\n".join(lines) + "\n")


def passed_off_as_compliant(src: Path, run_dir: Path) -> tuple[Path, list[dict]]:
    """A copy of a run whose promoted rows pass as compliant: fidelity 'compliant' and a
    600 s min duration written into the (otherwise real) detail logs. Returns the copy
    and its compliant rows."""
    shutil.copytree(src, run_dir)
    records = Records(run_dir)
    for r in records.rows:
        if r["fidelity"] == "compliant-reduced":
            r["fidelity"] = "compliant"
            edit_detail(run_dir / r["log_dir"] / "performance" / DETAIL,
                        effective_min_duration_ms=600000)
    records.flush()
    return run_dir, [r for r in records.rows if r["fidelity"] == "compliant"]


@pytest.fixture
def good_run(run, tmp_path):
    return passed_off_as_compliant(run[0], tmp_path / "run")


def test_compliant_tree_packs_and_passes_the_check(good_run, tmp_path):
    run_dir, _ = good_run
    out = pack(run_dir, tmp_path / "tree")
    printed: list[str] = []
    assert checks.main(str(out), out=printed.append) == 0, printed
    assert printed[-1].endswith("all rules pass")
    assert "DRAFT" not in (out / "open" / ORG / "src" / "README.md").read_text()


REFUSALS = {
    # rule -> (file under the promoted log dir, edit)
    "perf.valid": ("performance", dict(result_validity="INVALID")),
    "perf.errors": ("performance", dict(error="Multiple conf files are used")),
    "perf.min_duration": ("performance", dict(effective_min_duration_ms=300)),
    "seeds": ("performance", dict(effective_qsl_rng_seed=0, effective_schedule_rng_seed=0)),
    "perf.sample_count": ("performance", dict(effective_performance_sample_count=16)),
    "acc.dataset": ("accuracy", dict(effective_accuracy_sample_count=120,
                                     qsl_reported_total_count=120)),
}


@pytest.mark.parametrize("rule", sorted(REFUSALS))
def test_each_refusal_names_its_rule_and_the_check_catches_it(rule, good_run, tmp_path):
    run_dir, promoted = good_run
    target = run_dir / promoted[0]["log_dir"]
    folder, edit = REFUSALS[rule]
    edit_detail(target / folder / DETAIL, **edit)
    if rule == "acc.dataset":  # a partial accuracy run also scores fewer samples
        (target / "accuracy" / "accuracy.txt").write_text("accuracy=95.000%, good=114, total=120\n")
    with pytest.raises(submission.Refused) as err:
        pack(run_dir, tmp_path / "tree")
    assert f"[{rule}]" in str(err.value)
    assert {r.split("] ")[0] for r in err.value.reasons} == {f"{promoted[0]['study']} "
                                                           f"#{promoted[0]['trial']} "
                                                           f"SingleStream: [{rule}"}
    out = pack(run_dir, tmp_path / "draft", draft=True)  # packs anyway, marked
    failures, _ = checks.check_tree(out)
    assert rule in {f.rule for f in failures}
    # --draft waives only what the test setting causes: any other refusal still fails
    waived = rule in checks.DRAFT_WAIVABLE
    printed: list[str] = []
    assert checks.main(str(out), draft=not waived, out=printed.append) == 1
    assert any(line.startswith(f"FAIL {rule} ") for line in printed), printed


def test_check_names_each_broken_rule(good_run, tmp_path):
    run_dir, promoted = good_run
    out = pack(run_dir, tmp_path / "tree")
    org = out / "open" / ORG
    (system_json,) = (org / "systems").glob("*.json")
    desc = json.loads(system_json.read_text())
    del desc["cooling"]
    desc.update(submitter="SomeoneElse", accelerators_per_node=0, host_memory_capacity="")
    system_json.write_text(json.dumps(desc))
    shutil.rmtree(org / "src")
    (org / "model_mapping.json").write_text(json.dumps({promoted[0]["model"]: "mobilenet"}))
    ss = org / "results" / system_json.stem / promoted[0]["model"] / "SingleStream"
    run_acc = run_dir / promoted[0]["log_dir"] / "accuracy" / "mlperf_log_accuracy.json"
    shutil.copyfile(run_acc, ss / "accuracy" / "mlperf_log_accuracy.json")  # untruncated
    (ss / "accuracy" / "accuracy.txt").write_text("top1 = 0.95\n")
    (ss / "measurements.json").write_text(json.dumps({"retraining": "no"}))
    (ss / "user.conf").write_text("")
    shutil.copytree(ss, ss.parent / "Server")  # not an edge scenario
    printed: list[str] = []
    assert checks.main(str(out), out=printed.append) == 1
    failed = {line.split()[1] for line in printed if line.startswith("FAIL ")}
    assert failed >= {"system.keys", "system.submitter", "system.accelerators",
                      "system.non_empty", "src", "model_mapping", "accuracy.size",
                      "accuracy.format", "accuracy.hash", "measurements", "files",
                      "scenario.category", "scenario.inferred"}, printed


def test_results_subcommand_prints_the_table(good_run, tmp_path):
    run_dir, promoted = good_run
    out = pack(run_dir, tmp_path / "tree")
    proc = subprocess.run([sys.executable, "-m", "experiments", "results", str(out), "--format",
                           "csv"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split(",") == results_table.TABLE_COLUMNS and len(lines) == 1 + 3 * len(promoted)
