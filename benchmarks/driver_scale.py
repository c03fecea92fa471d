"""Driver-side cost per trial as a study grows: the records part (issue 12).

Times ``experiments.records.Records.add`` (one row, as the driver records each trial) over
the adds from 100 and from 900 rows on (compactions included), and a cold ``read`` of the run, against the
layout of earlier versions (the whole ``trials.parquet`` rewritten after every trial),
measured in one run. Rows carry a realistic config/system JSON (~3 KB).

    python benchmarks/driver_scale.py [--rows 1000]

Goal (issue 12): driver cost per trial < 20 ms, flat from 100 to 1000 trials (this script
covers recording; ask/tell and the report are the driver's own benchmark).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from experiments import records


def row(i: int) -> dict:
    config = {"study": "s", "trial": i, "knobs": {"intra_op_threads": 1}, "pad": "x" * 1500}
    return {"study": "s", "trial": i, "state": "complete", "fidelity": "short",
            "platform": "x8664", "node": "n", "backend": "onnxruntime", "model": f"m{i % 32}",
            "scenario": "SingleStream", "objective": "latency_ms", "params": "{}",
            "latency_ms": 1.0 + i % 7, "accuracy": 0.9, "valid": True,
            "started_at": 1.7e9 + i, "duration_s": 4.0, "log_dir": f"trials/{i:05d}",
            "config": json.dumps(config), "system": json.dumps({"pad": "y" * 1500})}


class Rewrite(records.Records):
    """Earlier versions: every add rewrote the whole table (reference only)."""

    def add(self, r: dict) -> None:
        self.rows.append(records._coerce(r))
        records.write(self.path, self.rows)


WINDOW = 100  # adds timed at each point: a multiple of the compaction interval


def cost_per_add(cls, n_rows: int, at: tuple[int, ...]) -> dict:
    """Mean cost of the WINDOW adds that start at each point of ``at`` (compactions
    included, so the figure is the amortised cost)."""
    run = Path(tempfile.mkdtemp(prefix="driver-scale-"))
    rec, out, i = cls(run), {}, 0
    while i < n_rows:
        if i in at:
            start = time.perf_counter()
            for j in range(WINDOW):
                rec.add(row(i + j))
            out[i] = (time.perf_counter() - start) / WINDOW
            i += WINDOW
        else:
            rec.add(row(i))
            i += 1
    start = time.perf_counter()
    n = records.read(run).num_rows
    out["read"] = time.perf_counter() - start
    out["rows"] = n
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    at = (100, args.rows - WINDOW)
    figures = {}
    for name, cls in (("parts (now)", records.Records), ("rewrite (before)", Rewrite)):
        runs = [cost_per_add(cls, args.rows, at) for _ in range(args.repeat)]
        figures[name] = {k: statistics.median(r[k] for r in runs) for k in (*at, "read")}
    print(f"Records.add per trial (ms, amortised over {WINDOW} adds), median of {args.repeat} runs;"
          f" read: a cold read of the {args.rows}-row run")
    print(f"{'layout':18s} {'at 100':>8s} {'at ' + str(at[1]):>9s} {'ratio':>6s} {'read all':>9s}")
    for name, f in figures.items():
        print(f"{name:18s} {f[at[0]] * 1e3:8.2f} {f[at[1]] * 1e3:9.2f} "
              f"{f[at[1]] / f[at[0]]:6.2f} {f['read'] * 1e3:8.1f}ms")


if __name__ == "__main__":
    main()
