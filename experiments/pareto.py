"""The Pareto front of a study, computed from its records (not from Optuna's storage),
so a report can be re-rendered from ``trials.parquet`` alone."""
from __future__ import annotations

from typing import Any

from experiments.objectives import OBJECTIVES

MAXIMISE = {name: o.maximize for name, o in OBJECTIVES.items()}
# Accuracies closer than this are the same figure: a runtime's last-bit differences (AUC
# 0.885217 vs 0.885218) must not put a slower point on the front.
TIES = {"accuracy": 1e-4}


def dominates(a: dict[str, Any], b: dict[str, Any], objectives: list[str]) -> bool:
    """a is at least as good as b on every objective and better on one."""
    better = False
    for key in objectives:
        x, y = a[key], b[key]
        if abs(x - y) <= TIES.get(key, 0.0):
            continue
        if not MAXIMISE[key]:
            x, y = -x, -y
        if x < y:
            return False
        if x > y:
            better = True
    return better


def front(rows: list[dict[str, Any]], speed: str) -> list[dict[str, Any]]:
    """Non-dominated feasible rows (state ``complete``), best speed first."""
    objectives = [speed, "accuracy"]
    feasible = [r for r in rows if r["state"] == "complete"
                and all(r.get(k) is not None for k in objectives)]
    out = [r for r in feasible if not any(dominates(o, r, objectives) for o in feasible)]
    # Equal points are all non-dominated; keep the first measured of each.
    seen, unique = set(), []
    for r in sorted(out, key=lambda r: (r["trial"])):
        key = (r[speed], r["accuracy"])
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return sorted(unique, key=lambda r: r[speed], reverse=MAXIMISE[speed])
