"""Published MLPerf inference results as trial records (fidelity ``published``).

    python -m experiments import TREE... --out RUN_DIR [--round vX.Y]

A results tree of any round (``<division>/<submitter>/results/<system>/<model>/<scenario>/
performance/run_1/`` + ``accuracy/accuracy.txt``, and ``systems/<system>.json``) becomes one
record per system x model x scenario in the ``trials.parquet`` schema, so published fronts
sit beside our own in the reports and a search strategy can be replayed on them
(``tuner.fleet.replay``). Each figure is read the way that round's checker read it:

- v0.5/v0.7: the summary text (the checkers of those rounds parsed it); the plain-text
  detail log fills in what the summary lacks;
- v1.0 and v1.1: the MLLOG detail log; SingleStream's headline is the 90th percentile
  (``result_90.00_percentile_latency_ns``: no early stopping yet);
- v2.0 on: the early-stopping estimate for SingleStream/MultiStream.

A result that cannot be read (a log or accuracy.txt missing or unparsable, no headline
figure) is reported with its path and why, and skipped: nothing is guessed. A system whose
framework is none of our runtimes, or whose device is none of our platform classes, is
imported all the same (``backend`` = its framework as published, ``platform`` =
``system-<its name>``): it sits in comparisons and reports, and replay and warm start leave
it out, saying so (``of_our_runtimes``). Each result's ``benchmark`` is what its folder was
in its round (v1.0's ``dlrm-99`` is ``dlrm``), ``compared_as`` what it counts as today.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from experiments.mlperf import (AccuracyLine, benchmark_in_round, current_benchmark,
                               parse_accuracy_txt)
from experiments.loadgen_logs import (DETAIL, SUMMARY, DetailLog, is_mllog, parse_detail,
                                      parse_plain_detail, parse_summary)
from experiments.mlperf import INFERABLE, PUBLISHED, SCENARIOS, scenario_from_folder
from experiments.published_names import (TASKS, UNMAPPED_PLATFORM, parse_model, platform_of,
                                         qualified, round_of, runtime_of, task_of)

MLLOG_CHECKER_FROM = (1, 0)  # from v1.0 the checker reads the detail log, before the summary
EARLY_STOPPING_FROM = (2, 0)  # from v2.0 the latency headline is the early-stopping estimate


@dataclass
class Problem:
    """A result that was not imported: where, and why."""

    path: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}: {self.why}"


def _round_tuple(name: str | None) -> tuple[int, int] | None:
    m = re.match(r"^v?(\d+)\.(\d+)", name or "")
    return (int(m[1]), int(m[2])) if m else None


# --------------------------------------------------------------------------- one result

def read_performance(run_dir: Path, round_name: str | None) -> tuple[DetailLog, str]:
    """The performance run's key -> value map and which log the headline comes from
    (``mllog``, ``summary`` or ``text``), the way the round's checker read it."""
    detail_path, summary_path = run_dir / DETAIL, run_dir / SUMMARY
    detail = detail_text = None
    if detail_path.is_file():
        detail_text = detail_path.read_text(errors="replace")
        detail = parse_detail(detail_text) if is_mllog(detail_text) else parse_plain_detail(detail_text)
    summary = parse_summary(summary_path.read_text(errors="replace")) if summary_path.is_file() else None
    if detail is None and summary is None:
        raise ValueError(f"neither {DETAIL} nor {SUMMARY} in {run_dir}")
    rnd = _round_tuple(round_name)
    mllog = detail is not None and is_mllog(detail_text or "")
    summary_first = summary is not None and (
        not mllog if rnd is None else rnd < MLLOG_CHECKER_FROM)
    if summary_first or detail is None:
        primary, secondary, source = summary, detail, "summary"
    else:
        primary, secondary, source = detail, summary, "mllog" if mllog else "text"
    values = {**(secondary.values if secondary else {}), **primary.values}
    errors = list(detail.errors if detail else [])
    return DetailLog(values, errors, list(detail.warnings if detail else [])), source


@dataclass
class Figures:
    latency_ms: float | None
    p90_latency_ms: float | None
    qps: float | None
    inferred_from: str | None


def headline(log: DetailLog, scenario: str, round_name: str | None) -> Figures:
    """The figures of a ``scenario`` folder's run as that round's checker read them;
    ValueError naming the missing key when the headline is not there."""
    # early LoadGen wrote "Single Stream", "Multi Stream"
    named = str(log.get("effective_scenario") or scenario)
    measured = scenario_from_folder(named.replace(" ", "")) or named
    if measured not in SCENARIOS:
        raise ValueError(f"unknown scenario {measured!r} in the log")
    if measured != scenario and (measured, scenario) not in INFERABLE:
        raise ValueError(f"a {measured} run in a {scenario} folder")
    rnd = _round_tuple(round_name)
    early = (log.get("early_stopping_latency_ss") is not None if rnd is None
             else rnd >= EARLY_STOPPING_FROM)
    p90 = log.get("result_90.00_percentile_latency_ns")
    if measured == "SingleStream":
        latency_key = "early_stopping_latency_ss" if early else "result_90.00_percentile_latency_ns"
    elif measured == "MultiStream":
        latency_key = "early_stopping_latency_ms" if early else "result_99.00_percentile_latency_ns"
    else:
        latency_key = SCENARIOS[measured].latency_key
    latency = log.get(latency_key)
    qps_key = {"Offline": "result_samples_per_second",
               "Server": ("result_completed_samples_per_sec" if early
                          else "result_scheduled_samples_per_second"),
               }.get(measured, "result_qps_with_loadgen_overhead")
    inferred = measured if measured != scenario else None
    if inferred == "SingleStream" and scenario == "Offline":
        qps_key = "result_qps_without_loadgen_overhead"  # the checker's inference rule
    elif inferred:
        raise ValueError(f"{scenario} inferred from {inferred}: not read by this importer")
    qps = log.get(qps_key)
    needed = qps_key if SCENARIOS[scenario].throughput else latency_key
    if (qps if SCENARIOS[scenario].throughput else latency) is None:
        raise ValueError(f"no {needed} in the performance logs")
    ms = lambda v: None if v is None else float(v) / 1e6  # noqa: E731
    return Figures(ms(latency), ms(p90), None if qps is None else float(qps), inferred)


_LINE_FORMS = {"accuracy": "'accuracy=N%, good=N, total=N'", "mAP": "'mAP=N%'", "AUC": "'AUC=N'"}


def read_accuracy(scenario_dir: Path, task: str | None = None) -> AccuracyLine:
    """The metric line of ``accuracy/accuracy.txt`` (``accuracy=`` for classification,
    ``mAP=`` for detection, ``AUC=`` for recommendation, wherever it stands: v1.0's DLRM
    prints a JSON dump first whose own "accuracy" is not the metric), ``percent`` as a
    fraction. ``task``: the model folder's task, whose metric the line must be."""
    path = scenario_dir / "accuracy" / "accuracy.txt"
    if not path.is_file():
        raise ValueError("no accuracy/accuracy.txt")
    parsed = parse_accuracy_txt(path.read_text(errors="replace"))
    wanted = TASKS.get(task or "")
    if parsed is None:
        forms = [_LINE_FORMS[wanted]] if wanted else list(_LINE_FORMS.values())
        raise ValueError(f"accuracy/accuracy.txt has no {' or '.join(forms)} line")
    if wanted and parsed.key != wanted:
        raise ValueError(f"accuracy/accuracy.txt gives {parsed.key}= but a {task} model is "
                         f"scored by {wanted}=")
    return parsed._replace(percent=round(parsed.percent / 100.0, 8))


# --------------------------------------------------------------------------- trees

def _results_dirs(tree: Path) -> list[Path]:
    """Every ``<submitter>/results`` folder at or below ``tree``."""
    if tree.name == "results" and tree.is_dir():
        return [tree]
    return sorted(p for p in tree.rglob("results") if p.is_dir()
                  and (p.parent / "systems").is_dir())


def import_trees(paths: Iterable[str | Path], round_name: str | None = None
                 ) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Read published MLPerf inference results trees into record rows.

    ``paths``: trees of any depth (``inference_results_v1.0``, a division, a submitter).
    ``round_name`` (``"v1.0"``): the round, else taken from a folder named
    ``inference_results_vX.Y`` (or ``..._vX.Y``) above the results.
    Returns ``(rows, problems)``: rows in the ``experiments.records`` schema, one per
    system x model x scenario, fidelity ``published``, study ``published.<platform>.
    <scenario>``, ``params`` JSON holding the model structure parsed from its folder name
    (family, width, resolution, variant, precision) and ``backend`` = the runtime;
    ``system`` JSON holding round, division, submitter, system folder, runtime version and
    the system JSON; ``source`` the scenario folder. ``problems``: what was skipped, why.
    """
    rows: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for tree in paths:
        tree = Path(tree).resolve()
        if not tree.is_dir():
            problems.append(Problem(str(tree), "not a folder"))
            continue
        found = _results_dirs(tree)
        if not found:
            problems.append(Problem(str(tree), "no <division>/<submitter>/results folder "
                                    "with systems/ beside it"))
        for results in found:
            rnd = round_name or round_of(list(results.parts))
            _import_submitter(results, rnd, rows, problems)
    _number(rows)
    return rows, problems


def _import_submitter(results: Path, rnd: str | None, rows: list, problems: list) -> None:
    submitter, division = results.parent, results.parent.parent
    for system_dir in sorted(p for p in results.iterdir() if p.is_dir()):
        sys_json = submitter / "systems" / f"{system_dir.name}.json"
        try:
            system = json.loads(sys_json.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            problems.append(Problem(str(sys_json), f"system description unreadable "
                                    f"({type(exc).__name__}); its results skipped"))
            continue
        # a system we cannot map is kept under its own names: compared, never replayed
        platform = platform_of(system) or qualified(UNMAPPED_PLATFORM, system)
        framework = str(system.get("framework", "")).strip()
        runtime, version = runtime_of(framework)
        facts = {"round": rnd, "division": division.name, "submitter": submitter.name,
                 "system": system_dir.name, "runtime_version": version, "system_json": system,
                 "framework": framework, "our_runtime": runtime is not None}
        runtime = runtime or framework or "unknown framework"
        for model_dir in sorted(p for p in system_dir.iterdir() if p.is_dir()):
            for sdir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
                scenario = scenario_from_folder(sdir.name)
                if scenario is None:
                    problems.append(Problem(str(sdir), "not a scenario folder"))
                    continue
                try:
                    rows.append(_row(sdir, scenario, platform, runtime, facts))
                except (OSError, ValueError) as exc:
                    problems.append(Problem(str(sdir), str(exc)))


def _row(sdir: Path, scenario: str, platform: str, runtime: str,
         facts: dict[str, Any]) -> dict[str, Any]:
    log, source = read_performance(sdir / "performance" / "run_1", facts["round"])
    validity = log.get("result_validity")
    if validity is None:
        raise ValueError("no result_validity in the performance logs")
    figures = headline(log, scenario, facts["round"])
    structure = parse_model(sdir.parent.name)
    task = task_of(structure)
    acc = read_accuracy(sdir, task)
    valid = validity == "VALID"
    cause = None if valid else f"LoadGen run {validity}" + (
        f": {log.get('result_invalid_reason')}" if log.get("result_invalid_reason") else "")
    if log.errors:
        cause = (cause + "; " if cause else "") + "LoadGen errors: " + "; ".join(log.errors)[:300]
    return {
        "study": f"published.{platform}.{scenario.lower()}", "trial": 0,
        "state": "complete" if valid else "infeasible", "fidelity": PUBLISHED,
        "platform": platform, "node": facts["system"], "backend": runtime,
        "model": sdir.parent.name, "scenario": scenario,
        "objective": SCENARIOS[scenario].objective,
        "params": json.dumps({**structure, "backend": runtime}, sort_keys=True),
        "latency_ms": figures.latency_ms, "p90_latency_ms": figures.p90_latency_ms,
        "qps": figures.qps, "accuracy": acc.percent, "accuracy_metric": acc.metric,
        "accuracy_floor": None, "valid": valid,
        "cause": cause, "started_at": None, "duration_s": None, "log_dir": None,
        "config": None,
        "system": json.dumps({**facts, "precision": structure.get("precision"),
                              "accuracy_good": acc.good, "accuracy_total": acc.total,
                              "task": task,
                              "benchmark": benchmark_in_round(sdir.parent.name, facts["round"]),
                              "compared_as": current_benchmark(sdir.parent.name),
                              "headline_log": source, "inferred_from": figures.inferred_from,
                              "result_validity": validity}, sort_keys=True),
        "source": str(sdir),
    }


def _number(rows: list[dict[str, Any]]) -> None:
    """Trial numbers 0.. within each study, in a stable order (system, model)."""
    count: dict[str, int] = {}
    for row in sorted(rows, key=lambda r: (r["study"], r["node"], r["model"])):
        row["trial"] = count.get(row["study"], 0)
        count[row["study"]] = row["trial"] + 1
    rows.sort(key=lambda r: (r["study"], r["trial"]))


def write_run(paths: Iterable[str | Path], out: str | Path, round_name: str | None = None
              ) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Import ``paths`` into ``out/trials.parquet`` (a new run dir, or one with no records)."""
    from experiments.records import FILENAME, write

    out = Path(out)
    if (out / FILENAME).exists():
        raise FileExistsError(f"{out / FILENAME} exists: import into a new folder")
    rows, problems = import_trees(paths, round_name)
    if rows:
        write(out / FILENAME, rows)
    return rows, problems


def of_our_runtimes(rows: list[dict[str, Any]], use: str
                    ) -> tuple[list[dict[str, Any]], str | None]:
    """The rows that can stand for one of our runtimes (replay, warm start), and one line
    naming the published ones left out (a framework we do not run, kept for comparison
    and reports), None when none is. ``use``: what they are left out of."""
    kept, frameworks = [], {}
    for row in rows:
        facts = json.loads(row.get("system") or "{}") if row.get("fidelity") == PUBLISHED else {}
        if facts.get("our_runtime") is False:
            frameworks[row["backend"]] = frameworks.get(row["backend"], 0) + 1
        else:
            kept.append(row)
    if not frameworks:
        return kept, None
    return kept, (f"{sum(frameworks.values())} published record(s) of a framework none of our "
                  f"runtimes is ({', '.join(f'{k!r}' for k in sorted(frameworks))}) left out "
                  f"of {use}: kept for comparison and reports only")


def is_published_tree(path: str | Path) -> bool:
    """A folder holding a results tree (as opposed to a run dir of records)."""
    return bool(_results_dirs(Path(path))) if Path(path).is_dir() else False


# --------------------------------------------------------------------------- results table

def results_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Published records as rows of the packed-tree results table
    (``experiments.results_table.TABLE_COLUMNS``), so ``python -m experiments results``
    lists a published tree or an imported run dir like one of ours."""
    from experiments.check import benchmark_of

    out = []
    for r in rows:
        if r["fidelity"] != PUBLISHED:
            continue
        facts = json.loads(r["system"] or "{}")
        scenario = SCENARIOS[r["scenario"]]
        rnd = _round_tuple(facts.get("round"))
        metric = scenario.metric
        if r["scenario"] == "SingleStream" and rnd is not None and rnd < EARLY_STOPPING_FROM:
            metric = "90th percentile latency"
        value = r["qps"] if scenario.throughput else r["latency_ms"]
        out.append({"division": facts.get("division", ""), "submitter": facts.get("submitter", ""),
                    "system": r["node"], "model": r["model"],
                    "benchmark": benchmark_of(r["model"]) or (
                        facts["benchmark"] if facts.get("benchmark") not in (None, r["model"])
                        else ""), "scenario": r["scenario"],
                    "metric": metric, "value": None if value is None else round(value, 4),
                    "unit": scenario.unit,
                    "accuracy": None if r["accuracy"] is None else round(100 * r["accuracy"], 3),
                    "valid": facts.get("result_validity") or ("VALID" if r["valid"] else "INVALID"),
                    "inferred_from": facts.get("inferred_from") or ""})
    order = list(SCENARIOS)  # SingleStream, MultiStream, Offline, Server: as results_table
    return sorted(out, key=lambda r: (r["division"], r["submitter"], r["system"], r["model"],
                                      order.index(r["scenario"])))
