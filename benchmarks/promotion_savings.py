"""Promotion savings (issue 12): device time of search + promotion of the front against
compliant runs of every grid point, computed from the records of a real run.

    python benchmarks/promotion_savings.py RUN_DIR

Search time is the recorded ``duration_s`` of the run's short trials. A compliant run
costs at least LoadGen's 600 s per measured scenario plus its accuracy run (taken as the
run's own mean short-trial time outside the performance run: an underestimate); the
front's promoted runs use the compliant rows' own durations where the run has them (a
Server row's includes the short runs that found its target QPS, printed apart).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from experiments.mlperf import COMPLIANT_MIN_DURATION_MS, MEASURED, PROMOTED, SHORT
    from experiments.records import read
    from experiments.report import fronts
    from tuner.fleet.dispatch import NodeInfo
    from tuner.study.plan import make_plan
    from tuner.commands.remeasure import load_run_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    args = ap.parse_args()
    rows = read(args.run_dir).to_pylist()
    short = [r for r in rows if r["fidelity"] == SHORT]
    cfg = load_run_config(args.run_dir)
    compliant_s = COMPLIANT_MIN_DURATION_MS / 1000
    for study, front in fronts(short).items():
        mine = [r for r in short if r["study"] == study]
        platform = mine[0]["platform"]
        # the run's space as its platform saw it (cores: this machine's)
        plan = make_plan(cfg, platform, [NodeInfo("n", platform, "", 1,
                                                  list(cfg.space.backends), cores=0)])
        grid = plan.space.size()
        scenarios = len(MEASURED["datacenter" if plan.system_type == "datacenter" else "edge"])
        search_s = sum(r["duration_s"] or 0 for r in mine)
        extra = search_s / len(mine) - (cfg.fidelity.min_duration_ms or 0) / 1000
        per_point = scenarios * (compliant_s + max(extra, 0))
        promoted = [r for r in rows if r["study"] == study and r["fidelity"] in PROMOTED]
        promote_s = (sum(r["duration_s"] for r in promoted) if promoted
                     else len(front) * per_point)
        every_s = grid * per_point
        print(f"{study}: grid {grid} points, {len(mine)} search trials "
              f"({search_s / 60:.1f} min), front {len(front)}, {scenarios} measured scenario(s)")
        print(f"  search + promote the front: {(search_s + promote_s) / 3600:.2f} h"
              f"{'' if promoted else ' (promotion estimated: no promoted rows)'}")
        print(f"  every grid point compliant:  {every_s / 3600:.1f} h "
              f"({every_s / 86400:.1f} days) -> {every_s / (search_s + promote_s):.0f}x more")
        # Server rows: what finding the target QPS cost before the long run (in duration_s)
        searches = [json.loads(r["system"] or "{}").get("server_search") for r in promoted
                    if r["scenario"] == "Server"]
        searches = [s for s in searches if s and s.get("seconds") is not None]
        if searches:
            print(f"  Server target QPS search: {sum(len(s['steps']) for s in searches)} short "
                  f"run(s), {sum(s['seconds'] for s in searches):.1f} s over {len(searches)} "
                  f"promotion(s)")
        print(json.dumps({"study": study, "ratio": round(every_s / (search_s + promote_s))}))


if __name__ == "__main__":
    main()
