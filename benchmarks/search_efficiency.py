"""How many trials each search strategy needs for the true latency/accuracy front.

Replays device tables in-process (no Ray, no device): each proposal is answered from the
table, so only the strategy differs. Tables:

- every published device in ``--published`` (default: the v1.0 Krai tree in
  ../shared/published), imported with ``experiments.published.import_trees``: MobileNet
  v1/v2 (version x width x resolution x quantized) x runtime (TFLite, ArmNN), SingleStream
  90th-percentile latency (ms, down) and top-1 (up), one table per device;
- our own measured digits grid (``--own FILE``, as written by ``--measure-own FILE``:
  width x resolution x precision x ONNX Runtime threads, measured here with short LoadGen
  runs), with its accuracy floor (99% of the reference) as a constraint.

A repeated proposal is answered from the records and costs nothing (what the driver does);
so does a proposal of a point the table lacks (told infeasible). Trials count measured
points only. Prints, per table and strategy, medians over seeds: trials to 90% and 100%
of the true front (count, and multiple of the front's size), front recall and
hypervolume (log latency x accuracy, share of the true front's) at 10/20/30% of the
table, and the sampler's mean time per ask; then warm start leave-one-platform-out
against cold start.

Strategies: ours (``front``: accuracy modelled over the accuracy dims, known accuracies
certain), Optuna's baselines, and Optuna's own ``GPSampler`` (``gp``: multi-objective,
constrained through ``trial.set_constraint``, which Optuna 5 reads in place of the
deprecated ``constraints_func``; ordered dims suggested as an index so it sees their
order, as ours does). ``--leave-one-out``: only the leave-one-device-out comparison on the
published tables: each device tuned cold (front, gp) and warm from the other devices
(their accuracies known per accuracy key, their latencies a prior).

    python benchmarks/search_efficiency.py [--seeds 20] [--own /tmp/tuner-grid.json]
    python benchmarks/search_efficiency.py --leave-one-out --seeds 5
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna

from search_spaces import SearchSpace, make_sampler, plan_warm_start
from search_spaces.warm_start import project

SHARED = Path(__file__).resolve().parents[2] / "shared/published"
PUBLISHED = [SHARED / "inference_results_v1.0", SHARED / "inference_results_v1.0_tasks"]
FAMILIES = ("mobilenet-v1", "mobilenet-v2")
BUDGETS = (0.1, 0.2, 0.3)
PENALTY = [1e9, 0.0]


# --- tables -------------------------------------------------------------------------------
def published_tables(trees: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """One table per device of MobileNet v1/v2 SingleStream results in ``trees`` (the
    tasks excerpt holds no classification: it adds no device today)."""
    from experiments.published import import_trees

    rows, problems = import_trees([t for t in trees if t.exists()])
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    tables: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        params = json.loads(r["params"])
        if r["scenario"] != "SingleStream" or params.get("family") not in FAMILIES:
            continue
        tables.setdefault(r["platform"], []).append(
            {"platform": r["platform"], "params": params, "latency_ms": r["p90_latency_ms"],
             "accuracy": r["accuracy"], "feasible": bool(r["valid"]),
             "valid": bool(r["valid"])})
    return tables


OWN_SPACE = {"model": {"width": {"type": "categorical", "ordered": True,
                                 "choices": [0.25, 0.5, 0.75, 1.0]},
                       "resolution": {"type": "categorical", "ordered": True,
                                      "choices": [32, 48, 64, 96]},
                       "precision": {"type": "categorical", "choices": ["fp32", "int8"]}},
             "backends": ["onnxruntime"]}
OWN_KNOBS = {"onnxruntime": {"knobs": {"intra_op_threads": {"type": "int", "low": 1, "high": 2}}}}


def measure_own(out: Path) -> None:
    """Measure every point of the digits grid once (short real LoadGen runs, this machine);
    resumable: points already in ``out`` are kept."""
    from tuner.worker.isolation import run_isolated
    from tuner.trial import Fidelity, TrialConfig

    space = SearchSpace.from_config(OWN_SPACE, OWN_KNOBS)
    table = json.loads(out.read_text()) if out.exists() else {}
    for i, params in enumerate(space.grid()):
        key = json.dumps(params, sort_keys=True)
        if key in table:
            continue
        point = space.split(params)
        cfg = TrialConfig(study="grid", trial=i, platform="bench", workload={"name": "digits"},
                          model=point.model, backend=point.backend,
                          knobs={**point.knobs, "allow_spinning": False},
                          scenario="SingleStream", fidelity=Fidelity("short", 500, 64, 5000))
        r = run_isolated(cfg, 300)
        if not (r.ok and r.valid):
            raise SystemExit(f"measure-own: {params}: {r.cause}")
        table[key] = (r.latency_ms, r.accuracy)
        out.write_text(json.dumps(table))
        print(f"[{len(table)}] {r.model_name} {point.knobs}: {r.latency_ms:.3f} ms, "
              f"top-1 {r.accuracy:.3f}", flush=True)


def own_table(path: Path, floor: float) -> list[dict[str, Any]]:
    table = json.loads(path.read_text())
    return [{"platform": "own", "params": json.loads(k), "latency_ms": lat, "accuracy": acc,
             "feasible": acc >= floor, "floor": floor} for k, (lat, acc) in table.items()]


def space_of(rows: list[dict[str, Any]]) -> SearchSpace:
    """The table's space: numeric dims ordered, names unordered, knobs by runtime."""
    values: dict[str, set] = {}
    for r in rows:
        for k, v in r["params"].items():
            values.setdefault(k, set()).add(v)

    def spec(vs: set) -> dict[str, Any]:
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs)
        return {"type": "categorical", "choices": sorted(vs, key=str) if not numeric
                else sorted(vs), "ordered": numeric}

    model = {k: spec(vs) for k, vs in values.items() if k != "backend" and "." not in k}
    model = dict(sorted(model.items(), key=lambda kv: kv[0] != "family"))
    knobs: dict[str, dict] = {}
    for k, vs in values.items():
        if "." in k:
            runtime, knob = k.split(".", 1)
            knobs.setdefault(runtime, {"knobs": {}})["knobs"][knob] = spec(vs)
    space = SearchSpace.from_config({"model": model, "backends": sorted(values["backend"])},
                                    knobs)
    return space.restricted([r["params"] for r in rows])


def front_keys(space: SearchSpace, rows: list[dict[str, Any]]) -> set:
    feas = [r for r in rows if r["feasible"]]
    return {space.key(a["params"]) for a in feas if not any(
        b["latency_ms"] <= a["latency_ms"] and b["accuracy"] >= a["accuracy"]
        and (b["latency_ms"] < a["latency_ms"] or b["accuracy"] > a["accuracy"]) for b in feas)}


class Table:
    def __init__(self, name: str, rows: list[dict[str, Any]]):
        self.name, self.rows = name, rows
        self.space = space_of(rows)
        self.by_key = {self.space.key(r["params"]): r for r in rows}
        self.front = front_keys(self.space, rows)
        lats = [math.log(r["latency_ms"]) for r in rows]
        accs = [r["accuracy"] for r in rows]
        self.bounds = (min(lats), max(lats), min(accs), max(accs))
        self.true_hv = self.hypervolume(list(self.by_key))

    def hypervolume(self, keys: list) -> float:
        """Area dominated in (log latency, accuracy), both scaled to 0..1 over the table."""
        lo, hi, alo, ahi = self.bounds
        pts = sorted(((math.log(r["latency_ms"]) - lo) / (hi - lo),
                      (r["accuracy"] - alo) / (ahi - alo))
                     for k in keys if (r := self.by_key[k])["feasible"])
        area, best = 0.0, 0.0
        for i, (x, y) in enumerate(pts):
            best = max(best, y)
            nxt = pts[i + 1][0] if i + 1 < len(pts) else 1.0
            area += (nxt - x) * best
        return area


# --- one replayed study --------------------------------------------------------------------
def replay(table: Table, sampler: optuna.samplers.BaseSampler,
           enqueue: list[dict[str, Any]] = (), suggest: Callable | None = None,
           max_asks: int | None = None, clock: list | None = None) -> list:
    """Measured point keys in order, until the whole front and 30% of the table are in
    (or the table is used up, or the sampler keeps proposing nothing new). Every trial is
    told the same constraints (GPSampler needs as many on every trial). ``clock``: gets
    the seconds each ask took (the sampler's share of a driver's per-trial cost)."""
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    study.set_metric_names(["latency_ms", "accuracy"])
    for params in enqueue:
        study.enqueue_trial(params, skip_if_exists=True)
    n = len(table.by_key)
    measured, seen, asks = [], set(), 0
    need = math.ceil(max(BUDGETS) * n)
    suggest = suggest or table.space.suggest
    floor = any(r.get("floor") is not None for r in table.rows)
    while len(measured) < n and asks < (max_asks or 20 * n):
        if table.front <= seen and len(measured) >= need:
            break
        asks += 1
        started = time.perf_counter()
        trial = study.ask()
        params = suggest(trial)
        if clock is not None:
            clock.append(time.perf_counter() - started)
        key = table.space.key(params)
        row = table.by_key.get(key)
        # as the driver tells it: floor - accuracy, and LoadGen's validity
        trial.set_constraint("in_table", 0.0 if row is not None else 1.0)
        trial.set_constraint("loadgen_valid", 0.0 if row is None or row.get("valid", True)
                             else 1.0)
        if floor:
            trial.set_constraint("accuracy_floor", 1.0 if row is None
                                 else row["floor"] - row["accuracy"])
        if row is None:  # not in the table: infeasible, costs nothing
            study.tell(trial, PENALTY)
            continue
        study.tell(trial, [row["latency_ms"], row["accuracy"]])
        if key not in seen:  # a repeat is answered from the records
            seen.add(key)
            measured.append(key)
    return measured


def indexed_suggest(space: SearchSpace) -> Callable:
    """``space.suggest`` with each ordered categorical asked as its index (an int), so a
    sampler that sees only distributions (GPSampler) knows 0.25 < 0.5 < 1.0."""
    def suggest(trial) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for dim in space.dims:
            if not dim.active(params):
                continue
            if dim.type == "categorical" and dim.is_ordered:
                i = trial.suggest_int(dim.name, 0, len(dim.choices) - 1)
                params[dim.name] = dim.choices[i]
            elif dim.type == "categorical":
                params[dim.name] = trial.suggest_categorical(dim.name, list(dim.choices))
            else:
                params[dim.name] = trial.suggest_int(dim.name, int(dim.low), int(dim.high),
                                                     step=int(dim.step or 1))
        return params
    return suggest


def metrics(table: Table, order: list) -> dict[str, float]:
    f, n = len(table.front), len(table.by_key)
    out: dict[str, float] = {}
    for share, name in ((0.9, "t90"), (1.0, "t100")):
        need, hits = math.ceil(share * f - 1e-9), 0
        out[name] = math.inf
        for i, key in enumerate(order):
            hits += key in table.front
            if hits >= need:
                out[name] = i + 1
                break
    for b in BUDGETS:
        head = order[:round(b * n)]
        out[f"recall{b:.0%}"] = len(table.front.intersection(head)) / f
        out[f"hv{b:.0%}"] = table.hypervolume(head) / table.true_hv
    return out


GP_MAX_ASKS = 2.0  # GPSampler: asks per table point at most (~1.3 s an ask on one core)


def _gp(t: Table, s: int) -> optuna.samplers.BaseSampler:
    import torch

    torch.set_num_threads(1)  # two cores shared: more threads made each ask ~5x slower
    return optuna.samplers.GPSampler(seed=s, n_startup_trials=10,
                                     deterministic_objective=True,
                                     warn_independent_sampling=False)


STRATEGIES: dict[str, Callable[[Table, int], optuna.samplers.BaseSampler]] = {
    "grid": lambda t, s: make_sampler("grid", s, space=t.space),
    "random": lambda t, s: make_sampler("random", s, space=t.space),
    "tpe": lambda t, s: make_sampler("tpe", s, space=t.space),
    "nsga2": lambda t, s: make_sampler("nsga2", s, space=t.space),
    "front": lambda t, s: make_sampler("front", s, space=t.space),
    "gp": _gp,
}


def run_strategy(label: str, table: Table, seed: int, clock: list) -> dict[str, float]:
    """One replayed study of a named strategy; GPSampler proposes repeats of measured
    points and points the table lacks (answered free), so its asks are capped at
    GP_MAX_ASKS x the table."""
    sampler = STRATEGIES[label](table, seed)
    if label == "gp":
        order = replay(table, sampler, suggest=indexed_suggest(table.space),
                       max_asks=int(GP_MAX_ASKS * len(table.by_key)), clock=clock)
    else:
        order = replay(table, sampler, clock=clock)
    return metrics(table, order)


def median_metrics(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def line(label: str, table: Table, m: dict[str, float], clock: list | None = None) -> str:
    f = len(table.front)

    def t(v: float) -> str:
        return "   never" if math.isinf(v) else f"{v:4.0f} {v / f:4.1f}x"

    rec = " ".join(f"{m[f'recall{b:.0%}']:.2f}" for b in BUDGETS)
    hv = " ".join(f"{m[f'hv{b:.0%}']:.3f}" for b in BUDGETS)
    ms = f"   {1000 * statistics.mean(clock):6.1f}" if clock else ""
    return f"  {label:18s} {t(m['t90'])}  {t(m['t100'])}   {rec}   {hv}{ms}"


HEADER = ("  strategy           to 90%     to 100%    recall@10/20/30%   HV@10/20/30%"
          "     ms/ask")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--published", nargs="+", default=[str(p) for p in PUBLISHED])
    parser.add_argument("--own", help="our measured grid (JSON of --measure-own)")
    parser.add_argument("--measure-own", metavar="FILE",
                        help="measure the digits grid on this machine into FILE, then stop")
    parser.add_argument("--own-floor", type=float, default=None,
                        help="accuracy floor of the own grid (default: 99%% of digits' reference)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--no-warm", action="store_true")
    parser.add_argument("--leave-one-out", action="store_true",
                        help="only the leave-one-device-out comparison (cold front/gp, warm)")
    parser.add_argument("--gp-seeds", type=int, default=1,
                        help="seeds of GPSampler in --leave-one-out (~1.3 s an ask)")
    parser.add_argument("--gp-max-asks", type=float, default=GP_MAX_ASKS,
                        help="GPSampler's asks per table point at most")
    args = parser.parse_args()
    globals()["GP_MAX_ASKS"] = args.gp_max_asks
    if args.measure_own:
        measure_own(Path(args.measure_own))
        return
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    tables = {name: Table(name, rows) for name, rows
              in published_tables([Path(p) for p in args.published]).items()}
    if args.own:
        floor = args.own_floor
        if floor is None:
            from workloads.digits import DigitsWorkload

            floor = 0.99 * DigitsWorkload().reference_accuracy()
        tables["own (digits, this machine)"] = Table("own", own_table(Path(args.own), floor))
    started = time.time()
    if args.leave_one_out:
        warm_start_report(tables, args.seeds, cold=("front", "gp"), gp_seeds=args.gp_seeds)
        print(f"\n({time.time() - started:.0f} s)")
        return
    for name, table in tables.items():
        n, f = len(table.by_key), len(table.front)
        print(f"\n{name}: {n} points, {f} on the front ({args.seeds} seeds, medians)")
        print(HEADER)
        for label in args.strategies.split(","):
            seeds = [0] if label == "grid" else range(args.seeds)
            clock: list = []
            runs = [run_strategy(label, table, s, clock) for s in seeds]
            print(line(label, table, median_metrics(runs), clock), flush=True)
    if not args.no_warm:
        warm_start_report(tables, args.seeds)
    print(f"\n({time.time() - started:.0f} s)")


def warm_start_report(tables: dict[str, Table], seeds: int,
                      cold: tuple[str, ...] = ("front",), gp_seeds: int = 1) -> None:
    """Leave one platform out: learn from the others' records, tune the held-out one."""
    print("\nwarm start, leave one platform out (medians)")
    for name, table in tables.items():
        others = [r for other, t in tables.items() if other != name for r in t.rows]
        if not others:
            continue
        plan = plan_warm_start(others, table.space)
        naive = [p for p in (project(r["params"], table.space) for r in others
                             if table.space.key(r["params"]) in _foreign_front(tables, name))
                 if p is not None]
        f = len(table.front)
        known = sum(table.space.accuracy_key(r["params"]) in plan.known_accuracy
                    for r in table.rows)
        print(f"\n{name} <- {', '.join(o for o in tables if o != name)}: {f} on the front; "
              f"enqueued {len(plan.enqueue)}, of them on this front "
              f"{sum(table.space.key(p) in table.front for p in plan.enqueue)}; accuracy "
              f"known for {known} of {len(table.rows)} points")
        print(HEADER)
        cases = {f"cold {label}": (lambda label: lambda s, c: run_strategy(label, table, s, c)
                                   )(label) for label in cold if label != "gp" or gp_seeds}
        cases["warm front"] = lambda s, c: metrics(table, replay(
            table, make_sampler("front", s, space=table.space, warm_start=plan),
            plan.enqueue, clock=c))
        bare = plan_warm_start(others, table.space, n_enqueue=0)
        cases["warm, 0 enqueued"] = lambda s, c: metrics(table, replay(
            table, make_sampler("front", s, space=table.space, warm_start=bare), clock=c))
        cases["naive (all front)"] = lambda s, c: metrics(table, replay(
            table, make_sampler("tpe", s, space=table.space), naive, clock=c))
        for label, run in cases.items():
            clock: list = []
            runs = [run(s, clock) for s in range(gp_seeds if label == "cold gp" else seeds)]
            print(line(label, table, median_metrics(runs), clock), flush=True)


def _foreign_front(tables: dict[str, Table], held_out: str) -> set:
    keys: set = set()
    for name, t in tables.items():
        if name != held_out:
            keys |= t.front
    return keys


if __name__ == "__main__":
    main()
