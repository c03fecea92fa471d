"""Drift of a node, seen by its canary: a fixed configuration measured again every few trials.

When the canary's figure moves beyond its own noise (outside the 99% prediction interval of
its earlier, steady figures, ``experiments.noise``, and by more than 10%), the node drifted: a background job, a
Pi throttling when hot. The canary's record says so in its ``cause`` (when, and by how
much); every record of that node measured since the canary before it, and until a canary
is steady again, is a *suspect*: pooled figures leave it out where the configuration was
measured again, and a front point that rests on suspects alone is flagged.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any

from experiments import noise

DRIFT = "drift:"  # how a canary's cause starts when it moved beyond its noise
CANARY = "canary"


def _time(row: dict[str, Any]) -> float:
    started = row.get("started_at")
    if isinstance(started, dt.datetime):
        return started.timestamp()
    return float(started or 0.0)


def drifted(row: dict[str, Any]) -> bool:
    return row.get("measured_for") == CANARY and str(row.get("cause") or "").startswith(DRIFT)


def suspects(rows: list[dict[str, Any]]) -> set[tuple]:
    """Record ids (``noise.record_id``) measured while their node drifted."""
    out: set[tuple] = set()
    by_node: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        by_node.setdefault((row["study"], row.get("node") or ""), []).append(row)
    for members in by_node.values():
        members.sort(key=_time)
        canaries = [r for r in members if r.get("measured_for") == CANARY]
        if not any(drifted(c) for c in canaries):
            continue
        # the last steady canary: at first, the measurement the canaries repeat
        bases = {c.get("repeat_of") for c in canaries}
        since = min((_time(r) for r in members if r["trial"] in bases), default=float("-inf"))
        open_from = None  # a drift seen and not yet over
        windows: list[tuple[float, float]] = []
        for canary in canaries:
            t = _time(canary)
            if drifted(canary):
                open_from = since if open_from is None else open_from
            elif open_from is not None:
                windows.append((open_from, t))
                open_from = None
            if not drifted(canary):
                since = t
        if open_from is not None:
            windows.append((open_from, float("inf")))
        for row in members:
            t = _time(row)
            if any(lo < t <= hi for lo, hi in windows) and not (
                    row.get("measured_for") == CANARY and not drifted(row)):
                out.add(noise.record_id(row))
    return out


Z99 = 2.5758  # a canary flags its node only beyond its 99% interval ...
MIN_CHANGE = 0.10  # ... and by more than 10% (perf_analyzer's stability): every false alarm
# costs a recheck of the trials in its window, so a canary must be sure, and matter


def verdict(rows: list[dict[str, Any]], study: str, node: str, first_trial: int, value: float,
            speed: str, prior: float, z: float = Z99,
            min_change: float = MIN_CHANGE) -> str | None:
    """A new canary figure against the node's earlier steady canary figures (the first
    measurement included): a ``drift: ...`` cause, or None when it is within noise."""
    bad = suspects(rows)
    earlier = [r for r in rows if r["study"] == study and (r.get("node") or "") == node
               and (r["trial"] == first_trial or r.get("repeat_of") == first_trial)
               and noise.figure(r, speed) is not None and noise.record_id(r) not in bad
               and r.get("state") != "failed"]
    if not earlier:
        return None
    pooled = noise.pool(earlier, speed, prior)[0]
    sigma = noise.shrunk(pooled.sigma, pooled.logs)
    center = pooled.row[speed]
    low, high = noise.prediction(center, sigma, pooled.n, z)
    if low <= value <= high or abs(math.log(value / center)) <= math.log1p(min_change):
        return None
    unit = "ms" if speed == "latency_ms" else "samples/s"
    return (f"{DRIFT} canary {value:.4g} {unit} against {center:.4g} [{low:.4g}, {high:.4g}] "
            f"on node {node} ({(value / center - 1) * 100:+.0f}%): trials since its last "
            "steady canary are measured again once it is steady")


def invalid(node: str, cause: str | None) -> str:
    """A canary that ran VALID before and now ends INVALID (a slowed node misses LoadGen's
    plan or its duration bound): drift too, by more than any figure can say."""
    return (f"{DRIFT} canary run INVALID on node {node} ({(cause or 'no reason')[:200]}): "
            "trials since its last steady canary are measured again once it is steady")


def events(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every drift a canary caught: when, which node, by how much (the fleet page's table)."""
    return [{"study": r["study"], "node": r.get("node"), "trial": r["trial"],
             "at": r.get("started_at"), "cause": r.get("cause")}
            for r in sorted(rows, key=_time) if drifted(r)]
