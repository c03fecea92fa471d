"""Reports read the run's metric and objectives from its records, and pareto.html's hover
text, floor, colours, shapes and front table are what a reader needs (checked on the
figure plotly draws, not by eye; the README says how the page was looked at)."""
from __future__ import annotations

import json

import plotly.graph_objects as go

from experiments import report, report_html
from experiments.records import Records
from experiments.results_table import markdown

FLOOR = 0.5


def row(trial, backend, precision, latency, ap, state="complete", **kw):
    params = {"backend": backend, "precision": precision, "resolution": 64,
              f"{backend}.num_threads": 2, "score_threshold": 0.3}
    return {"study": "det.x8664", "trial": trial, "state": state, "fidelity": "short",
            "platform": "x8664", "node": "box", "backend": backend,
            "model": f'ssd "tiny" <{precision}>', "scenario": "SingleStream",
            "objective": "latency_ms", "params": json.dumps(params), "latency_ms": latency,
            "p90_latency_ms": latency * 0.9, "qps": 1000 / latency, "accuracy": ap,
            "accuracy_metric": "mAP", "accuracy_extras": json.dumps({"AP50": ap + 0.2}),
            "accuracy_floor": FLOOR, "valid": True, "log_dir": f"trials/det.x8664/{trial:05d}/short",
            "started_at": 1_700_000_000 + trial, **kw}


def detection_run(tmp_path):
    rec = Records(tmp_path)
    for r in (row(0, "onnxruntime", "fp32", 10.0, 0.62), row(1, "onnxruntime", "int8", 4.0, 0.58),
              row(2, "litert", "int8", 3.0, 0.41, "infeasible",
                  cause='mAP 0.41 below floor 0.5 "quoted" & <tagged>'),
              row(3, "litert", "fp32", 12.0, 0.60)):
        rec.add(r)
    return rec.rows


def test_the_page_names_the_metric_and_scenario_and_has_the_front_table(tmp_path):
    detection_run(tmp_path)
    paths = report.render(tmp_path)
    page = paths["html"].read_text()
    assert "top-1" not in page and "top1" not in page
    assert "mAP (higher is better)" in page and "latency (ms, lower is better)" in page
    assert "SingleStream; latency = LoadGen&#x27;s 90th percentile latency" in page
    for head in ("p90 latency (ms)", "throughput (samples/s)", "LoadGen logs", "knobs"):
        assert f"<th>{head}</th>" in page
    assert '<a href="trials/det.x8664/00001/short">' in page
    assert "accuracy_metric" in paths["csv"].read_text().splitlines()[0]


def test_hover_is_one_line_per_field_and_the_floor_is_drawn(tmp_path):
    rows = detection_run(tmp_path)
    front = report.fronts(rows)["det.x8664"]
    fig = report_html.study_figure("det.x8664", rows, rows, front, {}, [], go).to_dict()
    points = [t for t in fig["data"] if t.get("text") and t.get("x") != [None]]
    text = {t["name"]: t["text"] for t in points}
    bad = text["litert (infeasible)"][0]
    lines = bad.split("<br>")
    assert lines[:3] == ["trial 2 (infeasible)", "runtime: litert",
                         "model: ssd \"tiny\" &lt;int8&gt; (int8)"]
    assert "knobs: num_threads=2, score_threshold=0.3" in lines
    assert "latency: 3 ms (p90 2.7 ms)" in lines and "mAP: 0.4100 (AP50 0.61)" in lines
    assert 'cause: mAP 0.41 below floor 0.5 "quoted" &amp; &lt;tagged&gt;' in lines
    assert "&quot;" not in json.dumps(fig["data"])  # plotly would show it as is
    assert all(t["hovertemplate"] == "%{text}<extra></extra>" for t in points)
    # colour by runtime, shape by precision, open shapes for infeasible points
    colours = {t["name"]: t["marker"]["color"] for t in points}
    assert colours["onnxruntime"] != colours["litert"] == colours["litert (infeasible)"]
    assert text and points[0]["marker"]["symbol"] in (["circle"], ["square"], ["square-open"])
    assert {s for t in points for s in t["marker"]["symbol"]} == {"circle", "square",
                                                                  "square-open"}
    (floor,) = fig["layout"]["shapes"]
    assert floor["y0"] == floor["y1"] == FLOOR
    assert fig["layout"]["yaxis"]["title"]["text"] == "mAP (higher is better)"
    # the log latency axis labels every tick in full (plotly's own labels 0.5 ms "5")
    assert fig["layout"]["xaxis"]["ticktext"] == ["2", "5", "10", "20"]


def test_log_ticks_span_the_values_one_two_five():
    assert report_html.log_ticks([0.56, 1.19, 15.0]) == [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]
    assert report_html.log_ticks([]) == []


def test_results_table_names_the_metric():
    rows = [{"system": "pi", "model": "ssd", "benchmark": "ssd-small", "scenario": "SingleStream",
             "value": 3.0, "unit": "ms", "metric": "latency", "accuracy": 22.35,
             "accuracy_metric": "mAP", "valid": "VALID", "inferred_from": ""}]
    text = markdown(rows)
    assert "22.350 mAP" in text and "top-1" not in text


def test_last_bit_accuracy_differences_do_not_make_front_points():
    from experiments.pareto import front

    rows = [{"trial": 0, "state": "complete", "qps": 435.0, "accuracy": 0.883003},
            {"trial": 1, "state": "complete", "qps": 8.0, "accuracy": 0.885218},  # +1e-6
            {"trial": 2, "state": "complete", "qps": 370.0, "accuracy": 0.885217}]
    assert [r["trial"] for r in front(rows, "qps")] == [0, 2]
