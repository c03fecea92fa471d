"""Scale-out: trials per hour with N devices against N x one device (issue 12), and the
driver's own cost per trial at 100 and 1000 trials (ask/tell, record, report).

Part 1 (scale-out). A real Ray cluster on 127.0.0.1 (``ray.cluster_utils.Cluster``: several
raylets, like several node agents) whose nodes carry ``dut_<platform>`` resources, N in
all; the real driver (tuner.study.driver.Driver: Optuna ask/tell, scheduler, records) runs a study
whose trials are simulated devices under test (tuner.fleet.simulate: each holds a device for
HOLD_S seconds, then answers from the imported published Jetson Xavier table; records are
labelled fidelity ``simulated``). Efficiency = (trials/hour with N devices) / (N x the
trials/hour with one device), measured in one run.

Part 2 (driver at scale). Replay studies (cluster=replay, no Ray) of 100 and 1000 trials:
wall time per trial, all driver costs included (ask/tell, scheduler, records, the report at
the end), with the default sampler and with random.

    python benchmarks/scale_out.py [--devices 1 4 16 64] [--hold-s 2] [--trials-per-device 4]

Goals: >= 0.95 up to 64 devices; driver cost per trial < 20 ms, flat from 100 to 1000.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PUBLISHED = ROOT.parent / "shared" / "published" / "inference_results_v1.0"
PLATFORM = "jetson-xavier"
THREADS = 8  # synthetic copies of each point (imported_table)


def imported_table(out: Path, threads: int = THREADS) -> Path:
    """The imported Xavier SingleStream table (188 points) widened ``threads``-fold by a
    made-up thread-count knob (latency x Amdahl's law, 30% serial; accuracy as is), so
    1000-trial studies have 1000+ distinct points. Synthetic: it measures the driver, not
    the device; the records say fidelity replay or simulated."""
    import json

    from experiments import published
    from experiments.records import write

    rows, _ = published.import_trees([PUBLISHED])
    wide = []
    for row in rows:
        if row["platform"] != PLATFORM or row["scenario"] != "SingleStream":
            continue
        for k in range(1, threads + 1):
            params = {**json.loads(row["params"]), f"{row['backend']}.threads": k}
            slower = 0.3 + 0.7 / k
            wide.append({**row, "params": json.dumps(params, sort_keys=True),
                         "trial": row["trial"] * threads + k - 1,
                         **{key: row[key] * slower for key in ("latency_ms", "p90_latency_ms")
                            if row[key] is not None}})
    write(out / "trials.parquet", wide)
    return out


def config(run_dir: Path, table: Path, *overrides: str):
    from hydra import compose, initialize_config_dir

    from tuner.config import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[
            "cluster=replay", f"cluster.table={table}", f"cluster.platforms=[{PLATFORM}]",
            f"run_dir={run_dir}", "progress=false", "study.accuracy_floor=0", *overrides])


def scale_out(devices: list[int], hold_s: float, per_device: int, table: Path) -> None:
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a private loopback cluster for this run only
    import ray
    from ray.cluster_utils import Cluster

    from tuner.fleet.dispatch import RayDispatcher, dut_resource
    from tuner.study.driver import Driver
    from tuner.fleet.replay import ReplayDispatcher
    from tuner.fleet.simulate import SimulatedDispatcher

    print(f"scale-out: simulated devices holding {hold_s:g} s per trial, {per_device} trials "
          "per device, one study (random sampler: the sampler's cost is part 2)")
    print(f"{'devices':>8} {'nodes':>6} {'trials':>7} {'wall s':>8} {'trials/h':>10} "
          f"{'ideal/h':>10} {'efficiency':>10}")
    base = None  # one device's trials/h, measured first in the same run
    for n in sorted(set(devices) | {1}):
        nodes = max(1, min(4, n // 4))  # several raylets, as several node agents
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        try:
            for k in range(nodes):
                share = n // nodes + (1 if k < n % nodes else 0)
                # num_cpus: logical slots only (trials ask for none); Ray keeps that many
                # idle workers alive, and with 0 it kills each idle worker within ~1 s, so
                # every round would start its workers anew (as an agent's node has its cores)
                cluster.add_node(num_cpus=share, resources={dut_resource(PLATFORM): share},
                                 labels={"platform": PLATFORM})
            cluster.wait_for_nodes()
            dispatcher = SimulatedDispatcher(RayDispatcher("ray", address=cluster.address),
                                             ReplayDispatcher(table), hold_s)
            # warm Ray's worker pool: a first round starts a worker process per device
            refs = [dispatcher._remote.options(num_cpus=0, resources={dut_resource(PLATFORM): 1})
                    .remote(None, 0.5) for _ in range(n)]
            ray.get(refs)
            trials = per_device * n
            with tempfile.TemporaryDirectory() as run:
                cfg = config(Path(run), table, f"study.n_trials={trials}", "study.sampler=random")
                t0 = time.perf_counter()
                Driver(cfg, dispatcher=dispatcher).run()
                wall = time.perf_counter() - t0
        finally:
            ray.shutdown()
            cluster.shutdown()
        per_hour = trials / wall * 3600
        if base is None:
            base = per_hour
        ideal = 3600 / hold_s * n
        print(f"{n:>8} {nodes:>6} {trials:>7} {wall:>8.1f} {per_hour:>10.0f} {ideal:>10.0f} "
              f"{per_hour / (n * base):>10.3f}")


def driver_cost(table: Path) -> None:
    from tuner.study.driver import Driver

    print("\ndriver at scale: replay studies (no device), wall time per trial, report included")
    print(f"{'sampler':>8} {'trials':>7} {'ms/trial':>9} {'last 100: ms/trial':>19}")
    for sampler in ("random", "front"):
        for n in (100, 1000):
            with tempfile.TemporaryDirectory() as run:
                cfg = config(Path(run), table, f"study.n_trials={n}", f"study.sampler={sampler}",
                             "study.name=scale")
                driver = Driver(cfg)
                t0 = time.perf_counter()
                driver.run()
                from experiments.report import render

                render(run)
                wall = time.perf_counter() - t0
                stamps = sorted(r["started_at"].timestamp() for r in driver.records.rows)
                tail = (stamps[-1] - stamps[-101]) / 100 * 1e3 if len(stamps) > 100 else float("nan")
            done = len(driver.records.rows)  # fewer than asked when the table is used up
            print(f"{sampler:>8} {done:>7} {wall / done * 1e3:>9.1f} {tail:>19.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--hold-s", type=float, default=2.0)
    ap.add_argument("--trials-per-device", type=int, default=4)
    ap.add_argument("--skip-scale-out", action="store_true")
    ap.add_argument("--skip-driver", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = imported_table(Path(tmp))
        if not args.skip_scale_out:
            scale_out(args.devices, args.hold_s, args.trials_per_device, table)
        if not args.skip_driver:
            driver_cost(table)


if __name__ == "__main__":
    main()
