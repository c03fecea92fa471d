"""Promotion's rules without a device: the Server bisection's steps and refusals (a fake
LoadGen run), which bound a Server run is held to, the refusals made before dispatch, a
datacenter-only benchmark left out of an edge platform's plan, and the packer's and the
checker's refusal of estimated and inherited accuracy."""
from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments import check as checks
from experiments.promoted_result import load_result
from tests.conftest import ROOT
from tuner.commands import promote
from tuner.config import register
from tuner.fleet.dispatch import NodeInfo
from tuner.study.plan import describe, make_plans
from tuner.worker import server_search
from tuner.worker.oracle import Calibration

register()


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


# --------------------------------------------------------------------------- the search

class FakeSettings:
    server_target_latency_ns = 15_000_000
    min_duration_ms, max_duration_ms, min_query_count, server_target_qps = 600000, 0, 100, 1.0


class FakeOracle:
    settings = FakeSettings()
    work_dir = "/nonexistent"


class FakeResult:
    def __init__(self):
        self.system, self.settings = {}, {"user_conf": ""}


CONF = "resnet50.Server.target_qps = 50.000\nresnet50.Server.target_latency = 15\n"


def knee(capacity: float):
    """A short run's (p99 ms, backlog) for a system that holds up to ``capacity`` QPS."""
    runs: list[tuple[float, int]] = []

    def run(oracle, sut_args, qps, opts, step, length=1):
        runs.append((qps, length))
        return (5.0, False) if qps <= capacity else (40.0, True)
    return run, runs


def test_bisection_finds_the_knee_confirms_it_and_puts_the_settings_back(monkeypatch):
    run, runs = knee(capacity=300.0)
    monkeypatch.setattr(server_search, "_short_run", run)
    oracle, result = FakeOracle(), FakeResult()
    conf = server_search.tune(oracle, {}, Calibration(0.002, 400.0), CONF,
                              {"server_latency_ms": 15, "server_search": {"steps": 7}}, result)
    found = result.system["server_search"]
    bisection = [s for s in found["steps"] if not s["confirm"]]
    assert len(bisection) <= 7 and runs[0] == (250.0, 1)  # the middle of 0 .. 1.25 x 400
    best = max(s["qps"] for s in bisection if s["ok"])
    assert 0.95 * 300 <= best <= 300  # within the tolerance below the knee
    assert found["target_qps"] == pytest.approx(0.8 * best, rel=1e-3)  # default margin
    assert runs[-1] == (pytest.approx(0.8 * best), 2)  # confirmed by a run twice as long
    assert oracle.settings.server_target_qps == pytest.approx(found["target_qps"])
    assert (oracle.settings.min_duration_ms, oracle.settings.max_duration_ms,
            oracle.settings.min_query_count) == (600000, 0, 100)  # the compliant run's again
    assert f"resnet50.Server.target_qps = {found['target_qps']:.3f}\n" in conf
    assert result.settings["user_conf"] == conf and "target_latency = 15" in conf


def test_a_single_query_above_the_bound_is_refused_before_any_run(monkeypatch):
    run, runs = knee(capacity=1e9)
    monkeypatch.setattr(server_search, "_short_run", run)
    result = FakeResult()
    with pytest.raises(server_search.ServerBoundError) as err:
        # the seen case: a 15.2 ms LiteRT MobileNet against ResNet's 15 ms bound
        server_search.tune(FakeOracle(), {}, Calibration(0.0152, 66.0), CONF,
                           {"server_search": True}, result)
    assert runs == [] and "\n" not in str(err.value)
    assert str(err.value) == ("Server refused before the long run: a single query takes "
                              "15.200 ms, above the 15 ms latency bound; no target QPS can "
                              "be VALID")


def test_no_rate_that_holds_the_bound_is_refused_in_one_line(monkeypatch):
    run, runs = knee(capacity=0.0)
    monkeypatch.setattr(server_search, "_short_run", run)
    with pytest.raises(server_search.ServerBoundError, match="no target QPS held the 15 ms"):
        server_search.tune(FakeOracle(), {}, Calibration(0.002, 400.0), CONF,
                           {"server_search": {"steps": 3}}, FakeResult())
    assert len(runs) == 3 and FakeOracle.settings.min_duration_ms == 600000
    with pytest.raises(ValueError, match="unknown option"):
        server_search.SearchOptions.from_options({"rate": 1})


# --------------------------------------------------------------------------- promote

def row(scenario="SingleStream", latency=15.2, benchmark="resnet", platform="x"):
    return {"study": "s", "trial": 3, "scenario": scenario, "platform": platform,
            "latency_ms": latency, "p90_latency_ms": latency,
            "system": json.dumps({"benchmark": benchmark}),
            "config": json.dumps({"workload": {"name": "digits"}, "scenario_options": {}})}


def test_server_bound_and_refusals_before_dispatch():
    cfg = OmegaConf.create({"promotion": {"server_latency_ms": None}, "workload": {"name": "digits"}})
    assert promote.server_bound_ms(cfg, "resnet", {}) == (15.0, "resnet's bound")
    assert promote.server_bound_ms(cfg, "dlrm-v3", {"server_latency_ms": 99}) == \
        (60.0, "dlrm-v3's bound")
    assert promote.server_bound_ms(cfg, "yolo-99", {"server_latency_ms": 99}) == \
        (99.0, "scenario.server_latency_ms")
    assert promote.server_bound_ms(cfg, "yolo-99", {})[0] is None  # LoadGen's own
    why = promote.refusal(cfg, row(), "datacenter", "Server")
    assert why.startswith("s #3 Server: Server refused before the long run: a single query "
                          "takes 15.200 ms, above the 15 ms latency bound")
    assert promote.refusal(cfg, row(latency=9.0), "datacenter", "Server") is None
    assert promote.refusal(cfg, row(), "datacenter", "Offline") is None
    assert promote.refusal(cfg, row(scenario="Offline"), "datacenter", "Server") is None
    cfg.promotion.server_latency_ms = 20  # the config key wins over the benchmark's
    assert promote.refusal(cfg, row(), "datacenter", "Server") is None
    assert promote.server_options(cfg, {"batch_size": 4}, 20.0)["server_latency_ms"] == 20.0
    dlrm = promote.refusal(cfg, row(scenario="Offline", benchmark="dlrm-v3", platform="rpi4"),
                           "edge", "SingleStream")
    assert dlrm == ("s #3 SingleStream: not promoted: dlrm-v3 is a datacenter-only MLPerf "
                    "benchmark and platform rpi4 is edge (set its system_type)")


# --------------------------------------------------------------------------- the plan

def nodes(*platforms: str) -> dict[str, list[NodeInfo]]:
    return {p: [NodeInfo(f"n-{p}", p, "", 1, ["onnxruntime", "tvm"], cores=4)] for p in platforms}


def test_an_edge_platform_plan_skips_dlrm_and_says_why():
    cfg = composed("+space=dlrm", "cluster=ray")
    plans = make_plans(cfg, ["rpi4", "milan"], nodes("rpi4", "milan"))
    assert [p.platform for p in plans] == ["milan"]
    assert plans.notes == ["rpi4: skipped: edge platform, and dlrm-v3 (workload click_logs) is "
                           "a datacenter-only MLPerf benchmark"]
    assert describe(plans).splitlines()[0] == plans.notes[0]
    # one edge box alone still measures (a fresh clone here), and says it cannot be submitted
    (alone,) = plans = make_plans(cfg, ["x8664"], nodes("x8664"))
    assert alone.platform == "x8664" and len(plans.notes) == 1
    assert "measured, but not submittable" in plans.notes[0]
    # classification runs everywhere
    plans = make_plans(composed("+space=mobilenet", "cluster=ray"), ["rpi4", "milan"],
                       nodes("rpi4", "milan"))
    assert [p.platform for p in plans] == ["rpi4", "milan"] and plans.notes == []


def test_a_benchmark_whose_round_needs_more_samples_is_refused_in_one_line(tmp_path):
    from experiments.mlperf import BENCHMARKS

    perf = tmp_path / "trials" / "s" / "3" / "performance"
    perf.mkdir(parents=True)
    line = ':::MLLOG {"key": "effective_performance_sample_count", "value": %d}\n'
    (perf / "mlperf_log_detail.txt").write_text(line % 204800)
    r = {**row(scenario="Offline", benchmark="dlrm-v3"), "log_dir": "trials/s/3"}
    assert BENCHMARKS["dlrm-v3"].performance_sample_count == 349823  # checker v6.1
    assert promote.sample_count_refusal(tmp_path, r, "dlrm-v3") == (
        "s #3: not promoted: dlrm-v3 needs performance_sample_count >= 349823 (checker v6.1) "
        "and its runs give LoadGen 204800: the official checker rejects it (--draft "
        "promotes anyway)")
    (perf / "mlperf_log_detail.txt").write_text(line % 349823)
    assert promote.sample_count_refusal(tmp_path, r, "dlrm-v3") is None
    assert promote.sample_count_refusal(tmp_path, {**r, "log_dir": "gone"}, "dlrm-v3") is None


def test_dlrm_v3_accuracy_lines_are_the_ones_its_checker_reads():
    from experiments.mlperf import checker_lines_problem

    auc = "AUC=86.500%, accuracy=75.000%, good=3, total=4, queries=2"
    assert checker_lines_problem(auc, "dlrm-v3") == (
        "no line the v6.1 checker reads as DLRM_NE, DLRM_ACC, DLRM_AUC for dlrm-v3")
    full = auc + ("\nmetric/lifetime_ne/rating: 0.81000\nmetric/lifetime_accuracy/rating: "
                  "0.75000\nmetric/lifetime_gauc/rating: 0.70000\nhash=" + "0" * 64)
    assert checker_lines_problem(full, "dlrm-v3") is None
    assert checker_lines_problem("mAP=40.000%", "yolo-99") is None
    assert checker_lines_problem("accuracy=75.000%, good=3, total=4", "resnet") is None
    assert "as acc for resnet" in checker_lines_problem("mAP=40.000%", "resnet")


# --------------------------------------------------------------------------- packing

@pytest.mark.parametrize("source", ["estimated", "inherited"])
def test_the_packer_refuses_estimated_and_inherited_accuracy(source, tmp_path):
    r = {"study": "s", "trial": 3, "scenario": "Offline", "fidelity": "compliant",
         "state": "complete", "cause": None, "log_dir": "trials/x", "accuracy_source": source,
         "accuracy_from": "s/1" if source == "inherited" else None,
         "config": "{}", "system": "{}", "platform": "p", "node": "n"}
    problems = dict(load_result(tmp_path, r).problems)
    assert problems["acc.source"].startswith(f"accuracy {source}")
    assert ("from s/1" in problems["acc.source"]) == (source == "inherited")
    assert "acc.source" not in dict(load_result(tmp_path, {**r, "accuracy_source": "measured"}).problems)
    assert "acc.source" not in dict(load_result(tmp_path, {**r, "accuracy_source": None}).problems)
    assert "acc.source" not in checks.DRAFT_WAIVABLE  # a --draft tree still fails on it


def test_map_and_auc_lines_are_checked_against_the_logged_sample_count():
    from experiments.loadgen_logs import DetailLog

    acc = DetailLog({"qsl_reported_total_count": 400, "effective_accuracy_sample_count": 400})
    perf = DetailLog({"result_validity": "VALID", "effective_scenario": "Offline"})
    rules = {rule for rule, _ in checks.run_problems(perf, acc, None, 400, "yolo-99")}
    assert "acc.dataset" not in rules  # mAP= counts no samples: the log's count decides
    short = DetailLog({"qsl_reported_total_count": 100})
    rules = {rule for rule, _ in checks.run_problems(perf, short, None, 400, "dlrm-v3")}
    assert "acc.dataset" in rules
    rules = {rule for rule, _ in checks.run_problems(perf, acc, None, 400, "resnet")}
    assert "acc.dataset" in rules  # a top-1 line must state its total
