"""Warm start: what a new platform's study takes from records of other platforms.

Works on plain dicts, one per measured point of another platform::

    {"platform": "rpi4", "params": {...}, "latency_ms": 12.3, "accuracy": 0.71,
     "feasible": True}

and returns a ``WarmStart``: a few of the others' front configurations, mapped into this
space, to measure first (``enqueue``); their accuracies as known (``known_accuracy``,
accuracy key -> accuracy: the same model file on the same runtime scores the same on
every device); and every record as a ``prior`` for the front sampler (``make_sampler(...,
warm_start=plan)``), whose latencies become a prior mean for this platform's latency
(``prior_columns``), weighed by how well it predicts this platform's own trials -- a
correlated prior, never taken as this platform's measurements. Only a few points are enqueued, spread along the others'
front: measuring all of their front first is what cut recall from 0.43 to 0.13 on a
dissimilar device (issue 11); a few points cost little there and, where the platforms are
alike, already sit on this front.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from search_spaces.space import BACKEND, SearchSpace, canonical
from search_spaces.surrogate import GP, Encoder

N_ENQUEUE = 3


@dataclass
class WarmStart:
    enqueue: list[dict[str, Any]] = field(default_factory=list)  # inside the space, in order
    prior: list[dict[str, Any]] = field(default_factory=list)  # {platform, params, values, feasible}
    notes: list[str] = field(default_factory=list)  # records left out, and why
    known_accuracy: dict[tuple, float] = field(default_factory=dict)  # accuracy key -> mean


def plan_warm_start(records: Iterable[Mapping[str, Any]], space: SearchSpace,
                    objectives: Sequence[str] = ("latency_ms", "accuracy"),
                    directions: Sequence[str] = ("minimize", "maximize"),
                    n_enqueue: int = N_ENQUEUE, accuracy: str = "accuracy") -> WarmStart:
    """The warm-start plan for a study over ``space`` from other platforms' records;
    ``accuracy``: the objective that is accuracy (its figures become known, per key)."""
    plan = WarmStart()
    by_platform: dict[str, list[dict[str, Any]]] = defaultdict(list)
    accuracies: dict[tuple, list[float]] = defaultdict(list)
    skipped = 0
    for rec in records:
        values = [rec.get(o) for o in objectives]
        ok = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        if not ok:
            skipped += 1
            continue
        if accuracy in objectives:  # the accuracy key needs the exact model and runtime
            accuracies[space.accuracy_key(rec["params"])].append(float(rec[accuracy]))
        entry = {"platform": str(rec.get("platform", "")), "params": dict(rec["params"]),
                 "values": [float(v) for v in values],
                 "feasible": bool(rec.get("feasible", True))}
        plan.prior.append(entry)
        by_platform[entry["platform"]].append(entry)
    plan.known_accuracy = {k: sum(v) / len(v) for k, v in accuracies.items()}
    if skipped:
        plan.notes.append(f"{skipped} record(s) without {'/'.join(objectives)} left out")
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    # key -> [points mapped, positions along each platform's front (0: fastest)]
    found: dict[tuple, list] = {}
    for platform, recs in by_platform.items():
        front = pareto_front([r for r in recs if r["feasible"]], signs)
        front.sort(key=lambda r: signs[0] * r["values"][0])
        for rank, rec in enumerate(front):
            point = project(rec["params"], space)
            if point is None:
                continue
            entry = found.setdefault(space.key(point), [point, []])
            entry[1].append(rank / max(len(front) - 1, 1))
    if by_platform and not found:
        plan.notes.append("no front configuration of the other platforms maps into this space")
    plan.enqueue = _spread(list(found.values()), n_enqueue)
    return plan


def pareto_front(recs: list[dict[str, Any]], signs: Sequence[float]) -> list[dict[str, Any]]:
    """Records no other record dominates (values as given, ``signs`` +1 minimise)."""
    scored = [([s * v for s, v in zip(signs, r["values"])], r) for r in recs]
    out = []
    for a, rec in scored:
        if not any(all(x <= y for x, y in zip(b, a)) and any(x < y for x, y in zip(b, a))
                   for b, _ in scored):
            out.append(rec)
    return out


def _spread(candidates: list[list], k: int) -> list[dict[str, Any]]:
    """k points evenly along the front; among equals, those on most platforms' fronts."""
    if k <= 0 or not candidates:
        return []
    placed = [(sum(pos) / len(pos), -len(pos), i) for i, (_, pos) in enumerate(candidates)]
    chosen: list[int] = []
    for j in range(min(k, len(candidates))):
        target = (j + 0.5) / min(k, len(candidates))
        best = min((abs(p - target) + 0.1 * n, i) for p, n, i in placed if i not in chosen)
        chosen.append(best[1])
    chosen.sort(key=lambda i: placed[i][0])
    return [candidates[i][0] for i in chosen]


def project(params: Mapping[str, Any], space: SearchSpace) -> dict[str, Any] | None:
    """A foreign point mapped into ``space``: same values where the space has them, the
    nearest value of an ordered dimension, a runtime knob it lacks at a middle value.
    None when a model dimension or the runtime cannot be mapped."""
    point: dict[str, Any] = {}
    for dim in space.dims:
        if not dim.active(point):
            continue
        value = _snap(dim, params[dim.name]) if dim.name in params else None
        if value is None:
            if dim.role in ("model", "backend") or dim.name == BACKEND:
                return None
            values = dim.values()
            value = values[len(values) // 2] if dim.is_ordered else values[0]
        point[dim.name] = value
    return point


def _snap(dim, value: Any) -> Any:
    if dim.type == "float":
        return min(max(float(value), float(dim.low)), float(dim.high))
    values = dim.values()
    for v in values:
        if canonical(v) == canonical(value):
            return v
    if not dim.is_ordered or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) < len(values):
        return None
    log = value > 0 and all(v > 0 for v in nums)
    far = (lambda v: abs(math.log(v) - math.log(value))) if log else (lambda v: abs(v - value))
    return min(nums, key=far)


def prior_columns(records: Sequence[Mapping[str, Any]], encoder: Encoder,
                  features: np.ndarray, signs: Sequence[float],
                  penalty: float = 1e8) -> list[np.ndarray] | None:
    """Per objective: the other platforms' standardised prediction at every point (rows
    of ``features``; one GP per platform, averaged), in "smaller is better" units (log
    where positive). None when no platform has 3 usable records."""
    by_platform: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for rec in records:
        values = rec.get("values")
        if rec.get("feasible", True) and values is not None and all(
                v is not None and math.isfinite(v) and abs(v) < penalty for v in values):
            by_platform[str(rec.get("platform", ""))].append(rec)
    columns = [np.zeros(len(features)) for _ in signs]
    counts = 0
    for recs in by_platform.values():
        if len(recs) < 3:
            continue
        x = encoder.encode([r["params"] for r in recs])
        raw = np.array([r["values"] for r in recs], dtype=float)
        for j, sign in enumerate(signs):
            col = raw[:, j]
            y = sign * (np.log(col) if (col > 0).all() else col)
            y = (y - y.mean()) / (y.std() or 1.0)
            gp = GP(encoder.groups).fit(x, y, sweeps=2)
            columns[j] += gp.posterior(features, joint=False)[0]
        counts += 1
    return [c / counts for c in columns] if counts else None
