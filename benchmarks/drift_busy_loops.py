"""Drift caught: two busy loops start 30 s into the default study and run for 60 s.

Starts ``python -m tuner +space=mobilenet`` into ``--out``, and ``--delay`` seconds later two
CPU-bound processes (bounded: each ends by itself after ``--busy`` seconds, and is killed at
the end whatever happens). When the study ends it prints:

- when the canary flagged the node, counted in search trials started after the loops began
  (goal: within 3);
- every record measured while the loops ran (its LoadGen runs overlapped them): measured
  again after them (a recheck, race or canary record of its configuration) or flagged
  (its configuration's pooled figure rests on drift suspects alone); goal: all;
- with ``--quiet RUN_DIR`` (a quiet run of the same command, e.g. from
  ``benchmarks/reproducibility.py``): how the final fronts agree, both ways.

    python benchmarks/drift_busy_loops.py [--out /tmp/tuner-busy] [--quiet /tmp/tuner-repro/ours-0]
"""
from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.reproducibility import agreement, front_of  # noqa: E402
from experiments import drift, noise  # noqa: E402
from experiments.records import read  # noqa: E402

BUSY = "import time\nend = time.time() + {s}\nwhile time.time() < end: pass\n"


def ts(row) -> float:
    started = row["started_at"]
    return started.timestamp() if isinstance(started, dt.datetime) else float(started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/tuner-busy"))
    ap.add_argument("--delay", type=float, default=30.0)
    ap.add_argument("--busy", type=float, default=60.0)
    ap.add_argument("--loops", type=int, default=2)
    ap.add_argument("--quiet", type=Path, help="a quiet run of the same command to compare")
    ap.add_argument("--override", action="append", default=[])
    args = ap.parse_args()
    subprocess.run(["rm", "-rf", str(args.out)], check=True)
    study = subprocess.Popen([sys.executable, "-m", "tuner", "+space=mobilenet",
                              "progress=false", f"hydra.run.dir={args.out}", *args.override],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    loops: list[subprocess.Popen] = []
    try:
        time.sleep(args.delay)
        busy_from = time.time()
        loops = [subprocess.Popen([sys.executable, "-c", BUSY.format(s=args.busy)])
                 for _ in range(args.loops)]
        for p in loops:
            p.wait(timeout=args.busy + 30)
        busy_to = time.time()
        _, err = study.communicate(timeout=3600)
        if study.returncode != 0:
            raise SystemExit(f"study failed:\n{err[-3000:]}")
    finally:
        for p in [*loops, study]:
            if p.poll() is None:
                p.kill()
    rows = sorted(read(args.out).to_pylist(), key=ts)
    print(f"{len(rows)} records; busy loops x{args.loops} from +{busy_from - ts(rows[0]):.0f} s "
          f"for {busy_to - busy_from:.0f} s")
    flagged = [r for r in rows if drift.drifted(r)]
    after = [r for r in rows if ts(r) >= busy_from]
    first = next((r for r in after if drift.drifted(r)), None)
    if first is None:
        print("canary: never flagged the node")
    else:
        before = [r for r in after if ts(r) < ts(first) and r.get("measured_for") == "search"]
        print(f"canary: flagged the node {len(before)} search trial(s) after the loops began "
              f"(trial {first['trial']}): {first['cause']}")
    print(f"canary records {sum(r.get('measured_for') == 'canary' for r in rows)}, "
          f"drift flags {len(flagged)}")
    under = [r for r in rows if r["state"] != "failed" and ts(r) < busy_to
             and ts(r) + (r["duration_s"] or 0) > busy_from
             and r.get("measured_for") != "canary"]
    suspects = drift.suspects(rows)
    pooled = {noise.config_key(p.row): p for p in noise.pool(rows, "latency_ms",
                                                             suspects=suspects)}
    again = flagged_only = neither = 0
    for r in under:
        later = [x for x in rows if noise.config_key(x) == noise.config_key(r)
                 and ts(x) > busy_to and x["trial"] != r["trial"]]
        if later:
            again += 1
        elif pooled[noise.config_key(r)].flagged:
            flagged_only += 1
        else:
            neither += 1
            print(f"  neither re-measured nor flagged: trial {r['trial']} {r['backend']} "
                  f"{r['model']} ({r.get('measured_for')}, suspect: "
                  f"{noise.record_id(r) in suspects})")
    print(f"measured under the loops: {len(under)}; re-measured after {again}, flagged "
          f"{flagged_only}, neither {neither}")
    if args.quiet:
        busy, quiet = front_of(args.out), front_of(args.quiet)
        for exact in (False, True):
            what = "exact" if exact else "(runtime, model)"
            print(f"front agreement with the quiet run by {what}: busy->quiet "
                  f"{agreement(busy, quiet, exact):.2f}, quiet->busy {agreement(quiet, busy, exact):.2f}")


if __name__ == "__main__":
    main()
