"""The same command, the same answer: the default study run several times in a row.

Runs ``python -m tuner +space=mobilenet`` (plus any ``--override``) ``--runs`` times, each
into its own run directory, and prints:

- agreement: for every ordered pair of runs (A, B), the share of A's front points that are
  on B's front or among the configurations B lists as ``equivalent`` to one of its points,
  matched as (runtime, model) and as the exact configuration (runtime, model, knobs);
- interval coverage: for every configuration measured again later on the same node (in a
  later run, or re-measured within a run by racing or the canary), the share of its first
  record's 90% intervals that hold the later figure;
- cost: wall time and device time (trial durations) per run, search trials and
  re-measurements;
- with ``--baseline REF`` (a git commit, e.g. the last main before this work): the same
  command of that commit, run alternately with ours (A B A B, so drift on the machine
  hits both), for the wall-time ratio. Its fronts are scored the same way (no ties).

    python benchmarks/reproducibility.py --runs 3 [--baseline 3965260] [--out /tmp/repro]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from itertools import permutations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.records import read  # noqa: E402


def run_once(checkout: Path, run_dir: Path, overrides: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tuner", "+space=mobilenet", "progress=false",
                           f"hydra.run.dir={run_dir}", *overrides], cwd=checkout, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"run in {checkout} failed:\n{done.stderr[-3000:]}")
    return wall


def front_of(run_dir: Path) -> list[dict]:
    with open(run_dir / "pareto.csv") as fh:
        return list(csv.DictReader(fh))


def keys(point: dict, exact: bool) -> set[tuple]:
    """The point itself and its ties, as (runtime, model[, params])."""
    def key(backend, model, params):
        return (backend, model, json.dumps(params, sort_keys=True)) if exact else (backend, model)
    out = {key(point["backend"], point["model"], json.loads(point["params"]))}
    for tie in json.loads(point.get("equivalent") or "[]"):
        out.add(key(tie["backend"], tie["model"], tie["params"]))
    return out


def agreement(a: list[dict], b: list[dict], exact: bool) -> float:
    """Share of A's front points on B's front or among B's equivalents."""
    if not a:
        return 0.0
    b_keys = set().union(*(keys(p, exact) for p in b)) if b else set()
    mine = [next(iter(keys({**p, "equivalent": "[]"}, exact))) for p in a]
    return sum(k in b_keys for k in mine) / len(mine)


def coverage(runs: list[list[dict]], speed: str = "latency_ms") -> tuple[int, int]:
    """(held, checked): later figures of a configuration on the same node inside its first
    record's interval."""
    low_col, high_col = ("latency_low_ms", "latency_high_ms") if speed == "latency_ms" \
        else ("qps_low", "qps_high")
    first: dict[tuple, dict] = {}
    held = checked = 0
    for rows in runs:
        for r in sorted(rows, key=lambda r: r["started_at"]):
            if r["fidelity"] != "short" or r["state"] == "failed" or not r.get(speed):
                continue
            key = (r["node"], r["backend"], r["params"])
            earlier = first.get(key)
            if earlier is None:
                first[key] = r
            elif earlier.get(low_col) is not None:
                checked += 1
                held += earlier[low_col] <= r[speed] <= earlier[high_col]
    return held, checked


def summary(run_dir: Path) -> dict:
    rows = read(run_dir).to_pylist()
    again = [r for r in rows if (r.get("measured_for") or "search") != "search"]
    return {"rows": rows, "search": len(rows) - len(again),
            "again": {k: sum(r.get("measured_for") == k for r in again)
                      for k in ("race", "canary", "recheck")},
            "device_s": sum(r["duration_s"] or 0 for r in rows)}


def score(label: str, fronts: list[list[dict]]) -> None:
    for exact in (False, True):
        shares = [agreement(fronts[i], fronts[j], exact)
                  for i, j in permutations(range(len(fronts)), 2)]
        what = "exact configuration" if exact else "(runtime, model)"
        print(f"{label}: agreement by {what}: median {statistics.median(shares):.2f}, "
              f"worst {min(shares):.2f}, pairs {len(shares)}")


def promoted_coverage(run_dirs: list[Path], ms: int) -> None:
    held = checked = 0
    for run_dir in run_dirs:
        done = subprocess.run([sys.executable, "-m", "tuner", "promote", str(run_dir),
                               "--min-duration-ms", str(ms)], cwd=ROOT, capture_output=True,
                              text=True)
        if done.returncode != 0:
            print(f"promote {run_dir} failed: {done.stderr[-500:]}")
            continue
        rows = [r for r in read(run_dir).to_pylist() if r["fidelity"] == "compliant-reduced"]
        for r in rows:
            if r.get("within_short_interval") is not None:
                checked += 1
                held += bool(r["within_short_interval"])
                print(f"  promoted {r['backend']} {r['model']}: {r['latency_ms']:.4g} ms, "
                      f"{'inside' if r['within_short_interval'] else 'OUTSIDE'} its short interval")
    print(f"ours: promoted ({ms} ms runs) inside their short runs' interval: {held}/{checked}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("/tmp/tuner-repro"))
    ap.add_argument("--baseline", help="a git commit to run alternately, for the cost ratio")
    ap.add_argument("--override", action="append", default=[], help="a Hydra override")
    ap.add_argument("--promote-ms", type=int, default=0,
                    help="then promote each of our runs' fronts with runs of this many ms "
                         "(compliant-reduced) and print how many fell inside their interval")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = None
    if args.baseline:
        base = args.out / f"checkout-{args.baseline}"
        if not base.exists():
            subprocess.run(["git", "worktree", "add", "--detach", str(base), args.baseline],
                           cwd=ROOT, check=True, capture_output=True)
    ours, theirs = [], []
    for n in range(args.runs):
        for label, checkout, runs in (("ours", ROOT, ours), ("baseline", base, theirs)):
            if checkout is None:
                continue
            run_dir = args.out / f"{label}-{n}"
            if run_dir.exists():
                subprocess.run(["rm", "-rf", str(run_dir)], check=True)
            wall = run_once(checkout, run_dir, args.override)
            info = summary(run_dir)
            runs.append((run_dir, wall, info))
            front = front_of(run_dir)
            print(f"{label} run {n + 1}: {wall:.0f} s wall, {info['device_s']:.0f} s device, "
                  f"{info['search']} search trials, re-measured {info['again']}, front "
                  + ", ".join(f"{p['backend']} {p['model']}"
                              + (f" (+{len(json.loads(p['equivalent']))} tied)"
                                 if p.get("equivalent") not in (None, "", "[]") else "")
                              for p in front), flush=True)
    score("ours", [front_of(d) for d, _, _ in ours])
    held, checked = coverage([info["rows"] for _, _, info in ours])
    print(f"ours: interval coverage {held}/{checked} = {held / max(1, checked):.2f} "
          "(later figures of a configuration on the same node inside its first interval)")
    walls = [w for _, w, _ in ours]
    print(f"ours: wall median {statistics.median(walls):.0f} s "
          f"(min {min(walls):.0f}, max {max(walls):.0f})")
    if args.promote_ms:
        promoted_coverage([d for d, _, _ in ours], args.promote_ms)
    if theirs:
        score("baseline", [front_of(d) for d, _, _ in theirs])
        base_walls = [w for _, w, _ in theirs]
        ratios = [a / b for a, b in zip(walls, base_walls)]
        print(f"baseline: wall median {statistics.median(base_walls):.0f} s; ours/baseline "
              f"per pair {', '.join(f'{r:.2f}' for r in ratios)}, median "
              f"{statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
