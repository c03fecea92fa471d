"""From the Pareto front to compliant measurements: ``promote`` and ``reproduce``.

    python -m tuner promote RUN_DIR [TRIAL ...] [--scenarios S ...] [--min-duration-ms N]
    python -m tuner reproduce RUN_DIR TRIAL [--fidelity F] [--no-record]

``promote`` re-measures chosen trials (default: each study's Pareto front of short runs)
with LoadGen's own rules: ``Fidelity.compliant_run()`` (no min_duration/min_query_count
override, so 600 s and the benchmark's query count) and an accuracy run over the whole
validation set. It dispatches through the run's own Ray path (``make_dispatcher`` with the
run's saved ``.hydra/config.yaml``) and records each result with ``Driver.record`` beside
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

Test-only: ``--min-duration-ms N`` (or the run's config key ``promotion.min_duration_ms``,
visible in ``--cfg job``) shortens the
performance run (and lowers the query count to what early stopping needs). Such results
are recorded with fidelity ``compliant-reduced``; the packer refuses them unless
``--draft``.

``reproduce`` re-measures one record's exact ``TrialConfig`` (its ``config`` JSON, same
fidelity, same platform, same dispatch path), prints the old and new figures side by side
and records the new one with fidelity ``reproduce`` (logs under
``trials/<study>/<trial>/reproduce/<k>/``) unless ``--no-record``. Reproduce rows never
enter a front or a submission: they are evidence of run-to-run spread.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from omegaconf import DictConfig, OmegaConf

from experiments.mlperf import (COMPLIANT, COMPLIANT_MIN_DURATION_MS, INFERRED_FROM, MEASURED,
                                REDUCED, REPRODUCE, SCENARIO_NAMES, SHORT)
from experiments.records import Records
from experiments.report import fmt
from tuner.dispatch import PLATFORM_LABEL, DispatchError, RayDispatcher
from tuner.driver import fixed_floor, make_dispatcher
from tuner.outcome import AccuracyFloor, Recorder
from tuner.scheduler import Scheduler
from tuner.trial import Fidelity, TrialConfig, TrialResult
# A reduced run still needs the queries LoadGen's early stopping asks for (the oracle
# raises this to its per-scenario minimum); the official counts (270336 for MultiStream
# and Server) would make a "short" run last minutes.
REDUCED_MIN_QUERY_COUNT = 64
INFERRED = {"edge": ("MultiStream", "Offline"), "datacenter": ()}

Print = Callable[[str], None]


# --------------------------------------------------------------------------- the run

def load_run_config(run_dir: str | Path) -> DictConfig:
    """The run's exact config as Hydra saved it, with run_dir pointing at RUN_DIR (the
    saved value is an interpolation into Hydra's runtime, which is gone now)."""
    from tuner.config import register

    register()  # the ${threads:...} resolver the saved config uses
    run_dir = Path(run_dir).resolve()
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no saved config at {path} (is {run_dir} a tuner run dir?)")
    cfg = OmegaConf.load(path)
    cfg.run_dir = str(run_dir)
    cfg.progress = False
    return cfg


def system_type(cfg: DictConfig, platform: str) -> str:
    """edge | datacenter for a platform: its conf/platform YAML, else the run's config."""
    from tuner.platforms import load_platform_config

    try:
        kind = load_platform_config(platform).get("system_type")
    except FileNotFoundError:
        kind = cfg.platform.get("system_type")
    return "datacenter" if kind == "datacenter" else "edge"


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


def run_timeout_s(cfg: DictConfig, fidelity: Fidelity) -> float:
    """Long enough for a compliant run: Offline plans for 1.5x the calibrated throughput
    (oracle.THROUGHPUT_MARGIN), so it may run ~1.5x min_duration, then the accuracy run."""
    duration_s = (fidelity.min_duration_ms or COMPLIANT_MIN_DURATION_MS) / 1000
    return 2 * duration_s + float(cfg.study.trial_timeout_s)


def parse_pick(text: str) -> tuple[str | None, int]:
    """TRIAL is N or STUDY:N."""
    study, _, number = text.rpartition(":")
    try:
        return (study or None), int(number)
    except ValueError:
        raise ValueError(f"trial {text!r}: expected N or STUDY:N") from None


def select(rows: list[dict[str, Any]], picks: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The short rows to promote: the named trials, else every study's Pareto front."""
    from experiments.report import fronts

    short = [r for r in rows if r["fidelity"] == SHORT]
    picks = list(picks)
    if not picks:
        return [r for front in fronts(short).values() for r in front]
    chosen = []
    for pick in picks:
        study, number = parse_pick(pick)
        found = [r for r in short if r["trial"] == number and study in (None, r["study"])]
        if not found:
            raise ValueError(f"no short-run record for trial {pick!r}")
        if len(found) > 1:
            raise ValueError(f"trial {pick!r} is in several studies "
                             f"({', '.join(r['study'] for r in found)}): use STUDY:N")
        chosen.append(found[0])
    return chosen


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
    from experiments.submission import headline

    return {scenario: headline(log, scenario)[0] for scenario in ("MultiStream", "Offline")}


# --------------------------------------------------------------------------- measuring

def recorder(cfg: DictConfig) -> Recorder:
    """The run's records with the run's own accuracy floor: promote and reproduce classify
    a result exactly as the study did."""
    return Recorder(Path(cfg.run_dir), Records(cfg.run_dir),
                    AccuracyFloor(fixed_floor(cfg), cfg.study.accuracy_floor_fraction))


def objective_of(row: dict[str, Any]) -> str:
    from experiments.mlperf import scenario

    return scenario(row["scenario"]).objective


def _detect_on_node(platform: str) -> dict[str, Any]:
    from tuner.platforms import detect

    facts = detect().to_dict()
    facts["platform"] = platform  # the Ray label the trial ran under
    return facts


def node_facts(platform: str, hostname: str, node_id: str | None = None,
               timeout_s: float = 120.0) -> dict[str, Any] | None:
    """NodeFacts of the node that measured (for the MLPerf system description), probed by
    a Ray task pinned to that node (its Ray node id when the result carries one, else the
    alive node of that hostname and platform); None when it cannot be reached."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if node_id is None:
        node_id = next((n["NodeID"] for n in ray.nodes() if n.get("Alive")
                        and n.get("NodeManagerHostname") == hostname
                        and (n.get("Labels") or {}).get(PLATFORM_LABEL) == platform), None)
    options: dict[str, Any] = {"num_cpus": 0, "max_retries": 0}
    if node_id is not None:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
    else:
        options["label_selector"] = {PLATFORM_LABEL: platform}
    try:
        return ray.get(ray.remote(_detect_on_node).options(**options).remote(platform),
                       timeout=timeout_s)
    except Exception:  # noqa: BLE001 - facts are optional; the packer detects locally
        return None


def measure_all(dispatcher: RayDispatcher, jobs: list[TrialConfig], timeout_s: float,
                done: Callable[[TrialConfig, TrialResult], None]) -> None:
    """Measure every job, one per device at a time, handing each result to ``done`` as it
    arrives; a task lost or overdue becomes a failed result (the study's scheduler)."""
    scheduler = Scheduler(dispatcher, timeout_s)
    alive = dispatcher.platforms()
    for platform in sorted({t.platform for t in jobs}):
        scheduler.add_lane(platform, sum(n.devices for n in alive.get(platform, [])) or 1)
    scheduler.run_all(jobs, done)


def _dispatch(cfg: DictConfig, dispatcher: RayDispatcher | None,
              rows: list[dict[str, Any]]) -> tuple[RayDispatcher, bool]:
    own = dispatcher is None
    dispatcher = dispatcher or make_dispatcher(cfg)
    try:
        dispatcher.check(sorted({r["platform"] for r in rows}),
                         sorted({r["backend"] for r in rows}))
    except DispatchError:
        if own:
            dispatcher.shutdown()
        raise
    return dispatcher, own


def _attach_facts(result: TrialResult, cache: dict[tuple, Any]) -> None:
    """Put the measuring node's facts into the record's system JSON (once per node)."""
    if not result.ok or not result.node:
        return
    node_id = result.system.get("ray_node_id")  # set by the dispatcher's task, when known
    key = (result.platform, result.node, node_id)
    if key not in cache:
        cache[key] = node_facts(*key)
    if cache[key] is not None:
        result.system = {**result.system, "facts": cache[key]}


# --------------------------------------------------------------------------- promote

def promote(run_dir: str | Path, picks: Iterable[str] = (), scenarios: list[str] | None = None,
            min_duration_ms: int | None = None, dispatcher: RayDispatcher | None = None,
            timeout_s: float | None = None, out: Print = print) -> list[dict[str, Any]]:
    """Measure the chosen trials compliantly; returns the new records."""
    cfg = load_run_config(run_dir)
    rec = recorder(cfg)
    chosen = select(rec.records.rows, picks)
    if not chosen:
        out("nothing to promote: no feasible short-run trial on any front")
        return []
    fidelity = promotion_fidelity(reduced_min_duration(cfg, min_duration_ms))
    if not fidelity.compliant:
        out(f"TEST SETTING: min_duration {fidelity.min_duration_ms} ms; results are recorded as "
            f"{fidelity.name!r} and cannot be packed without --draft")
    jobs, inferred = [], {}
    for row in chosen:
        measured, infer = scenarios_for(system_type(cfg, row["platform"]), scenarios)
        # the packer's source for each inferred scenario: measured MultiStream before SingleStream
        inferred[(row["study"], row["trial"])] = [
            t for t in infer if next(src for src in INFERRED_FROM[t] if src in measured)
            == "SingleStream"]
        base = json.loads(row["config"])
        for scenario in measured:
            jobs.append(dataclasses.replace(
                TrialConfig.from_dict(base), scenario=scenario, fidelity=fidelity,
                accuracy_sample_count=None, run_accuracy=True))
    by_key = {(r["study"], r["trial"]): r for r in chosen}
    timeout_s = timeout_s or run_timeout_s(cfg, fidelity)
    out(f"promoting {len(chosen)} trial(s), {len(jobs)} measurement(s) at fidelity "
        f"{fidelity.name!r} (timeout {timeout_s:.0f} s each)")
    for t in jobs:
        out(f"  {t.study} #{t.trial} {t.scenario}: {by_key[(t.study, t.trial)]['model']} {t.backend}")

    dispatcher, own = _dispatch(cfg, dispatcher, chosen)
    new_rows: list[dict[str, Any]] = []
    facts: dict[tuple, Any] = {}

    def done(tcfg: TrialConfig, result: TrialResult) -> None:
        _attach_facts(result, facts)
        row = rec.row(tcfg, result, objective_of(by_key[(tcfg.study, tcfg.trial)]),
                      subdir=tcfg.scenario)
        new_rows.append(row)
        out(describe(row))
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
    _render(rec.run_dir, out)
    return new_rows


def describe(row: dict[str, Any]) -> str:
    return (f"  {row['study']} #{row['trial']} {row['scenario']} [{row['fidelity']}] "
            f"{row['state']}: latency {shown(row['latency_ms'])} ms, qps {shown(row['qps'])}, "
            f"accuracy {shown(row['accuracy'])}, {'VALID' if row['valid'] else 'INVALID'}"
            + (f" ({row['cause']})" if row["cause"] else "") + f" -> {row['log_dir']}")


def shown(value: Any) -> str:
    return fmt(value, missing="-")


def _render(run_dir: Path, out: Print) -> None:
    from experiments.report import render

    for kind, path in render(run_dir).items():
        out(f"{kind}: {path}")


# --------------------------------------------------------------------------- reproduce

FIGURES = ("state", "valid", "latency_ms", "p90_latency_ms", "qps", "accuracy", "node",
           "duration_s")


def find_record(rows: list[dict[str, Any]], pick: str, fidelity: str | None) -> dict[str, Any]:
    """The record to reproduce: --fidelity's, else the compliant one, else the short one."""
    study, number = parse_pick(pick)
    found = [r for r in rows if r["trial"] == number and study in (None, r["study"])]
    if len({r["study"] for r in found}) > 1:
        raise ValueError(f"trial {pick!r} is in several studies: use STUDY:N")
    for wanted in ([fidelity] if fidelity else [COMPLIANT, SHORT, REDUCED]):
        matches = [r for r in found if r["fidelity"] == wanted]
        if matches:
            return matches[-1]  # the latest measurement of that fidelity
    raise ValueError(f"no record for trial {pick!r}"
                     + (f" at fidelity {fidelity!r}" if fidelity else ""))


def side_by_side(old: dict[str, Any], new: dict[str, Any]) -> str:
    lines = [f"{'':16}{'recorded':>16}{'reproduced':>16}{'change':>10}"]
    for key in FIGURES:
        a, b = old.get(key), new.get(key)
        change = (f"{100 * (b - a) / a:+.1f}%" if isinstance(a, float) and isinstance(b, float)
                  and a and key != "duration_s" else "")
        lines.append(f"{key:16}{shown(a):>16}{shown(b):>16}{change:>10}")
    return "\n".join(lines)


def reproduce(run_dir: str | Path, pick: str, fidelity: str | None = None, record: bool = True,
              dispatcher: RayDispatcher | None = None, timeout_s: float | None = None,
              out: Print = print) -> tuple[dict[str, Any], dict[str, Any]]:
    """Re-measure a record's exact TrialConfig; returns (old row, new row)."""
    cfg = load_run_config(run_dir)
    rec = recorder(cfg)
    old = find_record(rec.records.rows, pick, fidelity)
    tcfg = TrialConfig.from_dict(json.loads(old["config"]))
    timeout_s = timeout_s or run_timeout_s(cfg, tcfg.fidelity)
    out(f"reproducing {old['study']} #{old['trial']} [{old['fidelity']}] {old['scenario']} "
        f"{old['model']} on platform {old['platform']} (recorded on node {old['node']})")
    dispatcher, own = _dispatch(cfg, dispatcher, [old])
    results: list[TrialResult] = []
    try:
        measure_all(dispatcher, [tcfg], timeout_s, lambda _t, r: results.append(r))
    finally:
        if own:
            dispatcher.shutdown()
    (result,) = results
    count = sum(r["fidelity"] == REPRODUCE and r["study"] == old["study"]
                and r["trial"] == old["trial"] for r in rec.records.rows)
    # The same path as every record; --no-record computes the row and stores nothing.
    new = rec.row(dataclasses.replace(tcfg, fidelity=dataclasses.replace(
        tcfg.fidelity, name=REPRODUCE)), result, objective_of(old),
        subdir=str(count + 1), store=record)
    out(side_by_side(old, new))
    if new.get("cause"):
        out(f"cause: {new['cause']}")
    return old, new


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
                           timeout_s=args.timeout_s)
            return 0 if rows and all(r["valid"] for r in rows) else 1
        _, new = reproduce(args.run_dir, args.trial, args.fidelity, not args.no_record,
                           timeout_s=args.timeout_s)
        return 0 if new.get("valid") else 1
    except (FileNotFoundError, ValueError, DispatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
