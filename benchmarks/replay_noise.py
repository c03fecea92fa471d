"""Replay with noise: how much front recall the search loses when every replayed figure is
as noisy as a real node's, at the same budget.

Imports the published v1.0 tree (``--published``, default the excerpt in tests/data), and for
each device's SingleStream table replays the default study (``study.sampler=front``,
racing and the canary on) through the real driver, with ``cluster.replay_noise`` 0 (the
table as published) and ``--noise`` (default 0.05, a log spread like this machine's), over
``--seeds`` seeds each, at ``n_trials`` = ``--budget`` x the size of the device's true
front (the noise-free table's). Recall: the share of true-front configurations that the
run's reported front names, as a point or as one of its ``equivalent`` configurations.
Prints recall per device and setting (median over seeds), the fall with noise, and the
re-measurements racing spent.

    python benchmarks/replay_noise.py [--seeds 5] [--noise 0.05] [--budget 1.5]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from experiments import pareto, ties  # noqa: E402
from experiments.published import write_run  # noqa: E402
from experiments.records import read  # noqa: E402
from tuner.config import register  # noqa: E402
from tuner.study.driver import Driver  # noqa: E402

SHARED = ROOT / "tests" / "data" / "published" / "inference_results_v1.0"  # shipped excerpt


def key(row) -> tuple:
    params = row["params"] if isinstance(row["params"], dict) else json.loads(row["params"])
    return (row["backend"], json.dumps(params, sort_keys=True))


def reported(rows, speed: str, noisy: bool) -> set:
    front = ties.front(rows, speed) if noisy else pareto.front(rows, speed)
    out = set()
    for point in front:
        out.add(key(point))
        out |= {key(t) for t in json.loads(point.get("equivalent") or "[]")}
    return out


def one(table: Path, platform: str, n_trials: int, noise: float, seed: int, work: Path):
    run_dir = work / f"{platform}-{noise}-{seed}"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "cluster=replay", f"cluster.table={table}", f"cluster.platforms=[{platform}]",
            f"cluster.replay_noise={noise}", f"study.n_trials={n_trials}", f"study.seed={seed}",
            "study.accuracy_floor=0.0", f"run_dir={run_dir}", "progress=false"])
    with contextlib.redirect_stdout(io.StringIO()):
        Driver(cfg).run()
    return read(run_dir).to_pylist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--published", type=Path, default=SHARED)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--budget", type=float, default=1.5, help="n_trials as a multiple of the front")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    register()
    work = Path(tempfile.mkdtemp(prefix="replay-noise-"))
    table = work / "table"
    rows, _ = write_run([args.published], table)
    search = [r for r in rows if r["scenario"] == "SingleStream" and r["state"] == "complete"]
    falls = []
    for platform in sorted({r["platform"] for r in search}):
        mine = [r for r in search if r["platform"] == platform]
        truth = {key(r) for r in pareto.front(mine, "latency_ms")}
        n_trials = max(4, math.ceil(args.budget * len(truth)))
        recall: dict[float, list[float]] = {}
        spent: dict[float, list[int]] = {}
        kinds: dict[tuple, list[int]] = {}
        for noise in (0.0, args.noise):
            for seed in range(args.seeds):
                got = one(table, platform, n_trials, noise, seed, work)
                found = reported([r for r in got if r["state"] != "failed"], "latency_ms", noise > 0)
                recall.setdefault(noise, []).append(len(truth & found) / len(truth))
                spent.setdefault(noise, []).append(sum(r.get("measured_for") not in (None, "search")
                                                       for r in got))
                for kind in ("race", "canary", "recheck"):
                    kinds.setdefault((noise, kind), []).append(
                        sum(r.get("measured_for") == kind for r in got))
        clean, noisy = (statistics.median(recall[n]) for n in (0.0, args.noise))
        falls.append(clean - noisy)
        print(f"{platform}: {len(mine)} points, true front {len(truth)}, {n_trials} trials: "
              f"recall {clean:.2f} noise-free, {noisy:.2f} at noise {args.noise} "
              f"(fall {clean - noisy:+.2f}); re-measurements median "
              f"{statistics.median(spent[args.noise]):.0f} (noise-free "
              f"{statistics.median(spent[0.0]):.0f}): " + ", ".join(
                  f"{k} {statistics.median(kinds[(args.noise, k)]):.0f}"
                  for k in ("race", "canary", "recheck")), flush=True)
    print(f"fall in recall with noise: median {statistics.median(falls):+.2f}, "
          f"worst {max(falls):+.2f} (goal <= 0.10)")


if __name__ == "__main__":
    main()
