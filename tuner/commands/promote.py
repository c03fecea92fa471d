"""From the Pareto front to compliant measurements: ``promote`` and ``reproduce``.

    python -m tuner promote RUN_DIR [TRIAL ...] [--scenarios S ...] [--min-duration-ms N]
    python -m tuner reproduce RUN_DIR TRIAL [--fidelity F] [--no-record]

``promote`` re-measures chosen trials (default: each study's Pareto front of short runs)
with LoadGen's own rules: ``Fidelity.compliant_run()`` (no min_duration/min_query_count
override, so 600 s and the benchmark's query count) and an accuracy run over the whole
validation set. It dispatches through the run's own Ray path (``make_dispatcher`` with the
run's saved ``.hydra/config.yaml``) and records each result through ``tuner.study.outcome`` (as the study does) beside
the short rows of ``trials.parquet``, fidelity ``compliant``; logs go to
``trials/<study>/<trial>/compliant/<Scenario>/`` (one level deeper than short runs, since
a promoted trial may be measured in several scenarios).

Scenarios follow the MLPerf category of the trial's platform (``system_type`` of
``conf/platform/<name>.yaml``):

* edge: SingleStream is measured. MultiStream and Offline are *inferred* from it, as
  MLCommons' ``tools/submission/preprocess_submission.py`` does: the SingleStream result
  folder is copied to the MultiStream and Offline folders of the submission tree (by the
  packer, ``experiments.submission``) and the checker derives their figures from the
  SingleStream detail log: MultiStream = ``early_stopping_latency_ms`` (the SingleStream
  run's early-stopping 99th percentile) x 8 samples per query; Offline =
  ``result_qps_without_loadgen_overhead`` (1 / mean latency). ``--scenarios`` measures
  them instead (a measured folder always wins over an inferred one).
* datacenter: Offline and Server are measured (MLPerf allows no inference there).

Server (issue 20): before the long run the worker bisects the target QPS with short Server
runs (``tuner/worker/server_search.py``) and runs at a margin below the highest rate whose
p99 met the latency bound: ``promotion.server_latency_ms``, else the benchmark's
(``experiments.mlperf.BENCHMARKS``: resnet 15 ms, dlrm-v3 60 ms), else the trial's
``scenario.server_latency_ms``. A trial whose single query already exceeds the bound is
refused in one line: here when its search record is SingleStream, else on the worker after
calibration, before any long run. A benchmark not run in the platform's MLPerf category
(DLRM on an edge platform) is refused too, and so is a benchmark whose round needs more
performance samples than the record's runs give LoadGen (dlrm-v3 in v6.1: 349,823, the
dlrm rules 204,800), which the official checker would reject: ``--draft`` measures it all
the same, for a tree packed with ``--draft``. Every promoted run scores the scenario's whole
accuracy set (no inherited or sequential figure: the packer refuses those).

Test-only: ``--min-duration-ms N`` (or the run's config key ``promotion.min_duration_ms``,
visible in ``--cfg job``) shortens the
performance run (and lowers the query count to what early stopping needs). Such results
are recorded with fidelity ``compliant-reduced``; the packer refuses them unless
``--draft``.

``reproduce`` lives in ``tuner/commands/reproduce.py``; this module's CLI runs both.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf

from experiments.mlperf import (BENCHMARKS, CHECKER_ROUND, INFERRED_FROM, MEASURED, REDUCED,
                                SCENARIO_NAMES, current_benchmark)
from experiments.selection import to_promote
from tuner.accuracy.plan import AccuracyPlan
from tuner.fleet.dispatch import DispatchError, RayDispatcher
from tuner.commands.remeasure import (Print, attach_facts, dispatch_for, load_run_config, measure_all,
                             objective_of, recorder, render_report, run_timeout_s, shown,
                             system_type)
from tuner.trial import Fidelity, TrialConfig, TrialResult
from tuner.worker.server_search import single_query_refusal

# A reduced run still needs the queries LoadGen's early stopping asks for (the oracle
# raises this to its per-scenario minimum); the official counts (270336 for MultiStream
# and Server) would make a "short" run last minutes.
REDUCED_MIN_QUERY_COUNT = 64
INFERRED = {"edge": ("MultiStream", "Offline"), "datacenter": ()}


# --------------------------------------------------------------------------- the run

def reduced_min_duration(cfg: DictConfig, arg: int | None) -> int | None:
    """The test-only duration: the flag, else the run's ``promotion.min_duration_ms``."""
    if arg is not None:
        return int(arg)
    value = OmegaConf.select(cfg, "promotion.min_duration_ms", default=None)
    return None if value is None else int(value)


def promotion_fidelity(min_duration_ms: int | None) -> Fidelity:
    if min_duration_ms is None:
        return Fidelity.compliant_run()
    return Fidelity(REDUCED, int(min_duration_ms), REDUCED_MIN_QUERY_COUNT, None)


def scenarios_for(kind: str, asked: list[str] | None) -> tuple[list[str], list[str]]:
    """(measured, inferred) scenarios for an MLPerf category: --scenarios replaces the
    measured ones; the packer infers the category's inferable scenarios not measured."""
    if asked:
        bad = [s for s in asked if s not in SCENARIO_NAMES]
        if bad:
            raise ValueError(f"unknown scenario(s) {bad}; one of {', '.join(SCENARIO_NAMES)}")
        measured = list(dict.fromkeys(asked))
    else:
        measured = list(MEASURED[kind])
    return measured, [s for s in INFERRED[kind] if s not in measured
                      and any(src in measured for src in INFERRED_FROM[s])]


def inferred_figures(log) -> dict[str, float | None]:
    """MultiStream (ms) and Offline (samples/s) as the checker infers them from a
    SingleStream detail log (performance_check.get_inferred_result)."""
    from experiments.results_table import headline

    return {scenario: headline(log, scenario)[0] for scenario in ("MultiStream", "Offline")}


# --------------------------------------------------------------------------- Server

def benchmark_of_row(cfg: DictConfig, row: dict[str, Any]) -> str:
    """The MLPerf benchmark a record packs as: what the worker recorded, else its workload's."""
    recorded = json.loads(row.get("system") or "{}").get("benchmark")
    if recorded:
        return recorded
    import workloads

    name = json.loads(row["config"]).get("workload", {}).get("name") or cfg.workload.name
    return current_benchmark(workloads.workload_class(name).loadgen_model)


def server_bound_ms(cfg: DictConfig, bench: str,
                    options: dict[str, Any]) -> tuple[float | None, str]:
    """(the Server latency bound in ms, where it comes from); None: LoadGen's mlperf.conf."""
    key = OmegaConf.select(cfg, "promotion.server_latency_ms", default=None)
    if key is not None:
        return float(key), "promotion.server_latency_ms"
    facts = BENCHMARKS.get(bench)
    if facts and facts.server_latency_ns:
        return facts.server_latency_ns / 1e6, f"{bench}'s bound"
    if options.get("server_latency_ms") is not None:
        return float(options["server_latency_ms"]), "scenario.server_latency_ms"
    return None, "LoadGen's mlperf.conf"


def server_options(cfg: DictConfig, options: dict[str, Any], bound_ms: float | None) -> dict:
    """The Server job's scenario options: the bound, and the short-run search's settings."""
    p = cfg.get("promotion") or {}
    search = {"run_ms": p.get("server_search_ms"), "steps": p.get("server_search_steps"),
              "min_queries": p.get("server_search_queries"),
              "headroom": p.get("server_headroom"), "margin": p.get("server_margin")}
    return {**options, "server_latency_ms": bound_ms,
            "server_search": {k: v for k, v in search.items() if v is not None}}


def refusal(cfg: DictConfig, row: dict[str, Any], kind: str, scenario: str) -> str | None:
    """One line when this record must not be promoted in ``scenario``, else None."""
    bench = benchmark_of_row(cfg, row)
    facts = BENCHMARKS.get(bench)
    who = f"{row['study']} #{row['trial']} {scenario}"
    if facts and kind not in facts.categories:
        return (f"{who}: not promoted: {bench} is a {'/'.join(facts.categories)}-only MLPerf "
                f"benchmark and platform {row['platform']} is {kind} (set its system_type)")
    if scenario != "Server" or row["scenario"] != "SingleStream":
        return None
    bound, source = server_bound_ms(cfg, bench, json.loads(row["config"]).get(
        "scenario_options") or {})
    single = row.get("p90_latency_ms") or row.get("latency_ms")
    why = single_query_refusal(single, bound) if single and bound else None
    return f"{who}: {why} ({source}; the search's SingleStream p90)" if why else None


def sample_count_refusal(run_dir: Path, row: dict[str, Any], bench: str) -> str | None:
    """One line when the benchmark's round needs more performance samples than this
    record's runs give LoadGen (what its search run logged), so the official checker would
    reject every compliant run of it; None when it needs no more, or nothing was logged."""
    from experiments.loadgen_logs import DETAIL, parse_detail

    need = getattr(BENCHMARKS.get(bench), "performance_sample_count", None)
    log = Path(run_dir) / (row.get("log_dir") or "") / "performance" / DETAIL
    count = parse_detail(log.read_text()).get("effective_performance_sample_count") \
        if need and log.is_file() else None
    if count is None or int(count) >= need:
        return None
    return (f"{row['study']} #{row['trial']}: not promoted: {bench} needs "
            f"performance_sample_count >= {need} (checker {CHECKER_ROUND}) and its runs give "
            f"LoadGen {count}: the official checker rejects it (--draft promotes anyway)")


# --------------------------------------------------------------------------- promote

class Promoted(list):
    """The new records, and one line per measurement refused before it ran."""

    def __init__(self, rows=()):
        super().__init__(rows)
        self.refused: list[str] = []


def promote(run_dir: str | Path, picks: Iterable[str] = (), scenarios: list[str] | None = None,
            min_duration_ms: int | None = None, dispatcher: RayDispatcher | None = None,
            timeout_s: float | None = None, out: Print = print, draft: bool = False) -> Promoted:
    """Measure the chosen trials compliantly; returns the new records (``.refused``: the
    measurements refused before they ran, one line each). ``draft``: measure a trial the
    benchmark's round cannot accept all the same (its tree packs only with --draft)."""
    cfg = load_run_config(run_dir)
    rec = recorder(cfg)
    chosen = to_promote(rec.records.rows, picks)
    if not chosen:
        out("nothing to promote: no feasible short-run trial on any front")
        return Promoted()
    fidelity = promotion_fidelity(reduced_min_duration(cfg, min_duration_ms))
    if not fidelity.compliant:
        out(f"TEST SETTING: min_duration {fidelity.min_duration_ms} ms; results are recorded as "
            f"{fidelity.name!r} and cannot be packed without --draft")
    jobs, inferred, refused = [], {}, Promoted()
    for row in chosen:
        kind = system_type(cfg, row["platform"])
        measured, infer = scenarios_for(kind, scenarios)
        # the packer's source for each inferred scenario: measured MultiStream before SingleStream
        inferred[(row["study"], row["trial"])] = [
            t for t in infer if next(src for src in INFERRED_FROM[t] if src in measured)
            == "SingleStream"]
        base = TrialConfig.from_dict(json.loads(row["config"]))
        why = sample_count_refusal(rec.run_dir, row, benchmark_of_row(cfg, row))
        if why and not draft:
            refused.refused.append(why)
            continue
        for scenario in measured:
            why = refusal(cfg, row, kind, scenario)
            if why:
                refused.refused.append(why)
                continue
            options = base.scenario_options
            if scenario == "Server":
                bound, _ = server_bound_ms(cfg, benchmark_of_row(cfg, row), options)
                options = server_options(cfg, options, bound)
            # the scenario's whole accuracy pass: no inherited or sequential figure
            jobs.append(dataclasses.replace(
                base, scenario=scenario, fidelity=fidelity, scenario_options=options,
                accuracy_sample_count=None, run_accuracy=True, accuracy=AccuracyPlan()))
    for line in refused.refused:
        out(line)
    if not jobs:
        return refused
    by_key = {(r["study"], r["trial"]): r for r in chosen}
    timeout_s = timeout_s or run_timeout_s(cfg, fidelity)
    out(f"promoting {len(chosen)} trial(s), {len(jobs)} measurement(s) at fidelity "
        f"{fidelity.name!r} (timeout {timeout_s:.0f} s each)")
    for t in jobs:
        bound = t.scenario_options.get("server_latency_ms") if t.scenario == "Server" else None
        out(f"  {t.study} #{t.trial} {t.scenario}: {by_key[(t.study, t.trial)]['model']} "
            f"{t.backend}" + (f" (target QPS searched under a {bound:g} ms p99 bound)"
                              if bound else ""))

    dispatcher, own = dispatch_for(cfg, dispatcher, chosen)
    new_rows = refused
    facts: dict[tuple, Any] = {}

    def done(tcfg: TrialConfig, result: TrialResult) -> None:
        attach_facts(result, facts)
        # the MLPerf category the packer describes the system with
        result.system = {**result.system, "system_type": system_type(cfg, tcfg.platform)}
        row = rec.row(tcfg, result, objective_of(by_key[(tcfg.study, tcfg.trial)]),
                      subdir=tcfg.scenario)
        new_rows.append(row)
        out(describe(row))
        found = result.system.get("server_search") or {}
        if found.get("target_qps"):
            out(f"    Server target {found['target_qps']:g} QPS from {len(found['steps'])} short "
                f"run(s) in {found['seconds']:.1f} s (p99 bound {found['bound_ms']:g} ms)")
        if tcfg.scenario == "SingleStream" and result.ok:
            infer = inferred[(tcfg.study, tcfg.trial)]
            if infer:
                from experiments import loadgen_logs

                figs = inferred_figures(loadgen_logs.parse_detail(
                    result.logs.get("performance/" + loadgen_logs.DETAIL, "")))
                out("    inferred (as preprocess_submission.py): " + ", ".join(
                    f"{s} {shown(figs[s])} {'ms' if s == 'MultiStream' else 'samples/s'}"
                    for s in infer))

    try:
        measure_all(dispatcher, jobs, timeout_s, done)
    finally:
        if own:
            dispatcher.shutdown()
    render_report(rec.run_dir, out)
    return new_rows


def describe(row: dict[str, Any]) -> str:
    return (f"  {row['study']} #{row['trial']} {row['scenario']} [{row['fidelity']}] "
            f"{row['state']}: latency {shown(row['latency_ms'])} ms, qps {shown(row['qps'])}, "
            f"accuracy {shown(row['accuracy'])}, {'VALID' if row['valid'] else 'INVALID'}"
            + (f" ({row['cause']})" if row["cause"] else "")
            + {True: ", inside its short runs' interval", False: ", OUTSIDE its short runs' "
               "interval"}.get(row.get("within_short_interval"), "") + f" -> {row['log_dir']}")


# --------------------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tuner", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("promote", help="re-measure front trials as compliant MLPerf runs")
    p.add_argument("run_dir")
    p.add_argument("trials", nargs="*", metavar="TRIAL",
                   help="N or STUDY:N (default: every study's Pareto front)")
    p.add_argument("--scenarios", nargs="+", choices=SCENARIO_NAMES,
                   help="measure exactly these (default: by the platform's MLPerf category)")
    p.add_argument("--min-duration-ms", type=int, default=None,
                   help=f"TEST ONLY: shorter runs, recorded as {REDUCED!r} "
                        "(default: the run's promotion.min_duration_ms)")
    p.add_argument("--timeout-s", type=float, default=None, help="per measurement")
    p.add_argument("--draft", action="store_true", help="measure a trial whose benchmark's "
                   "round it cannot meet all the same (for a --draft tree)")
    r = sub.add_parser("reproduce", help="re-measure one record's exact configuration")
    r.add_argument("run_dir")
    r.add_argument("trial", metavar="TRIAL", help="N or STUDY:N")
    r.add_argument("--fidelity", default=None,
                   help="which record of the trial (default: compliant, else short)")
    r.add_argument("--no-record", action="store_true", help="print only; keep trials.parquet")
    r.add_argument("--timeout-s", type=float, default=None)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "promote":
            rows = promote(args.run_dir, args.trials, args.scenarios, args.min_duration_ms,
                           timeout_s=args.timeout_s, draft=args.draft)
            return 0 if rows and all(r["valid"] for r in rows) and not rows.refused else 1
        from tuner.commands.reproduce import reproduce

        _, new = reproduce(args.run_dir, args.trial, args.fidelity, not args.no_record,
                           timeout_s=args.timeout_s)
        return 0 if new.get("valid") else 1
    except (FileNotFoundError, ValueError, DispatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
