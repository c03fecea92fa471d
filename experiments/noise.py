"""How sure a speed figure is: windows within a trial, repeats across trials, ties on a front.

The model, on a log scale (noise on latency and throughput is a factor, not an offset): a
figure measured on a node is the configuration's typical figure there, times a run effect
(the process, its memory layout, what else the node does at that moment), times the noise
of the run's own windows. A trial measures ``k`` windows (LoadGen runs back to back) and
reports the median window, a real LoadGen figure.

- A record's interval (``latency_low_ms``/``latency_high_ms``, ``qps_low``/``qps_high``) is
  a 90% prediction interval: where the same configuration, measured again later on the same
  node, lands 9 times in 10: ``x * exp(+-z * sqrt(2) * sigma)``. ``sigma`` is one record's
  spread on that node: the spread seen between repeats of the same configuration there
  (racing and the canary make them) pooled with a prior, never below the prior (repeats in
  one run see less than runs apart do), and never below ``RUN_TO_RUN`` x the trial's own
  windows' spread (a load-sensitive configuration shows it in its windows). A prediction interval, not a confidence
  interval of a mean, because "if I run it again, what do I get?" is the user's question,
  and run-to-run noise, which one run's windows never see, is what decides a front.
- Pooled over the n records of one configuration: the median figure, the interval
  ``x * exp(+-z * s * sqrt(1 + 1/n))`` (s: their own spread, shrunk towards the node's).
- Two configurations are told apart when their mean log figures differ by more than
  ``z * sqrt(sA^2/nA + sB^2/nB)`` (90%, two-sided); they are declared equivalent when that
  difference's interval lies within ``margin`` either side of 0, or when racing's repeats for
  them run out first. A front point's ``equivalent`` lists the configurations not told apart
  from it, on speed and on accuracy.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from statistics import median
from typing import Any, Iterable

Z90 = 1.6449  # two-sided 90%
# One record's log spread on a node, at least (measurement.noise_prior). Measured here (three
# default studies on the 2-core machine, 125 later figures of a configuration against its
# first): repeats within one run spread 0.056, figures across runs 0.09 (median |log ratio|
# 0.087); repeats within a run can only widen it, never narrow it below this.
PRIOR_SIGMA = 0.08
# How much more runs differ than the windows of one run do (the windows share a process, a
# memory layout, a moment): 3x, measured on the same 125 pairs (coverage of a later figure
# 0.71 with the prior alone, 0.92 with the windows' spread x 3 beside it).
RUN_TO_RUN = 3.0
PRIOR_DOF = 4  # the prior counts as this many degrees of freedom
STEADY_WINDOWS = 3  # perf_analyzer's rule: the last 3 windows agree within the stability
ACCURACY_TIE = 1e-4  # experiments.pareto.TIES: last-bit differences of a runtime

# what a speed objective's interval columns are
BOUNDS = {"latency_ms": ("latency_low_ms", "latency_high_ms"), "qps": ("qps_low", "qps_high")}


def log_sd(values: Iterable[float]) -> float:
    logs = [math.log(v) for v in values if v and v > 0]
    if len(logs) < 2:
        return 0.0
    mean = sum(logs) / len(logs)
    return math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))


def median_window(figures: list[float]) -> int:
    """The index of the window whose figure is the median (the lower one of an even count):
    the trial's headline is that window's own LoadGen figure, not a computed mean."""
    order = sorted(range(len(figures)), key=lambda i: figures[i])
    return order[(len(order) - 1) // 2]


def steady(figures: list[float], stability: float) -> bool:
    """The last ``STEADY_WINDOWS`` windows agree within ``stability`` (0.10: 10%)."""
    last = [f for f in figures[-STEADY_WINDOWS:] if f and f > 0]
    if len(last) < min(STEADY_WINDOWS, len(figures)) or not last:
        return False
    return max(last) / min(last) - 1.0 <= stability


def spread_text(figures: list[float]) -> str:
    last = [f for f in figures[-STEADY_WINDOWS:] if f and f > 0]
    return f"{(max(last) / min(last) - 1.0) * 100:.0f}%" if last else "?"


def record_sigma(windows_sd: float, windows: int, node_sigma: float) -> float:
    """One record's log spread: the node's, or its own windows' times ``RUN_TO_RUN`` where a
    load-sensitive configuration (threads spinning on a shared core) disagreed with itself.
    ``windows`` is kept for the record's count; the spread of a run is not shrunk by it."""
    return max(node_sigma, RUN_TO_RUN * windows_sd) if windows > 1 else node_sigma


def prediction(center: float, sigma: float, n: int = 1, z: float = Z90) -> tuple[float, float]:
    """Where one more measurement lands, around a figure pooled over ``n`` records."""
    half = z * sigma * math.sqrt(1.0 + 1.0 / max(1, n))
    return center * math.exp(-half), center * math.exp(half)


# ----------------------------------------------------------------------- records pooled
def figure(row: dict[str, Any], speed: str) -> float | None:
    value = row.get(speed)
    return float(value) if value is not None and value > 0 else None


def config_key(row: dict[str, Any]) -> tuple:
    """One configuration of a study: its platform's study, runtime and parameters."""
    return (row["study"], row["backend"], row["params"])


def node_sigma(rows: list[dict[str, Any]], speed: str, prior: float = PRIOR_SIGMA,
               exclude: set | frozenset = frozenset()) -> dict[str, float]:
    """Per node: one record's log spread, from configurations measured more than once there
    (pooled variance), shrunk towards ``prior``."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        value = figure(row, speed)
        if value is None or row.get("state") == "failed" or record_id(row) in exclude:
            continue
        groups.setdefault((row.get("node") or "", config_key(row)), []).append(math.log(value))
    ss: dict[str, float] = {}
    dof: dict[str, int] = {}
    for (node, _), logs in groups.items():
        if len(logs) > 1:
            mean = sum(logs) / len(logs)
            ss[node] = ss.get(node, 0.0) + sum((x - mean) ** 2 for x in logs)
            dof[node] = dof.get(node, 0) + len(logs) - 1
    nodes = {row.get("node") or "" for row in rows}
    return {node: max(prior, math.sqrt((PRIOR_DOF * prior ** 2 + ss.get(node, 0.0))
                                       / (PRIOR_DOF + dof.get(node, 0)))) for node in nodes}


def record_id(row: dict[str, Any]) -> tuple:
    return (row["study"], row["trial"], row.get("fidelity"))


@dataclass
class Pooled:
    """One configuration over its records: the row a front and a report show."""

    row: dict[str, Any]  # its first record, with the pooled figure and interval in place
    logs: list[float]  # log figures of the records pooled
    sigma: float  # one record's log spread
    flagged: str = ""  # every figure was measured while its node drifted: why

    @property
    def n(self) -> int:
        return len(self.logs)

    @property
    def mean(self) -> float:
        return sum(self.logs) / len(self.logs)

    @property
    def spread(self) -> float:
        """One record's log spread: the records' own, shrunk towards the node's."""
        return shrunk(self.sigma, self.logs)

    @property
    def se(self) -> float:
        """Standard error of the mean log figure."""
        return self.spread / math.sqrt(self.n)


def shrunk(sigma: float, logs: list[float]) -> float:
    """The spread of ``logs`` pooled with ``sigma`` counted as ``PRIOR_DOF`` degrees of
    freedom: three repeats that happen to agree do not make a figure certain."""
    if len(logs) < 2:
        return sigma
    mean = sum(logs) / len(logs)
    ss = sum((x - mean) ** 2 for x in logs)
    return math.sqrt((PRIOR_DOF * sigma ** 2 + ss) / (PRIOR_DOF + len(logs) - 1))


def pool(rows: list[dict[str, Any]], speed: str, prior: float = PRIOR_SIGMA,
         suspects: set | frozenset = frozenset()) -> list[Pooled]:
    """Rows of the same configuration as one: figures measured while their node drifted
    (``suspects``) count only where nothing else was measured, and then say so."""
    sigmas = node_sigma(rows, speed, prior, suspects)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(config_key(row), []).append(row)
    out = []
    for members in groups.values():
        members.sort(key=lambda r: r["trial"])
        measured = [r for r in members if figure(r, speed) is not None and r["state"] != "failed"]
        clean = [r for r in measured if record_id(r) not in suspects]
        use = clean or measured
        first = next((r for r in members if r.get("repeat_of") is None), members[0])
        row = dict(first)
        if not use:
            out.append(Pooled(row, [], prior))
            continue
        values = [figure(r, speed) for r in use]
        sigma = max(record_sigma(windows_sd(r), _windows(r), sigmas.get(r.get("node") or "", prior))
                    for r in use)
        logs = [math.log(v) for v in values]
        center = median(values)
        low, high = prediction(center, shrunk(sigma, logs), len(logs))
        lo_col, hi_col = BOUNDS[speed]
        row.update({speed: center, lo_col: low, hi_col: high, "repeats": len(use),
                    "state": _pooled_state(use)})
        flagged = "" if clean else "measured while its node drifted (canary): not re-measured since"
        out.append(Pooled(row, logs, sigma, flagged))
    return out


def _pooled_state(rows: list[dict[str, Any]]) -> str:
    states = [r["state"] for r in rows]
    return "complete" if "complete" in states else states[0]


def windows_sd(row: dict[str, Any]) -> float:
    """How much a record's own windows disagreed (log sd)."""
    return float(system_of(row).get("windows_log_sd") or 0.0)


def _windows(row: dict[str, Any]) -> int:
    return int(row.get("windows") or 1)


def system_of(row: dict[str, Any]) -> dict:
    """A record's ``system`` facts, whether the row holds them as JSON or as a dict."""
    system = row.get("system")
    if isinstance(system, dict):
        return system
    try:
        return json.loads(system or "{}")
    except ValueError:
        return {}


def separated(a: Pooled, b: Pooled, z: float = Z90) -> bool:
    """Told apart on speed: the mean log figures differ beyond ``z`` standard errors."""
    if not a.n or not b.n:
        return True
    return abs(a.mean - b.mean) > z * math.hypot(a.se, b.se)


def within_margin(a: Pooled, b: Pooled, margin: float, z: float = Z90) -> bool:
    """Shown equivalent: the difference's interval lies within +-``margin`` (a log ratio)."""
    return abs(a.mean - b.mean) + z * math.hypot(a.se, b.se) <= margin


def accuracy_tied(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Accuracies that cannot be told apart: the same up to a runtime's last bits, or
    within each other's estimate interval (a sequential pass)."""
    x, y = a.get("accuracy"), b.get("accuracy")
    if x is None or y is None:
        return False
    if abs(x - y) <= ACCURACY_TIE:
        return True
    a_lo, a_hi = a.get("accuracy_low"), a.get("accuracy_high")
    b_lo, b_hi = b.get("accuracy_low"), b.get("accuracy_high")
    return (a_lo is not None and a_lo <= y <= a_hi) or (b_lo is not None and b_lo <= x <= b_hi)


def described(row: dict[str, Any]) -> dict[str, Any]:
    """A configuration as ``pareto.csv``'s ``equivalent`` lists it."""
    params = row.get("params")
    return {"backend": row["backend"], "model": row.get("model"),
            "params": json.loads(params) if isinstance(params, str) else params}


def within_short_interval(rows: list[dict[str, Any]], row: dict[str, Any], speed: str,
                          prior: float = PRIOR_SIGMA) -> bool | None:
    """Whether a re-measured figure (promotion, reproduce) lies inside the interval of its
    configuration's short runs in the same scenario; None where there are none."""
    value = figure(row, speed)
    short = [r for r in rows if r.get("fidelity") == "short" and r["study"] == row["study"]
             and r["params"] == row["params"] and r["backend"] == row["backend"]
             and r["scenario"] == row["scenario"]]
    groups = [g for g in pool(short, speed, prior) if g.n] if short and value else []
    if not groups:
        return None
    low, high = (groups[0].row.get(c) for c in BOUNDS[speed])
    return bool(low <= value <= high)
