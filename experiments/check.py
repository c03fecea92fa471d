"""Our own checks of an MLPerf inference submission tree (open division, checker v6.1).

    python -m experiments check DIR [--draft]

DIR is what ``python -m experiments submission`` wrote (the folder holding ``open/``).
Every rule of the v6.1 submission tree that applies to an open-division result of our
tasks (classification as resnet, detection as yolo-99, recommendation as dlrm-v3: layout,
system JSON fields, seeds, durations, sample counts, the accuracy lines the checker reads)
is one named rule here; each failure prints ``FAIL <rule> <path>: <why>`` and the exit
status is non-zero if any failed. The result-level rules (``RUN_RULES``) are also what the
packer refuses on. ``--draft`` waives exactly what a ``--draft`` tree of reduced-duration
(test-setting) runs is expected to fail (``DRAFT_WAIVABLE``), printed as ``waived``.

What the official checker does beyond this: TEST01/TEST04 compliance (closed only),
accuracy targets (closed only), power. What we do that it does not: ``result_validity``
(the checker never reads it), the dataset size of our own workloads (the checker knows
only MLPerf's datasets: a digits, canvases or click-logs tree needs its
``--skip-dataset-size-check``), and where the accuracy figure came from (``acc.source``:
an estimated or inherited figure is never submitted).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.loadgen_logs import ACCURACY, DETAIL, SUMMARY, DetailLog, parse_detail
from experiments.mlperf import (BENCHMARKS, CATEGORY_SCENARIOS, CHECKER_ALIASES, COMPLIANT,
                                COMPLIANT_MIN_DURATION_MS, INFERABLE, KNOWN_BENCHMARKS,
                                SCENARIOS, checker_lines_problem, parse_accuracy_txt,
                                scenario_from_folder)
from experiments.system_json import SYSTEM_KEYS, SYSTEM_KEYS_NON_EMPTY, VALID_DIVISIONS, VALID_STATUS

# The seeds compiled into LoadGen 6.0.x (what FromConfig gives; read from the
# requested_*_rng_seed keys of a FromConfig'd 6.0.17 detail log); checker v6.1 expects them.
OFFICIAL_SEEDS = {"qsl_rng_seed": 2085463073848966840,
                  "sample_index_rng_seed": 2747215439041700203,
                  "schedule_rng_seed": 16159082839903944936}
MAX_ACCURACY_LOG_SIZE = 10 * 1024  # truncate_accuracy_log.py / checker constant
PERFORMANCE_SAMPLE_COUNT = {b.name: b.performance_sample_count for b in BENCHMARKS.values()}
DATASET_SIZE = {b.name: b.dataset_size for b in BENCHMARKS.values() if b.dataset_size}
SERVER_LATENCY_NS = {b.name: b.server_latency_ns for b in BENCHMARKS.values()
                     if b.server_latency_ns}
# The only accuracy figure a submission may carry: the whole set scored by this run (None:
# a record from before accuracy had a source). Estimated and inherited ones are refused.
PACKABLE_ACCURACY = (None, "measured")
MEASUREMENTS_KEYS = ("starting_weights_filename", "retraining", "input_data_types",
                     "weight_data_types", "weight_transformations")
HASH_LINE = re.compile(r"^hash=([0-9a-f]{64})$")
MANIFEST = "tuner_submission.json"
DRAFT_MARK = "DRAFT"
# What a --draft tree of reduced-duration (test-setting) runs fails by design.
DRAFT_WAIVABLE = frozenset({"tree.draft", "perf.fidelity", "perf.min_duration"})
SCENARIO_FILES = ("performance/run_1/" + DETAIL, "performance/run_1/" + SUMMARY,
                  "accuracy/" + DETAIL, "accuracy/accuracy.txt", "accuracy/" + ACCURACY,
                  "measurements.json", "user.conf", "README.md")


@dataclass
class Failure:
    rule: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule} {self.path}: {self.message}"


# --------------------------------------------------------------------------- one result

def benchmark_of(model_dir: str, mapping: dict[str, str] | None = None) -> str | None:
    """The MLPerf benchmark a model folder counts as (the checker's own lookup order)."""
    if model_dir in KNOWN_BENCHMARKS:
        return model_dir
    return CHECKER_ALIASES.get(model_dir) or (mapping or {}).get(model_dir)


def run_problems(perf: DetailLog, acc: DetailLog | None, accuracy_total: int | None,
                 dataset_size: int | None, benchmark: str = "resnet") -> list[tuple[str, str]]:
    """(rule, why) for every reason a measured result may not be submitted."""
    out: list[tuple[str, str]] = []
    if not perf.valid:
        out.append(("perf.valid", f"performance run is {perf.get('result_validity') or 'not VALID'}"
                    + (f" ({perf.get('result_invalid_reason')})"
                       if perf.get("result_invalid_reason") else "")))
    if perf.errors:
        out.append(("perf.errors", "LoadGen logged error(s): " + "; ".join(perf.errors)))
    if acc is not None and acc.errors:
        out.append(("acc.errors", "accuracy run: LoadGen logged error(s): " + "; ".join(acc.errors)))
    duration = perf.get("effective_min_duration_ms")
    if duration is None or int(duration) < COMPLIANT_MIN_DURATION_MS:
        out.append(("perf.min_duration", f"effective_min_duration_ms {duration} < "
                    f"{COMPLIANT_MIN_DURATION_MS} (a short run, not a compliant one)"))
    for key, official in OFFICIAL_SEEDS.items():
        for log, which in ((perf, "performance"), (acc, "accuracy")):
            seed = None if log is None else log.get(f"effective_{key}")
            if log is not None and seed != official:
                why = (" (seeds at 0: TestSettings set by hand, without FromConfig)"
                       if seed == 0 else "")
                out.append(("seeds", f"{which} run effective_{key} {seed} != the "
                            f"official {official}{why}"))
    need = PERFORMANCE_SAMPLE_COUNT.get(benchmark)
    count = perf.get("effective_performance_sample_count")
    if need is not None and (count is None or int(count) < need):
        out.append(("perf.sample_count", f"effective_performance_sample_count {count} < "
                    f"{need} required for {benchmark}"))
    scenario = perf.get("effective_scenario")
    if SCENARIOS[scenario].early_stopping_min_queries and perf.get("early_stopping_met") is False:
        out.append(("perf.early_stopping", f"early stopping not met: "
                    f"{perf.get('early_stopping_result')}"))
    bound = SERVER_LATENCY_NS.get(benchmark)
    if scenario == "Server" and bound and int(perf.get("effective_target_latency_ns") or 0) > bound:
        out.append(("perf.latency", f"Server target latency "
                    f"{perf.get('effective_target_latency_ns')} ns > {bound} ns for {benchmark}"))
    if dataset_size is not None:
        logged = None if acc is None else (acc.get("effective_accuracy_sample_count")
                                           or acc.get("qsl_reported_total_count"))
        counted = [(logged, "accuracy run sample count")]
        if accuracy_total is not None or benchmark not in BENCHMARKS \
                or BENCHMARKS[benchmark].accuracy_txt_key == "accuracy":
            counted.insert(0, (accuracy_total, "accuracy.txt total"))  # mAP= and AUC= count none
        for total, what in counted:
            if total is None or int(total) < dataset_size:
                out.append(("acc.dataset", f"{what} {total} < {dataset_size}: the accuracy run "
                            "covered part of the validation set"))
    return out


# --------------------------------------------------------------------------- the tree

def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def check_system(path: Path, division: str, submitter: str) -> list[Failure]:
    where = str(path)
    try:
        desc = _read_json(path)
    except (OSError, json.JSONDecodeError) as exc:
        return [Failure("system.file", where, f"unreadable system description: {exc}")]
    out = []
    missing = [k for k in SYSTEM_KEYS if k not in desc]
    if missing:
        out.append(Failure("system.keys", where, f"missing key(s) {missing}"))
    empty = [k for k in SYSTEM_KEYS_NON_EMPTY if k in desc and str(desc[k]).strip() == ""]
    if empty:
        out.append(Failure("system.non_empty", where, f"empty field(s) {empty}"))
    if desc.get("division") != division:
        out.append(Failure("system.division", where,
                           f"division {desc.get('division')!r} != folder {division!r}"))
    if desc.get("submitter") != submitter:
        out.append(Failure("system.submitter", where,
                           f"submitter {desc.get('submitter')!r} != folder {submitter!r}"))
    if desc.get("status") not in VALID_STATUS:
        out.append(Failure("system.status", where,
                           f"status {desc.get('status')!r}; one of {VALID_STATUS}"))
    if category(desc) is None:
        out.append(Failure("system.type", where, f"system_type {desc.get('system_type')!r}; "
                           "edge, datacenter or both"))
    accs = desc.get("accelerators_per_node")
    no_accelerator = str(desc.get("accelerator_model_name", "")).strip() in ("", "N/A", "none")
    if not isinstance(accs, str) or not accs.isdigit() or (no_accelerator and accs != "0"):
        out.append(Failure("system.accelerators", where, f"accelerators_per_node {accs!r}: a "
                           "count as a string, \"0\" on a CPU-only system"))
    if any(DRAFT_MARK in str(desc.get(k, "")) for k in ("sw_notes", "hw_notes")):
        out.append(Failure("tree.draft", where, "marked DRAFT (packed with --draft)"))
    return out


def category(desc: dict[str, Any]) -> set[str] | None:
    kinds = {k.strip() for k in str(desc.get("system_type", "")).split(",")}
    return kinds if kinds and kinds <= {"edge", "datacenter"} else None


def check_scenario(path: Path, scenario: str, benchmark: str, kinds: set[str],
                   dataset_size: int | None) -> list[Failure]:
    out: list[Failure] = []

    def fail(rule: str, message: str, at: Path = path) -> None:
        out.append(Failure(rule, str(at), message))

    allowed = set().union(*(set(CATEGORY_SCENARIOS[k]) for k in kinds))
    if scenario not in allowed:
        fail("scenario.category", f"{scenario} is not a {'/'.join(sorted(kinds))} scenario "
             f"(allowed: {', '.join(sorted(allowed))})")
    for rel in SCENARIO_FILES:
        f = path / rel
        if not f.is_file() or f.stat().st_size == 0:
            fail("files", f"{rel} missing or empty", f)
    if out and any(r.rule == "files" and DETAIL in r.path for r in out):
        return out  # no logs to check further
    perf = parse_detail((path / "performance/run_1" / DETAIL).read_text())
    acc = parse_detail((path / "accuracy" / DETAIL).read_text())
    acc_txt = path / "accuracy" / "accuracy.txt"
    text = acc_txt.read_text() if acc_txt.is_file() else ""
    parsed = parse_accuracy_txt(text)
    if parsed is None:
        fail("accuracy.format", "no metric line ('accuracy=XX.XXX%, good=N, total=M', "
             "'mAP=XX.XXX%' or 'AUC=XX.XXX%')", acc_txt)
    elif (want := BENCHMARKS.get(benchmark)) and parsed.key != want.accuracy_txt_key:
        fail("accuracy.metric", f"{benchmark} is scored by {want.accuracy_txt_key}=, "
             f"the file gives {parsed.key}=", acc_txt)
    if why := checker_lines_problem(text, benchmark):
        fail("accuracy.lines", why, acc_txt)
    if not any(HASH_LINE.match(line.strip()) for line in text.splitlines()):
        fail("accuracy.hash", "no 'hash=<sha256>' line (truncate_accuracy_log.py adds it)",
             acc_txt)
    acc_json = path / "accuracy" / ACCURACY
    if acc_json.is_file() and acc_json.stat().st_size > MAX_ACCURACY_LOG_SIZE:
        fail("accuracy.size", f"{acc_json.stat().st_size} bytes > {MAX_ACCURACY_LOG_SIZE} "
             "(not truncated)", acc_json)
    for rule, why in run_problems(perf, acc, parsed[2] if parsed else None, dataset_size,
                                  benchmark):
        fail(rule, why)
    measured = perf.get("effective_scenario")
    if measured != scenario:
        if (measured, scenario) not in INFERABLE or "edge" not in kinds:
            fail("scenario.inferred", f"{scenario} holds a {measured} run: inference is allowed "
                 f"only on edge systems for {sorted(INFERABLE)}")
    mpath = path / "measurements.json"
    if mpath.is_file() and mpath.stat().st_size:
        try:
            meas = _read_json(mpath)
            bad = [k for k in MEASUREMENTS_KEYS if not str(meas.get(k, "")).strip()]
            if bad:
                fail("measurements", f"missing or empty key(s) {bad}", mpath)
        except json.JSONDecodeError as exc:
            fail("measurements", f"not JSON: {exc}", mpath)
    return out


def _dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def check_tree(root: str | Path) -> tuple[list[Failure], int]:
    """(failures, number of scenario results checked)."""
    root = Path(root)
    failures: list[Failure] = []
    manifest = _read_json(root / MANIFEST) if (root / MANIFEST).is_file() else {}
    sizes = {(r["system"], r["model"]): r.get("dataset_size")
             for r in manifest.get("results", [])}
    if manifest.get("draft"):
        failures.append(Failure("tree.draft", str(root / MANIFEST), "packed with --draft"))
    for r in manifest.get("results", []):
        where = f"{r['system']}/{r['model']}/{r['scenario']}"
        if r.get("fidelity") not in (None, COMPLIANT):
            failures.append(Failure("perf.fidelity", where,
                                    f"measured at fidelity {r['fidelity']!r}, not 'compliant'"))
        if r.get("accuracy_source") not in PACKABLE_ACCURACY:
            failures.append(Failure("acc.source", where, f"accuracy {r['accuracy_source']}, "
                                    "not measured over the whole set by this run"))
    divisions = [d for d in _dirs(root) if d.name in VALID_DIVISIONS]
    if not divisions:
        return [Failure("folders", str(root), "no closed/, open/ or network/ folder")], 0
    checked = 0
    for div in divisions:
        orgs = _dirs(div)
        if not orgs:
            failures.append(Failure("folders", str(div), "no submitter folder"))
        for org in orgs:
            src = org / "src"
            if not src.is_dir() or not any(src.iterdir()):
                failures.append(Failure("src", str(src), "src/ missing or empty (v6.x wants "
                                        "src/, not code/)"))
            mapping: dict[str, str] = {}
            mfile = org / "model_mapping.json"
            if mfile.exists():
                try:
                    mapping = _read_json(mfile)
                    bad = {k: v for k, v in mapping.items() if v not in KNOWN_BENCHMARKS}
                    if bad:
                        failures.append(Failure("model_mapping", str(mfile), f"value(s) not a "
                                                f"benchmark name: {bad}"))
                except (json.JSONDecodeError, AttributeError) as exc:
                    failures.append(Failure("model_mapping", str(mfile), f"not a JSON map: {exc}"))
            results = org / "results"
            if not _dirs(results):
                failures.append(Failure("folders", str(results), "no results/<system>/"))
            for system in _dirs(results):
                sys_json = org / "systems" / f"{system.name}.json"
                if not sys_json.is_file():
                    failures.append(Failure("system.file", str(sys_json), "missing"))
                    kinds = {"edge"}
                else:
                    failures += check_system(sys_json, div.name, org.name)
                    kinds = category(_read_json(sys_json)) or {"edge"}
                for model in _dirs(system):
                    bench = benchmark_of(model.name, mapping)
                    if bench is None:
                        failures.append(Failure("model_mapping", str(model), f"model folder "
                                                f"{model.name!r} is no known benchmark and not in "
                                                "model_mapping.json"))
                        bench = "resnet"
                    size = sizes.get((system.name, model.name), DATASET_SIZE.get(bench))
                    for sdir in _dirs(model):
                        scenario = scenario_from_folder(sdir.name)
                        if scenario is None:
                            failures.append(Failure("folders", str(sdir), "not a scenario name"))
                            continue
                        failures += check_scenario(sdir, scenario, bench, kinds, size)
                        checked += 1
                    if not _dirs(model):
                        failures.append(Failure("folders", str(model), "no scenario folder"))
                    failures += check_category(model, bench, kinds)
    return failures, checked


def check_category(model: Path, bench: str, kinds: set[str]) -> list[Failure]:
    """A benchmark runs in its MLPerf categories only (dlrm-v3: datacenter), in every
    scenario the system's category requires (a folder each, measured or inferred)."""
    facts = BENCHMARKS.get(bench)
    mine = kinds & set(facts.categories) if facts else {"any"}
    if not mine:
        return [Failure("benchmark.category", str(model), f"{bench} is a "
                        f"{'/'.join(facts.categories)} benchmark; this system is "
                        f"{'/'.join(sorted(kinds))}")]
    missing = sorted(set().union(*(CATEGORY_SCENARIOS.get(k, ()) for k in mine))
                     - {scenario_from_folder(d.name) for d in _dirs(model)})
    return [Failure("scenario.required", str(model), f"{bench} on a {'/'.join(sorted(mine))} "
                    f"system needs {', '.join(missing)} too")] if missing else []


def main(root: str, draft: bool = False, out=print) -> int:
    failures, checked = check_tree(root)
    hard = [f for f in failures if not (draft and f.rule in DRAFT_WAIVABLE)]
    for f in failures:
        out(("waived (draft) " if f not in hard else "FAIL ") + str(f))
    rules = sorted({f.rule for f in hard})
    out(f"{checked} result(s) checked: " + (f"{len(hard)} failure(s) in rule(s) "
                                           f"{', '.join(rules)}" if hard else "all rules pass"))
    return 1 if hard or not checked else 0


def _cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments check")
    ap.add_argument("dir")
    ap.add_argument("--draft", action="store_true",
                    help=f"waive what a --draft tree fails by design: {sorted(DRAFT_WAIVABLE)}")
    args = ap.parse_args(argv)
    return main(args.dir, args.draft)


if __name__ == "__main__":
    sys.exit(_cli())
