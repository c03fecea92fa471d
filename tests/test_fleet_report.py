"""The fleet report from records of three platforms: one page, one front per platform, the
best configuration per platform at each accuracy level."""
from __future__ import annotations

from experiments import fleet_report


def row(platform, trial, latency, accuracy, state="complete", backend="onnxruntime"):
    return {"study": f"s.{platform}", "platform": platform, "trial": trial, "state": state,
            "fidelity": "short", "objective": "latency_ms", "scenario": "SingleStream", "latency_ms": latency,
            "accuracy": accuracy, "backend": backend, "model": f"m{trial}<b>"}


ROWS = [row("rpi4", 0, 5.0, 0.90), row("rpi4", 1, 9.0, 0.95), row("rpi4", 2, 20.0, 0.94),
        row("milan", 0, 0.5, 0.90), row("milan", 1, 0.9, 0.97, backend="tvm"),
        row("milan", 2, 0.1, 0.99, state="infeasible"),
        row("jetson-nano", 0, 2.0, 0.95, backend="tensorrt")]


def test_fronts_per_platform_and_best_at_each_level():
    fronts = fleet_report.platform_fronts(ROWS)
    assert {p: [r["trial"] for r in f] for p, (_, f) in fronts.items()} == \
        {"jetson-nano": [0], "milan": [0, 1], "rpi4": [0, 1]}  # dominated/infeasible left out
    table = {r["accuracy"]: r for r in fleet_report.best_at_levels(fronts)}
    assert sorted(table) == [0.9, 0.95, 0.97]
    assert table[0.95]["rpi4"]["trial"] == 1 and table[0.95]["milan"]["backend"] == "tvm"
    assert table[0.97]["rpi4"] is None and table[0.9]["milan"]["latency_ms"] == 0.5


def test_one_page_for_the_fleet_with_names_escaped(tmp_path):
    paths = fleet_report.write(tmp_path, ROWS)
    page = paths["fleet_html"].read_text()
    assert page.count("<th>") >= 4 and "jetson-nano" in page and "milan" in page
    assert "m1<b>" not in page and "m1&lt;b&gt;" in page
    assert paths["fleet_png"].read_bytes()[:4] == b"\x89PNG"
    assert fleet_report.write(tmp_path / "one", [r for r in ROWS if r["platform"] == "rpi4"]) == {}
