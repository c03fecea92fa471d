"""Reading what LoadGen wrote: ``mlperf_log_detail.txt`` and ``mlperf_log_accuracy.json``.

Metrics come from the detail log's ``:::MLLOG`` keys, never from the summary text (whose
wording changed in 2025). Every figure the project reports about speed passes through here.
Published results of older rounds (plain-text detail logs, summaries only) are read by the
functions at the end, into the same key names.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


from experiments.mlperf import scenario as scenario_facts

DETAIL = "mlperf_log_detail.txt"
SUMMARY = "mlperf_log_summary.txt"
ACCURACY = "mlperf_log_accuracy.json"
PREFIX = ":::MLLOG "


@dataclass
class DetailLog:
    """The detail log as a key -> value map, plus the keys LoadGen flagged as errors."""

    values: dict[str, object]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def get(self, key: str, default=None):
        return self.values.get(key, default)

    @property
    def valid(self) -> bool:
        return self.values.get("result_validity") == "VALID"


def parse_detail(text: str) -> DetailLog:
    values: dict[str, object] = {}
    errors: list[str] = []
    warnings: list[str] = []
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        try:
            entry = json.loads(line[len(PREFIX):])
        except json.JSONDecodeError:
            continue  # a line cut short by a crash; the rest of the log still counts
        key, value = entry.get("key"), entry.get("value")
        values[key] = value
        meta = entry.get("metadata") or {}
        if meta.get("is_error"):
            errors.append(f"{key}: {value}")
        elif meta.get("is_warning"):
            warnings.append(f"{key}: {value}")
    return DetailLog(values, errors, warnings)


def read_detail(log_dir: str | Path) -> DetailLog:
    return parse_detail((Path(log_dir) / DETAIL).read_text())


@dataclass
class PerformanceMetrics:
    """The scenario's headline figures, in the units people quote them in."""

    scenario: str
    valid: bool
    latency_ms: float | None  # the scenario's headline latency (see headline_latency_key)
    p90_latency_ms: float | None
    qps: float | None  # samples per second
    query_count: int | None
    invalid_reason: str | None
    errors: list[str]




def _ms(value) -> float | None:
    return None if value is None else float(value) / 1e6


def performance_metrics(log: DetailLog, scenario: str) -> PerformanceMetrics:
    facts = scenario_facts(scenario)
    latency = log.get(facts.latency_key)
    if latency is None:  # short runs may not reach early stopping's minimum query count
        latency = log.get("result_90.00_percentile_latency_ns")
    if facts.throughput:
        qps = log.get(facts.headline_key)
    else:
        per_query = log.get("effective_samples_per_query", 1) or 1
        qps_q = log.get("result_qps_with_loadgen_overhead")
        qps = None if qps_q is None else float(qps_q) * float(per_query)
    count = log.get("result_query_count")
    return PerformanceMetrics(
        scenario=scenario,
        valid=log.valid,
        latency_ms=_ms(latency),
        p90_latency_ms=_ms(log.get("result_90.00_percentile_latency_ns")),
        qps=None if qps is None else float(qps),
        query_count=None if count is None else int(count),
        invalid_reason=None if log.valid else str(log.get("result_invalid_reason", "")) or None,
        errors=list(log.errors),
    )


def read_accuracy_log(path: str | Path) -> dict[int, bytes]:
    """qsl_idx -> response bytes, decoded from the hex ``data`` of each accuracy entry.
    What the bytes mean is the task's business (its workload scores them)."""
    entries = json.loads(Path(path).read_text() or "[]")
    return {int(entry["qsl_idx"]): bytes.fromhex(entry["data"]) for entry in entries}


# --------------------------------------------------------------------------- older rounds
# LoadGen before MLLOG (v0.5, v0.7) wrote the detail log as plain text, one entry a line:
#   "pid": 23283, "tid": 23283, "ts": 75545ns : result_validity : VALID
# and every round writes the summary text, whose wording changed over the years ("90th
# percentile latency (ns)" in v0.5-v1.x, "90.0th" in 2025): both are read by pattern into
# the detail log's key names, so one headline rule reads any of them.
_PLAIN_LINE = re.compile(r'^"pid":\s*\d+,\s*"tid":\s*\d+,\s*"ts":\s*\d+\s*[num]?s\s*:\s*'
                         r'(?P<key>[^:]+?)\s*:\s*(?P<value>.*)$')
_SUMMARY_PATTERNS = [
    (re.compile(r"^Result is\s*:\s*(\S+)", re.I), "result_validity"),
    (re.compile(r"^Scenario\s*:\s*(\S.*?)\s*$", re.I), "effective_scenario"),  # "Single Stream" early
    (re.compile(r"^Min duration satisfied\s*:\s*(\S+)", re.I), "result_min_duration_met"),
    (re.compile(r"^Min queries satisfied\s*:\s*(\S+)", re.I), "result_min_queries_met"),
    (re.compile(r"^Samples per second\s*:\s*(\S+)", re.I), "result_samples_per_second"),
    (re.compile(r"^Scheduled samples per second\s*:\s*(\S+)", re.I),
     "result_scheduled_samples_per_second"),
    (re.compile(r"^Completed samples per second\s*:\s*(\S+)", re.I),
     "result_completed_samples_per_sec"),
    (re.compile(r"^Samples per query\s*:\s*(\S+)", re.I), "result_samples_per_query"),
    (re.compile(r"^QPS w/ loadgen overhead\s*:\s*(\S+)", re.I), "result_qps_with_loadgen_overhead"),
    (re.compile(r"^QPS w/o loadgen overhead\s*:\s*(\S+)", re.I),
     "result_qps_without_loadgen_overhead"),
    (re.compile(r"^Mean latency \(ns\)\s*:\s*(\S+)", re.I), "result_mean_latency_ns"),
    (re.compile(r"^Early stopping 90th percentile estimate\s*:\s*(\S+)", re.I),
     "early_stopping_latency_ss"),
    (re.compile(r"^Early stopping 99th percentile estimate\s*:\s*(\S+)", re.I),
     "early_stopping_latency_ms"),
]
# "90th percentile latency (ns)", "90.0th percentile latency (ns)", "90.00 percentile ..."
_PERCENTILE = re.compile(r"^(\d+(?:\.\d+)?)(?:th)?\s+percentile latency \(ns\)\s*:\s*(\d+)", re.I)


def _scalar(text: str):
    text = text.strip()
    low = text.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def is_mllog(text: str) -> bool:
    return any(line.startswith(PREFIX) for line in text.splitlines())


def parse_plain_detail(text: str) -> DetailLog:
    """A pre-MLLOG (v0.5/v0.7) detail log as the same key -> value map; an entry whose key
    is ERROR or WARNING is kept as an error or warning."""
    values: dict[str, object] = {}
    errors: list[str] = []
    warnings: list[str] = []
    for line in text.splitlines():
        m = _PLAIN_LINE.match(line.strip())
        if not m:
            continue
        key, value = m["key"], m["value"]
        if key.upper().startswith("ERROR"):
            errors.append(value)
        elif key.upper().startswith("WARNING"):
            warnings.append(value)
        else:
            values[key] = _scalar(value)
    return DetailLog(values, errors, warnings)


def parse_summary(text: str) -> DetailLog:
    """``mlperf_log_summary.txt`` read by pattern into detail-log key names
    (``result_validity``, ``result_90.00_percentile_latency_ns``, ...). The headline line
    ("90th percentile latency (ns)") and the additional stats line ("90.00 percentile")
    both land on the percentile's key."""
    values: dict[str, object] = {}
    for raw in text.splitlines():
        line = raw.strip()
        m = _PERCENTILE.match(line)
        if m:
            values.setdefault(f"result_{float(m[1]):.2f}_percentile_latency_ns", int(m[2]))
            continue
        for pattern, key in _SUMMARY_PATTERNS:
            m = pattern.match(line)
            if m:
                values.setdefault(key, _scalar(m[1]))
                break
    return DetailLog(values)
