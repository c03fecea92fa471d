"""A front that states its ties: the Pareto front over pooled configurations, each point
with the configurations that cannot be told apart from it within noise.

A configuration is *equivalent* to a front point when neither its speed nor its accuracy is
told apart from the point's (``experiments.noise``: its speed not separated at 90% after
every repeat racing made, its accuracy the same up to a runtime's last bits or within an
estimate's interval). A point whose every figure was measured while its node drifted is
*flagged*: it is on the front only until measured again.
"""
from __future__ import annotations

import json
from typing import Any

from experiments import drift, noise, pareto


def pooled(rows: list[dict[str, Any]], speed: str,
           prior: float = noise.PRIOR_SIGMA) -> list[noise.Pooled]:
    return noise.pool(rows, speed, prior, drift.suspects(rows))


def front(rows: list[dict[str, Any]], speed: str,
          prior: float = noise.PRIOR_SIGMA) -> list[dict[str, Any]]:
    """Front rows (pooled figures and intervals), each with ``equivalent`` (a JSON list of
    ``{backend, model, params}``), ``ties`` (how many) and ``flagged`` (why, or "")."""
    groups = pooled(rows, speed, prior)
    by_key = {noise.config_key(p.row): p for p in groups}
    out = []
    for point in pareto.front([p.row for p in groups if p.n], speed):
        mine = by_key[noise.config_key(point)]
        same = [noise.described(p.row) for p in groups
                if p is not mine and p.n and p.row["state"] == "complete"
                and noise.accuracy_tied(point, p.row) and not noise.separated(mine, p)]
        out.append({**point, "equivalent": json.dumps(same, sort_keys=True),
                    "ties": len(same), "flagged": mine.flagged})
    return out


def tie_text(point: dict[str, Any]) -> str:
    """"onnxruntime or litert: the same within noise", or ""."""
    others = json.loads(point.get("equivalent") or "[]")
    if not others:
        return ""
    names = [point["backend"]] + [o["backend"] for o in others]
    unique = list(dict.fromkeys(names))
    same_runtime = len(unique) == 1
    what = " or ".join(unique) if not same_runtime else f"{unique[0]} ({len(others) + 1} settings)"
    return f"{what}: the same within noise"
