"""The node agent end to end: a real Ray head + worker started by ``python -m tuner.node``
on 127.0.0.1 as two "platforms" pinned to their own CPUs and offering different runtimes,
a driver that dispatches by label, and a stop that ends exactly the processes the agent
started (the head's Ray client server included) and leaves nothing on the nodes' ports."""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import AUTH_KEYS, restore_ray_auth

from tuner import node
from tuner.fleet.dispatch import RayDispatcher
from tuner.node import cli, labels
from tuner.node.procs import listeners, session_procs

ROOT = Path(__file__).resolve().parents[1]
HEAD_PLATFORM, WORKER_PLATFORM = "milan", "rpi4-coral"

pytestmark = pytest.mark.timeout(240)
# The worker emulates a Coral Pi: its own CPU, ONNX Runtime only, a fake Edge TPU. On a
# one-CPU machine both nodes share CPU 0.
CPUS = sorted(os.sched_getaffinity(0))
HEAD_CPUS, WORKER_CPUS = [CPUS[0]], [CPUS[-1]]


def agent(env: dict[str, str], *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.node", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def descendants(pids: set[int], procs: dict[int, node.Proc]) -> set[int]:
    found, stack = set(pids), list(pids)
    while stack:
        parent = stack.pop()
        for p in procs.values():
            if p.ppid == parent and p.pid not in found:
                found.add(p.pid)
                stack.append(p.pid)
    return found


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[dict[str, Any]]:
    state = tmp_path / "state"
    # Ray's unix socket paths must stay short: no pytest tmp_path for --temp-dir
    temp_root = Path(tempfile.mkdtemp(prefix="tn", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in AUTH_KEYS}
    env["TUNER_STATE_DIR"] = str(state)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # a bystander that looks like Ray by name (and names our temp dir): must survive stop
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                              "ray::gcs_server", "raylet", str(temp_root)])
    ctx = {"state": state, "temp_root": temp_root, "env": env, "decoy": decoy}
    try:
        yield ctx
    finally:
        agent(env, "stop", "--grace", "6", timeout=120)
        # belt and braces: whatever a record still owns, and only that
        for record in node.load_records(state):
            for pid, start in node.node_targets(record).items():
                if node.is_alive(pid, start):
                    os.kill(pid, signal.SIGKILL)
        decoy.kill()
        decoy.wait()
        shutil.rmtree(temp_root, ignore_errors=True)


@pytest.mark.slow
def test_head_and_worker_label_dispatch_and_stop(fleet: dict[str, Any]) -> None:
    import ray

    env, state, temp_root = fleet["env"], fleet["state"], fleet["temp_root"]
    before = node.all_procs()
    foreign = {pid for pid, p in before.items() if "ray" in p.cmdline and pid != fleet["decoy"].pid}
    t0 = time.monotonic()
    port = node.pick_ports(["gcs"], 0)[0]["gcs"]
    common = ["--num-cpus", "1", "--object-store-memory", str(100 * 1024**2)]
    out = agent(env, "start", "--head", "--port", str(port), "--platform", HEAD_PLATFORM,
                "--temp-dir", str(temp_root / "h"), "--cpus", str(HEAD_CPUS[0]),
                "--accelerators", "none", *common)
    assert out.returncode == 0, out.stderr[-3000:]
    head = json.loads(out.stdout)
    t_head = time.monotonic() - t0
    # join through the loopback name: the agent finds the head's token by its record
    out = agent(env, "start", "--address", f"127.0.0.1:{port}", "--platform", WORKER_PLATFORM,
                "--temp-dir", str(temp_root / "w"), "--cpus", str(WORKER_CPUS[0]),
                "--runtimes", "onnxruntime", "--accelerators", "edgetpu", *common)
    assert out.returncode == 0, out.stderr[-3000:]
    worker = json.loads(out.stdout)
    t_worker = time.monotonic() - t0 - t_head

    # records: token auth, a private token file the worker shares, distinct ports
    assert head["auth"]["mode"] == "token" and head["auth"]["source"] == "generated"
    token = Path(head["auth"]["token_path"])
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text()) == 64
    assert worker["auth"]["token_path"] == str(token)
    assert worker["address"] == head["address"] and head["address"].endswith(f":{port}")
    assert not set(head["ports"].values()) & set(worker["ports"].values())
    assert {p["role"] for p in head["processes"]} >= {"gcs_server", "raylet", "client_server"}
    assert {p["role"] for p in worker["processes"]} >= {"raylet"}
    assert head["facts"]["platform"] == HEAD_PLATFORM
    assert worker["facts"]["platform"] == WORKER_PLATFORM
    assert worker["facts"]["detected_platform"] == head["facts"]["detected_platform"]

    # what each node offers: its CPU set, a subset of runtimes, an (emulated) accelerator
    assert worker["runtimes"] == ["onnxruntime"] and worker["accelerators"] == ["edgetpu"]
    assert worker["facts"]["runtimes"]["litert"] == "not offered by this node (--runtimes)"
    assert head["accelerators"] == [] and head["cpus"] == HEAD_CPUS
    raylet = next(p for p in worker["processes"] if p["role"] == "raylet")
    assert sorted(os.sched_getaffinity(raylet["pid"])) == WORKER_CPUS

    saved = {k: os.environ.get(k) for k in (*AUTH_KEYS, "TUNER_STATE_DIR")}
    try:
        address = node.prepare_driver(f"127.0.0.1:{port}", directory=state)
        assert address == head["address"]
        # the driver's own path: RayDispatcher joins with the head's token from its record
        os.environ["TUNER_STATE_DIR"] = str(state)
        dispatcher = RayDispatcher("ray", address=f"127.0.0.1:{port}")
        infos = {i.node_id: i for i in dispatcher.nodes()}
        assert (infos[head["node_id"]].cores, infos[worker["node_id"]].cores) == (1, 1)
        assert infos[worker["node_id"]].runtimes == ["onnxruntime"]
        assert infos[worker["node_id"]].accelerators == ["edgetpu"]
        assert infos[head["node_id"]].accelerators == []
        assert infos[head["node_id"]].runtimes == head["runtimes"]
        nodes = {n["Labels"].get("tuner.node"): n for n in ray.nodes() if n["Alive"]}
        for rec, platform in ((head, HEAD_PLATFORM), (worker, WORKER_PLATFORM)):
            n = nodes[rec["id"]]
            assert n["NodeID"] == rec["node_id"]
            assert n["Labels"]["platform"] == platform
            assert n["Labels"]["arch"] == rec["facts"]["arch"]
            assert n["Resources"][f"dut_{platform}"] == 1
            assert n["Resources"][f"platform_{platform}"] == 1
            for runtime, why in rec["facts"]["runtimes"].items():
                assert (f"runtime_{runtime}" in n["Resources"]) == (why is None)

        @ray.remote(max_retries=0)
        def where() -> tuple[str, list[int]]:
            return ray.get_runtime_context().get_node_id(), sorted(os.sched_getaffinity(0))

        for rec, platform, cpus in ((worker, WORKER_PLATFORM, WORKER_CPUS),
                                    (head, HEAD_PLATFORM, HEAD_CPUS)):
            ref = where.options(label_selector={"platform": platform},
                                resources={f"dut_{platform}": 1}).remote()
            assert tuple(ray.get(ref, timeout=60)) == (rec["node_id"], cpus)   # runs pinned
    finally:
        restore_ray_auth(saved)
    t_driver = time.monotonic() - t0 - t_head - t_worker

    # stop: exactly the recorded processes and what they spawned, nothing else
    procs = node.all_procs()
    recorded = {(p["pid"], p["start"]) for rec in (head, worker) for p in rec["processes"]}
    ours = descendants({pid for pid, _ in recorded}, procs)
    out = agent(env, "stop", "--json", "--grace", "15")
    assert out.returncode == 0, out.stdout + out.stderr
    reports = json.loads(out.stdout)
    t_stop = time.monotonic() - t0 - t_head - t_worker - t_driver
    assert [r["id"] for r in reports] == [worker["id"], head["id"]]   # workers first
    signalled = {s["pid"] for r in reports for s in r["signalled"]}
    assert signalled and signalled <= ours, signalled - ours
    assert not signalled & foreign
    for pid, start in recorded:
        assert not node.is_alive(pid, start), pid
    assert fleet["decoy"].poll() is None, "the bystander process was killed"
    assert not token.exists()   # the head's generated token goes with it
    still_foreign = {pid for pid in foreign if pid in node.all_procs()}
    assert not signalled & still_foreign
    # nothing of either node is left: no listener on its ports, no member of its session
    assert any(s["role"] == "client_server" for r in reports for s in r["signalled"])
    for rec in (head, worker):
        assert not listeners(rec["ports"].values()), (rec["id"], listeners(rec["ports"].values()))
        assert not session_procs(rec["sid"], rec["launcher_start"]), rec["id"]

    status = json.loads(agent(env, "status", "--json").stdout)
    assert {n["id"]: n["alive"] for n in status["nodes"]} == {head["id"]: False,
                                                              worker["id"]: False}
    print(f"\nhead start {t_head:.1f}s, worker start {t_worker:.1f}s, driver {t_driver:.1f}s, "
          f"stop {t_stop:.1f}s")


@pytest.mark.slow
def test_bad_platform_override_starts_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "TUNER_STATE_DIR": str(tmp_path / "state")}
    out = agent(env, "start", "--head", "--platform", "pdp11", "--temp-dir", "/tmp/tn-none")
    assert out.returncode == 2 and "unknown platform" in out.stderr
    assert not list((tmp_path / "state").glob("*.json"))


@pytest.mark.slow
def test_worker_without_token_is_refused_before_ray_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in AUTH_KEYS}
    env.update(TUNER_STATE_DIR=str(tmp_path / "state"), HOME=str(tmp_path))  # no ~/.ray token
    out = agent(env, "start", "--address", "127.0.0.1:1", "--temp-dir", "/tmp/tn-none")
    assert out.returncode != 0 and "no auth token" in out.stderr


# ----------------------------------------------------------------- what a node offers (fast)


@pytest.mark.parametrize("option,value,message", [
    ("--cpus", "9999", "not usable here"),
    ("--cpus", "1-0", "runs backwards"),
    ("--cpus", "a", "expected a list"),
    ("--runtimes", "onnxruntime,nosuch", "unknown runtime 'nosuch'"),
    ("--accelerators", "tpu9", "unknown kind 'tpu9'"),
])
def test_bad_offer_is_one_line_and_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture, option: str,
                                                  value: str, message: str) -> None:
    monkeypatch.setenv("TUNER_STATE_DIR", str(tmp_path / "state"))
    rc = cli.main(["start", "--head", "--temp-dir", "/tmp/tn-none", option, value])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list((tmp_path / "state").glob("*.json"))


def test_uninstalled_runtime_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    import backends

    missing = [n for n, why in backends.availability().items() if why is not None]
    if not missing:
        pytest.skip("every runtime is installed here")
    monkeypatch.setenv("TUNER_STATE_DIR", str(tmp_path / "state"))
    assert cli.main(["start", "--head", "--runtimes", missing[0]]) == 2
    assert f"runtime {missing[0]!r} is not installed here" in capsys.readouterr().err


def test_offer_narrows_facts() -> None:
    from tuner.node.offer import apply_offer, parse_cpu_list
    from tuner.machine.platforms import detect

    assert parse_cpu_list("0") == [0] and parse_cpu_list("0,1") == parse_cpu_list("0-1") == [0, 1]
    assert parse_cpu_list("3,0-1") == [0, 1, 3]
    facts = detect()
    installed = [n for n, why in facts.runtimes.items() if why is None]
    cpus = apply_offer(facts, cpus=str(CPUS[-1]), runtimes=installed[0], accelerators="edgetpu")
    assert cpus == [CPUS[-1]] and facts.cpus_usable == 1 and facts.cpu_affinity == cpus
    assert [n for n, why in facts.runtimes.items() if why is None] == installed[:1]
    assert set(facts.runtime_versions) == set(installed[:1])
    assert [a["kind"] for a in facts.accelerators] == ["edgetpu"]
    assert facts.accelerators[0]["emulated"] is True
    apply_offer(facts, cpus=None, runtimes=None, accelerators="none")
    assert facts.accelerators == [] and facts.cpus_usable == len(CPUS)


def test_labels_round_trip() -> None:
    from ray._private.label_utils import parse_node_labels_string

    made = labels.node_labels(platform="rpi4-coral", arch="aarch64", agent_id="a1", cores=4,
                              accelerators=["gpu", "edgetpu"])
    # what `ray start --labels k=v,...` parses and validates
    flag = ",".join(f"{k}={v}" for k, v in made.items())
    assert parse_node_labels_string(flag) == made
    assert labels.accelerators_of(made) == ["edgetpu", "gpu"]
    assert labels.cores_of(made, {"CPU": 64}) == 4
    assert labels.cores_of({"platform": "local"}, {"CPU": 2.0}) == 2   # cluster=local
    none = labels.node_labels(platform="milan", arch="x86_64", agent_id="b", cores=2,
                              accelerators=[])
    assert parse_node_labels_string(",".join(f"{k}={v}" for k, v in none.items())) == none
    assert labels.accelerators_of(none) == []
    assert labels.runtimes_of(labels.node_resources("milan", ["tvm", "onnxruntime"])) == [
        "onnxruntime", "tvm"]
