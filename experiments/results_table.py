"""The results table of a packed MLPerf tree (ours or anyone's): one row per system, model
and scenario, each figure computed from the logs as the checker computes it.

    python -m experiments results DIR [--format md|csv]
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from experiments.check import benchmark_of
from experiments.mlperf import parse_accuracy_txt
from experiments.loadgen_logs import DETAIL, DetailLog, parse_detail
from experiments.mlperf import (MULTISTREAM_SAMPLES_PER_QUERY, SCENARIO_NAMES, SCENARIOS,
                                scenario_from_folder)

TABLE_COLUMNS = ["division", "submitter", "system", "model", "benchmark", "scenario", "metric",
                 "value", "unit", "accuracy", "accuracy_metric", "valid", "inferred_from"]


def headline(perf: DetailLog, scenario: str) -> tuple[float | None, str | None]:
    """(value, inferred-from scenario) as the checker computes the scenario's result."""
    measured = perf.get("effective_scenario")
    facts = SCENARIOS[scenario]
    if measured == scenario:
        value = perf.get(facts.headline_key)
        return (None if value is None else float(value) / facts.headline_scale), None
    if (measured, scenario) == ("SingleStream", "MultiStream"):
        value = perf.get("early_stopping_latency_ms")
        return (None if value is None else float(value) * MULTISTREAM_SAMPLES_PER_QUERY / 1e6), measured
    if (measured, scenario) == ("SingleStream", "Offline"):
        value = perf.get("result_qps_without_loadgen_overhead")
        return (None if value is None else float(value)), measured
    if (measured, scenario) == ("MultiStream", "Offline"):
        mean = perf.get("result_mean_query_latency_ns")
        spq = perf.get("effective_samples_per_query") or MULTISTREAM_SAMPLES_PER_QUERY
        return (None if not mean else float(spq) * 1e3 / (float(mean) / 1e6)), measured
    return None, measured


def results_table(root: str | Path) -> list[dict[str, Any]]:
    """One row per system/model/scenario of a packed tree, from its logs."""
    root = Path(root)
    out = []
    for perf_log in sorted(root.glob("*/*/results/*/*/*/performance/run_1/" + DETAIL)):
        sdir = perf_log.parents[2]
        model, system, org, division = sdir.parent, sdir.parents[1], sdir.parents[3], sdir.parents[4]
        scenario = scenario_from_folder(sdir.name)
        if scenario is None:
            continue
        mapping_file = org / "model_mapping.json"
        mapping = json.loads(mapping_file.read_text()) if mapping_file.is_file() else {}
        perf = parse_detail(perf_log.read_text())
        value, inferred = headline(perf, scenario)
        acc_txt = sdir / "accuracy" / "accuracy.txt"
        acc = parse_accuracy_txt(acc_txt.read_text()) if acc_txt.is_file() else None
        metric, unit = SCENARIOS[scenario].metric, SCENARIOS[scenario].unit
        out.append({"division": division.name, "submitter": org.name, "system": system.name,
                    "model": model.name, "benchmark": benchmark_of(model.name, mapping) or "",
                    "scenario": scenario, "metric": metric,
                    "value": None if value is None else round(value, 4), "unit": unit,
                    "accuracy": None if acc is None else acc.percent,
                    "accuracy_metric": None if acc is None else acc.metric,  # top1 | mAP | AUC
                    "valid": perf.get("result_validity"), "inferred_from": inferred or ""})
    order = list(SCENARIO_NAMES)  # SingleStream, MultiStream, Offline, Server
    return sorted(out, key=lambda r: (r["division"], r["submitter"], r["system"], r["model"],
                                      order.index(r["scenario"])))


def write_table(rows: list[dict[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / "results.csv", out_dir / "results.md"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    md_path.write_text(markdown(rows) + "\n")
    return csv_path, md_path


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ["system", "model", "scenario", "result", "accuracy (%)", "validity", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        value = "-" if r["value"] is None else f"{r['value']:.4g} {r['unit']}"
        note = f"inferred from {r['inferred_from']}" if r["inferred_from"] else ""
        lines.append("| " + " | ".join([
            r["system"], f"{r['model']} ({r['benchmark']})", r["scenario"],
            f"{value} ({r['metric']})",
            "-" if r["accuracy"] is None else f"{r['accuracy']:.3f} {r.get('accuracy_metric') or ''}".strip(),
            str(r["valid"]), note]) + " |")
    return "\n".join(lines)
