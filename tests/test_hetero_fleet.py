"""A truly heterogeneous fleet, emulated on one machine: three node agents on 127.0.0.1 with
different platforms, CPU sets, runtimes and devices. One study over the fleet searches each
platform's own space: only its runtimes, thread knobs within its node's cores, the Edge TPU
option only where a node has one (a fake device here: the trials that use it fail with a
clear cause, since no Coral is attached). Accuracy is measured once per model file x runtime
x output-changing knobs, whichever platform gets there first; the others inherit it after a
spot check. The fleet report shows three fronts, and after ``stop`` nothing of the fleet
is left running.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from experiments.records import read
import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import AUTH_KEYS, ROOT, restore_ray_auth
from tuner.config import register

register()
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
COMMON = ["--num-cpus", "1", "--object-store-memory", str(80 * 1024**2), "--worker-ports", "16"]
# platform -> agent options: what each node offers
NODES = {
    "x8664": ["--cpus", "0-1", "--runtimes", "onnxruntime,litert"],
    "rpi4": ["--cpus", "0", "--runtimes", "litert"],
    "rpi4-coral": ["--cpus", "1", "--runtimes", "onnxruntime,litert", "--accelerators", "edgetpu"],
}
SMALL = ["space.backends=[onnxruntime,litert]", "space.model.width.choices=[0.25,0.5]",
         "space.model.resolution.choices=[32,48]",
         "fidelity.min_duration_ms=300", "fidelity.min_query_count=32",
         "fidelity.max_duration_ms=3000", "fidelity.accuracy_sample_count=100",
         "backends.onnxruntime.knobs.execution_mode.choices=[sequential]",
         "backends.onnxruntime.knobs.allow_spinning.choices=[false]",
         "study.accuracy_floor=0.5", "study.trial_timeout_s=90", "progress=false",
         "study.sampler=random"]


def agent(env, *args, timeout=150):
    return subprocess.run([sys.executable, "-m", "tuner.node", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_each_platform_searches_its_own_space(tmp_path, cache_dir, monkeypatch):
    import backends

    if backends.get("litert").available() is not None:
        pytest.skip("LiteRT not installed")
    from experiments import fleet_report
    from tuner.study.driver import Driver
    from tuner.study.run_setup import show_plan
    from tuner.node import load_records

    state = tmp_path / "state"
    temp_root = Path(tempfile.mkdtemp(prefix="th", dir="/tmp"))  # short unix socket paths
    env = {k: v for k, v in os.environ.items() if k not in AUTH_KEYS}
    env.update(TUNER_STATE_DIR=str(state), TUNER_CACHE_DIR=str(cache_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    saved = {k: os.environ.get(k) for k in AUTH_KEYS}
    ports: set[int] = set()
    try:
        (head, *workers) = NODES
        out = agent(env, "start", "--head", "--port", "0", "--platform", head, "--id", head,
                    "--temp-dir", str(temp_root / head), *COMMON, *NODES[head])
        assert out.returncode == 0, out.stderr[-3000:]
        address = json.loads(out.stdout)["address"]
        for platform in workers:
            out = agent(env, "start", "--address", address, "--platform", platform,
                        "--id", platform, "--temp-dir", str(temp_root / platform), *COMMON,
                        *NODES[platform])
            assert out.returncode == 0, out.stderr[-3000:]
        for record in load_records(state):
            ports |= {int(p) for p in (record.get("ports") or {}).values() if p}

        monkeypatch.setenv("TUNER_STATE_DIR", str(state))
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=[
                "+space=mobilenet", "cluster=ray", f"cluster.address={address}",
                f"run_dir={tmp_path / 'run'}", f"cache_dir={cache_dir}", "study.name=hetero",
                "study.n_trials=6", *SMALL,
                # few accuracy keys (4 models x 2 runtimes), so platforms share them
                "space.model.width.choices=[0.25]",
                "backends.onnxruntime.knobs.graph_optimization.choices=[all]",
                "backends.litert.knobs.xnnpack.choices=[true]"])
        printed: list[str] = []
        show_plan(cfg, out=printed.append)
        plan = printed[0]
        assert "skipped: onnxruntime" in plan.split("rpi4:")[1].split("rpi4-coral:")[0], plan
        assert "litert.edgetpu" in plan.split("rpi4-coral:")[1], plan
        assert plan.count("litert.edgetpu") == 1, plan

        studies = Driver(cfg).run()
        assert sorted(ps.platform for ps in studies) == sorted(NODES)
        rows = read(tmp_path / "run").to_pylist()
        cores = {"x8664": 2, "rpi4": 1, "rpi4-coral": 1}
        offered = {"x8664": {"onnxruntime", "litert"}, "rpi4": {"litert"},
                   "rpi4-coral": {"onnxruntime", "litert"}}
        for r in rows:
            params = json.loads(r["params"])
            assert r["backend"] in offered[r["platform"]], r
            threads = [v for k, v in params.items() if k.endswith("threads") and "inter" not in k]
            assert all(1 <= t <= cores[r["platform"]] for t in threads), r
            assert ("litert.edgetpu" in params) <= (r["platform"] == "rpi4-coral"), r
            if params.get("litert.edgetpu"):
                assert r["state"] == "failed" and "Edge TPU" in r["cause"], r
            labels = json.loads(r["system"]).get("ray_node_labels", {})
            if labels:
                assert labels["platform"] == r["platform"]
        # each accuracy key measured once across the fleet; the rest inherited
        measured: dict[str, list] = {}
        for r in rows:
            if r["accuracy_source"] in ("measured", "estimated") and "spot check" not in (r["cause"] or ""):
                measured.setdefault(r["accuracy_key"], []).append((r["platform"], r["trial"]))
        assert all(len(v) == 1 for v in measured.values()), measured
        inherited = [r for r in rows if r["accuracy_source"] == "inherited"]
        assert inherited and all(r["accuracy_from"] for r in inherited)
        fronts = fleet_report.platform_fronts(rows)
        assert len(fronts) == 3 and all(front for _, front in fronts.values()), fronts
        from experiments.report import render

        html = render(tmp_path / "run")["fleet_html"].read_text()
        assert all(p in html for p in NODES)
    finally:
        restore_ray_auth(saved)
        stopped = agent(env, "stop", "--grace", "6", timeout=120)
        shutil.rmtree(temp_root, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    from tuner.node.procs import listeners

    held = {port: pids for port, pids in listeners(ports).items() if pids}
    assert not held, f"still listening: {held}"
