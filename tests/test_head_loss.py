"""The head node lost mid-study: the driver ends (it cannot go on without the cluster), the
records stay readable, and after the fleet is started again the same command resumes with
nothing lost or measured twice."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from experiments.records import read
from tests.conftest import AUTH_KEYS, ROOT

COMMON = ["--num-cpus", "1", "--object-store-memory", str(80 * 1024**2), "--worker-ports", "16"]
SMALL = ["space.backends=[onnxruntime]", "space.model.width.choices=[0.25]",
         "space.model.resolution.choices=[32,48]", "fidelity.min_duration_ms=300",
         "fidelity.min_query_count=32", "fidelity.max_duration_ms=3000",
         "fidelity.accuracy_sample_count=100",
         "backends.onnxruntime.knobs.intra_op_threads.high=1",
         "backends.onnxruntime.knobs.execution_mode.choices=[sequential]",
         "backends.onnxruntime.knobs.allow_spinning.choices=[false]",
         "study.accuracy_floor=0.5", "study.trial_timeout_s=60", "progress=false",
         # node loss and resume are tested here; re-measurements on purpose in
         # test_measurement (here they would only add trials to count around)
         "measurement.racing=false", "measurement.canary_every=0"]


def agent(env, *args, timeout=150):
    return subprocess.run([sys.executable, "-m", "tuner.node", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def start_head(env, temp: Path, agent_id: str) -> str:
    out = agent(env, "start", "--head", "--port", "0", "--platform", "milan", "--id", agent_id,
                "--temp-dir", str(temp), *COMMON)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)["address"]


def recorded(run_dir: Path) -> list[dict]:
    try:
        return read(run_dir).to_pylist()
    except FileNotFoundError:
        return []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_head_lost_then_the_fleet_restarted_resumes(tmp_path, cache_dir):
    from tuner import node

    env = {k: v for k, v in os.environ.items() if k not in AUTH_KEYS}
    env.update(TUNER_STATE_DIR=str(tmp_path / "state"), TUNER_CACHE_DIR=str(cache_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    temp = Path(tempfile.mkdtemp(prefix="hl", dir="/tmp"))
    out, n = tmp_path / "run", 6
    try:
        address = start_head(env, temp / "a", "head-a")
        cmd = [sys.executable, "-m", "tuner", "+space=mobilenet", "cluster=ray",
               "cluster.platforms=[milan]", f"study.n_trials={n}", "study.name=headloss",
               f"hydra.run.dir={out}", f"cache_dir={cache_dir}", *SMALL]
        with open(tmp_path / "first.log", "w") as log:
            driver = subprocess.Popen(cmd + [f"cluster.address={address}"], cwd=tmp_path,
                                      env=env, stdout=log, stderr=subprocess.STDOUT)
            t0 = time.monotonic()
            while len(recorded(out)) < 2 and driver.poll() is None and time.monotonic() - t0 < 150:
                time.sleep(0.1)
            assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            (record,) = node.load_records(tmp_path / "state")
            for pid, start in node.node_targets(record).items():  # the head's power cut
                if node.is_alive(pid, start):
                    os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            try:
                code = driver.wait(timeout=240)
            finally:
                if driver.poll() is None:
                    driver.kill()
        ended_s = time.monotonic() - killed
        text = (tmp_path / "first.log").read_text()
        assert code == 3, text[-3000:]  # the driver's head watch, not Ray's 60 s abort
        assert "error: lost the cluster's head" in text and ended_s < 30, text[-2000:]
        before = recorded(out)
        assert 2 <= len(before) < n
        address = start_head(env, temp / "b", "head-b")  # the fleet comes back: a new head
        second = subprocess.run(cmd + [f"cluster.address={address}"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
        after = recorded(out)
        assert after[:len(before)] == before  # nothing recorded before the loss changed
        assert len(after) == n and len({r["params"] for r in after}) == n  # none twice
        assert len({r["trial"] for r in after}) == n
        print(f"\ndriver ended {ended_s:.1f}s after the head was lost; "
              f"{len(before)} of {n} trials recorded before; resumed to {len(after)}")
    finally:
        agent(env, "stop", "--grace", "3")
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.timeout(30)
def test_the_head_watch_notices_a_head_that_stops_answering():
    import socket
    import threading

    from tuner.fleet.head_watch import HeadWatch

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    lost = threading.Event()
    watch = HeadWatch(f"127.0.0.1:{port}", period_s=0.1, misses=3,
                      on_lost=lambda address: lost.set())
    try:
        assert not lost.wait(0.6)  # answering: nothing happens
        server.close()  # the head is gone
        assert lost.wait(5)
    finally:
        watch.stop()
