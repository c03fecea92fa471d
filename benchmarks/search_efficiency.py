"""How much device time the search saves: Optuna (our sampler) vs the exhaustive grid.

1. Measures every point of a reduced MobileNet grid once with real short LoadGen runs
   (model variants x ONNX Runtime thread counts), on this machine.
2. Replays the study against that table for many seeds: each ask is answered from the
   table, so only the sampler differs. Prints how many trials reach 90 / 95 / 100 % of the
   grid front's hypervolume (latency down, accuracy up, above the accuracy floor), as a
   fraction of the grid, for our TPE set-up and for random search.

    python benchmarks/search_efficiency.py [--out /tmp/grid.json] [--seeds 20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import optuna

from search_spaces import SearchSpace
from tuner.driver import make_sampler
from tuner.isolation import run_isolated
from tuner.trial import Fidelity, TrialConfig
from tuner.workloads.digits import RESOLUTIONS, WIDTHS, DigitsWorkload

SPACE = {"model": {"width": {"type": "categorical", "choices": list(WIDTHS)},
                   "resolution": {"type": "categorical", "choices": list(RESOLUTIONS)},
                   "precision": {"type": "categorical", "choices": ["fp32", "int8"]}},
         "backends": ["onnxruntime"]}
KNOBS = {"onnxruntime": {"knobs": {"intra_op_threads": {"type": "int", "low": 1, "high": 2}}}}


def key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def measure_grid(space: SearchSpace, out: Path) -> dict[str, tuple[float, float]]:
    table = json.loads(out.read_text()) if out.exists() else {}
    grid = space.grid()
    for i, params in enumerate(grid):
        if key(params) in table:
            continue
        point = space.split(params)
        cfg = TrialConfig(study="grid", trial=i, platform="bench", workload={"name": "digits"},
                          model=point.model, backend=point.backend,
                          knobs={**point.knobs, "allow_spinning": False},
                          scenario="SingleStream", fidelity=Fidelity("short", 500, 64, 5000))
        started = time.time()
        r = run_isolated(cfg, 300)
        assert r.ok and r.valid, (params, r.cause)
        table[key(params)] = (r.latency_ms, r.accuracy)
        out.write_text(json.dumps(table))
        print(f"[{len(table)}/{len(grid)}] {r.model_name} threads "
              f"{point.knobs['intra_op_threads']}: {r.latency_ms:.3f} ms, top-1 {r.accuracy:.3f}"
              f" ({time.time() - started:.1f} s)", flush=True)
    return table


def hypervolume(points: list[tuple[float, float]], floor: float, worst_latency: float) -> float:
    """Area dominated by (latency, accuracy) points above the floor, up to the reference."""
    pts = sorted((lat, acc) for lat, acc in points if acc >= floor and lat <= worst_latency)
    area, best_acc = 0.0, floor
    for i, (lat, acc) in enumerate(pts):
        best_acc = max(best_acc, acc)
        nxt = pts[i + 1][0] if i + 1 < len(pts) else worst_latency
        area += (nxt - lat) * (best_acc - floor)
    return area


def replay(space: SearchSpace, table: dict, sampler: str, seed: int, floor: float,
           worst: float, target: float) -> list[float]:
    """HV fraction after each trial."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "maximize"],
                                sampler=make_sampler(sampler, seed))
    found, curve = [], []
    for _ in range(2 * len(table)):  # samplers may propose a point twice
        trial = study.ask()
        params = space.suggest(trial)
        lat, acc = table[key(params)]
        trial.set_constraint("accuracy_floor", floor - acc)
        study.tell(trial, [lat, acc])
        found.append((lat, acc))
        curve.append(hypervolume(found, floor, worst) / target)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/tuner-grid.json")
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    space = SearchSpace.from_config(SPACE, KNOBS)
    table = measure_grid(space, Path(args.out))
    floor = 0.99 * DigitsWorkload().reference_accuracy()
    worst = max(lat for lat, _ in table.values()) * 1.1
    target = hypervolume(list(table.values()), floor, worst)
    n = len(table)
    print(f"grid: {n} points; accuracy floor {floor:.4f}; front hypervolume {target:.4f}")
    for sampler in ("tpe", "random"):
        needed = {0.9: [], 0.95: [], 1.0: []}
        for seed in range(args.seeds):
            curve = replay(space, table, sampler, seed, floor, worst, target)
            for level in needed:
                # not reached within 2x the grid counts as 2x the grid (a pessimistic median)
                needed[level].append(next((i + 1 for i, v in enumerate(curve)
                                           if v >= level - 1e-9), 2 * n))
        summary = ", ".join(f"{int(level * 100)}% HV in {statistics.median(v):.0f} trials "
                            f"({statistics.median(v) / n:.0%} of the grid)"
                            for level, v in needed.items())
        print(f"{sampler:6s} (median of {args.seeds} seeds): {summary}")


if __name__ == "__main__":
    main()
