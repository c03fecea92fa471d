"""One promoted record and what the packer derives from it, all read from the record
itself (the worker recorded the benchmark, the dataset size, the weights facts and the
node's facts when it measured): why it must not be submitted (``refusals``), its
measurements.json, and the system it ran on."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.check import PACKABLE_ACCURACY, run_problems
from experiments.emulated import refusal as emulation_refusal
from experiments.mlperf import parse_accuracy_txt
from experiments.loadgen_logs import DETAIL, parse_detail
from experiments.mlperf import COMPLIANT


@dataclass
class Result:
    """One promoted record and what the packer derives from it."""

    row: dict[str, Any]
    config: dict[str, Any]
    system_info: dict[str, Any]
    log_dir: Path
    benchmark: str
    dataset_size: int | None
    measurements: dict[str, str]
    problems: list[tuple[str, str]] = field(default_factory=list)
    system: str = ""
    model_dir: str = ""

    @property
    def scenario(self) -> str:
        return self.row["scenario"]

    @property
    def label(self) -> str:
        return f"{self.row['study']} #{self.row['trial']} {self.scenario}"


def load_result(run_dir: Path, row: dict[str, Any]) -> Result:
    """A promoted record with what packing needs, all read from the record itself (the
    worker recorded the benchmark, the dataset size and the weights facts when it measured),
    so packing never rebuilds a workload or needs its files here."""
    config = json.loads(row["config"])
    system = json.loads(row["system"] or "{}")
    res = Result(row, config, system, run_dir / row["log_dir"],
                 system.get("benchmark", "resnet"), system.get("dataset_size"),
                 measurements(config, system))
    res.problems = refusals(res)
    return res


def refusals(res: Result) -> list[tuple[str, str]]:
    """(rule, why) for each reason this result must not be submitted."""
    row, out = res.row, []
    emulated = emulation_refusal({**row, "system": res.system_info})
    if emulated:
        out.append(("system.emulated", emulated))
    if row["fidelity"] != COMPLIANT:
        out.append(("perf.fidelity", f"fidelity {row['fidelity']!r}: measured with the "
                    "test-only reduced duration, not a compliant run"))
    if row["state"] == "failed":
        out.append(("perf.failed", f"the measurement failed: {row['cause']}"))
    source = row.get("accuracy_source")
    if source not in PACKABLE_ACCURACY:
        came = f" from {row['accuracy_from']}" if row.get("accuracy_from") else ""
        out.append(("acc.source", f"accuracy {source}{came}, not measured over the whole set "
                    "by this run: promote it again (promotion scores the whole set)"))
    perf_path = res.log_dir / "performance" / DETAIL
    acc_path = res.log_dir / "accuracy" / DETAIL
    if not perf_path.is_file():
        return out + [("files", f"no performance log at {perf_path}")]
    acc = parse_detail(acc_path.read_text()) if acc_path.is_file() else None
    if acc is None:
        out.append(("files", f"no accuracy log at {acc_path}"))
    txt = res.log_dir / "accuracy" / "accuracy.txt"
    parsed = parse_accuracy_txt(txt.read_text()) if txt.is_file() else None
    return out + run_problems(parse_detail(perf_path.read_text()), acc,
                              parsed[2] if parsed else None, res.dataset_size, res.benchmark)


def measurements(config: dict[str, Any], system: dict[str, Any]) -> dict[str, str]:
    """measurements.json: what the weights are and what was done to them, as the worker
    recorded it for the variant and runtime it measured."""
    if system.get("weights"):
        return dict(system["weights"])
    # a record from before the worker recorded them: say only what the config tells
    precision = str(config.get("model", {}).get("precision", system.get("precision", "fp32")))
    return {"starting_weights_filename": system.get("model_file") or "user-supplied model",
            "retraining": "unknown (not recorded with this result)",
            "input_data_types": "fp32", "weight_data_types": precision,
            "weight_transformations": "unknown (not recorded with this result)"}


def system_id(platform: str, node: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{platform}_{node}").strip("_")


def node_facts(res: Result) -> tuple[dict[str, Any], str]:
    """The measuring node's facts as promotion recorded them (never this machine's: the
    packer may run anywhere); without them only the platform and hostname are known."""
    facts = res.system_info.get("facts")
    if facts:
        return dict(facts), "recorded on the measuring node"
    return ({"platform": res.row["platform"], "hostname": res.row["node"]},
            "not recorded with the result: only its platform and hostname are known; "
            "give the rest with --system-overrides")


def describe_system(results: list[Result], org: str, division: str,
                    overrides: dict[str, Any]) -> tuple[dict[str, str], str]:
    from experiments.system_json import system_description

    facts, source = node_facts(results[0])
    # framework = the runtimes these results used, not every runtime the node has
    facts["runtime_versions"] = {r.row["backend"]: str(r.system_info.get("runtime_version", "?"))
                                 for r in results}
    kind = results[0].system_info.get("system_type", "edge")  # recorded by promote
    return system_description(facts, overrides, division=division, submitter=org,
                              system_type=kind), source
