"""Before a promoted Server run: the highest target QPS whose p99 meets the latency bound.

A Server run is VALID only when its p99 latency stays within the benchmark's bound at the
scheduled rate, and a compliant run lasts 600 s: a guessed rate that misses costs ten
minutes and ends INVALID (seen: a 15 ms LiteRT MobileNet scheduled at 31 QPS against
ResNet's 15 ms bound). So the worker first bisects the target QPS with short Server runs
on the trial's own TestSettings (FromConfig's seeds kept; only duration, query count and
rate change during the search, and are put back). A queue near saturation builds slowly,
so the chosen rate (a margin below the highest that passed) is confirmed by a run twice as
long, stepping down by the margin until one holds; the long run goes at that rate. A system
whose single query already exceeds the bound is refused before any run, in one line, and
one where no rate held the bound after the search.

Driven by ``scenario_options["server_search"]`` (set by ``python -m tuner promote``; keys
of ``SearchOptions``) with the bound in ``scenario_options["server_latency_ms"]``;
``tune`` is called by ``tuner.worker.measure`` after calibration, before the long run.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from experiments import loadgen_logs
from tuner.worker.oracle import Calibration, LoadGenOracle, SystemUnderTest

P99_KEY = "result_99.00_percentile_latency_ns"
BACKLOG = 0.95  # completed/scheduled samples per second below this: the SUT fell behind


class ServerBoundError(Exception):
    """This system cannot meet the Server latency bound: the long run would be INVALID."""


@dataclass
class SearchOptions:
    run_ms: int = 2000  # each short Server run
    steps: int = 7  # at most this many short runs
    headroom: float = 0.8  # a short run passes when its p99 <= headroom x bound
    margin: float = 0.8  # the long run's target = margin x the highest rate that passed
    # per short run, for a p99 that is not just the slowest query (fewer at a rate too low
    # to issue them in 4 x run_ms)
    min_queries: int = 256
    tolerance: float = 0.05  # stop when the bracket is this narrow (relative)
    confirm: int = 4  # runs twice as long at the chosen rate, stepping down by margin

    @classmethod
    def from_options(cls, options: dict[str, Any] | bool | None) -> "SearchOptions":
        known = {f.name for f in fields(cls)}
        given = options if isinstance(options, dict) else {}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"server_search: unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: v for k, v in given.items() if v is not None})


def single_query_refusal(single_ms: float, bound_ms: float) -> str | None:
    """The one-line refusal when one query alone is slower than the bound, else None."""
    if single_ms > bound_ms:
        return (f"Server refused before the long run: a single query takes {single_ms:.3f} ms, "
                f"above the {bound_ms:g} ms latency bound; no target QPS can be VALID")
    return None


def tune(oracle: LoadGenOracle, sut_args: dict[str, Any], calib: Calibration, conf: str,
         options: dict[str, Any], result) -> str:
    """Find the Server target QPS for the long run, set it on ``oracle.settings`` and
    return ``conf`` (the user.conf text) with its target_qps line rewritten to match.
    Records the steps in ``result.system["server_search"]``; raises ServerBoundError."""
    started = time.perf_counter()
    opts = SearchOptions.from_options(options.get("server_search"))
    settings = oracle.settings
    bound_ms = float(options.get("server_latency_ms") or settings.server_target_latency_ns / 1e6)
    record: dict[str, Any] = {"bound_ms": bound_ms, "single_query_ms": calib.latency_s * 1e3,
                              "options": asdict(opts), "steps": []}
    result.system["server_search"] = record
    why = single_query_refusal(calib.latency_s * 1e3, bound_ms)
    if why:
        raise ServerBoundError(why)
    saved = (settings.min_duration_ms, settings.max_duration_ms, settings.min_query_count,
             settings.server_target_qps)

    def passes(qps: float, length: int = 1) -> bool:
        p99_ms, backlog = _short_run(oracle, sut_args, qps, opts, len(record["steps"]),
                                     length) or (None, True)
        ok = p99_ms is not None and p99_ms <= opts.headroom * bound_ms and not backlog
        record["steps"].append({"qps": round(qps, 3), "p99_ms": p99_ms, "ok": ok,
                                "backlog": backlog, "confirm": length > 1})
        return ok

    lo, hi = 0.0, calib.throughput * 1.25  # the calibrated capacity, with room above it
    try:
        for _ in range(opts.steps):
            qps = (lo + hi) / 2
            lo, hi = (qps, hi) if passes(qps) else (lo, qps)
            if lo and (hi - lo) / hi < opts.tolerance:
                break
        target = lo * opts.margin
        # A queue near saturation builds slowly, so a short run can pass a rate a long one
        # cannot hold: confirm the chosen rate with a run twice as long, else step down.
        confirmed = not opts.confirm
        for _ in range(opts.confirm if lo else 0):
            if passes(target, 2):
                confirmed = True
                break
            target *= opts.margin
        lo = lo if confirmed else 0.0
    finally:
        (settings.min_duration_ms, settings.max_duration_ms, settings.min_query_count,
         settings.server_target_qps) = saved
    record["seconds"] = round(time.perf_counter() - started, 3)
    if not lo:
        last = record["steps"][-1]
        raise ServerBoundError(
            f"Server refused before the long run: no target QPS held the {bound_ms:g} ms bound "
            f"(the last tried, {last['qps']:.3f} QPS, had p99 {last['p99_ms']} ms)")
    record["target_qps"] = round(target, 3)
    settings.server_target_qps = target
    conf = re.sub(r"^(\S+\.Server\.target_qps = ).*$", rf"\g<1>{target:.3f}", conf, flags=re.M)
    if isinstance(result.settings, dict) and "user_conf" in result.settings:
        result.settings["user_conf"] = conf
    return conf


def _short_run(oracle: LoadGenOracle, sut_args: dict[str, Any], qps: float,
               opts: SearchOptions, step: int, length: int = 1) -> tuple[float, bool] | None:
    """One short Server run at ``qps``: (its p99 latency in ms, whether it fell behind the
    schedule); None when no latency was logged."""
    s = oracle.settings
    s.server_target_qps = qps
    run_ms, queries = length * int(opts.run_ms), length * int(opts.min_queries)
    s.min_duration_ms = run_ms
    s.max_duration_ms = 4 * run_ms  # a backlogged run ends soon anyway
    # at a low rate, min_queries would take minutes: fewer queries (p99 -> their max)
    s.min_query_count = max(16, min(queries, math.ceil(qps * 4 * run_ms / 1000)))
    out = Path(oracle.work_dir) / "server_search" / f"step_{step + 1}"
    with SystemUnderTest(**sut_args) as sut:
        oracle.run(sut, "performance", out)
    detail = loadgen_logs.read_detail(out)
    p99 = detail.get(P99_KEY)
    done, scheduled = (detail.get("result_completed_samples_per_sec"),
                       detail.get("result_scheduled_samples_per_sec"))
    if p99 is None:
        return None
    # a backlog (fewer completed than scheduled) grows without bound over a long run
    backlog = bool(done and scheduled and float(done) < BACKLOG * float(scheduled))
    return round(float(p99) / 1e6, 3), backlog
