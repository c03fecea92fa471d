"""Which records a command works on: trials named as N or STUDY:N, a study's front, the
latest promoted run of a trial. Only records measured on a device qualify: published
(someone else's) and replayed (no device) rows are never promoted or packed."""
from __future__ import annotations

from typing import Any, Iterable

from experiments.mlperf import PROMOTED, SHORT


def parse_pick(text: str) -> tuple[str | None, int]:
    """TRIAL is N or STUDY:N."""
    study, _, number = text.rpartition(":")
    try:
        return (study or None), int(number)
    except ValueError:
        raise ValueError(f"trial {text!r}: expected N or STUDY:N") from None


def _matches(row: dict[str, Any], picks: list[tuple[str | None, int]]) -> bool:
    return any(n == row["trial"] and s in (None, row["study"]) for s, n in picks)


def to_promote(rows: list[dict[str, Any]], picks: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The short-run rows to promote: the named trials, else every study's Pareto front."""
    from experiments.report import fronts

    short = [r for r in rows if r["fidelity"] == SHORT]
    picks = list(picks)
    if not picks:
        return [r for front in fronts(short).values() for r in front]
    chosen = []
    for pick in picks:
        found = [r for r in short if _matches(r, [parse_pick(pick)])]
        if not found:
            raise ValueError(f"no short-run record for trial {pick!r} (published and "
                             "replayed records cannot be promoted)")
        if len(found) > 1:
            raise ValueError(f"trial {pick!r} is in several studies "
                             f"({', '.join(r['study'] for r in found)}): use STUDY:N")
        chosen.append(found[0])
    return chosen


def promoted(rows: list[dict[str, Any]], picks: list[str] | None = None) -> list[dict[str, Any]]:
    """The latest promoted record per (study, trial, scenario), optionally only the picks."""
    latest: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        if r["fidelity"] in PROMOTED:
            latest[(r["study"], r["trial"], r["scenario"])] = r
    chosen = list(latest.values())
    if picks:
        wanted = [parse_pick(p) for p in picks]
        chosen = [r for r in chosen if _matches(r, wanted)]
    return chosen
