"""A heterogeneous fleet end to end: a real Ray cluster on 127.0.0.1 started by the node
agent (a head and two workers posing as three platforms), one study per platform driven
concurrently through ``cluster=ray``, the pre-dispatch check, nodes lost mid-trial (one
crashed, one hung) and a driver killed mid-study and rerun.

Every Ray process here is started by ``python -m tuner.node start`` with a private
``TUNER_STATE_DIR`` and stopped by its recorded PIDs; nothing calls ``ray stop``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import optuna
from experiments.records import read
import pytest

from tests.conftest import AUTH_KEYS, restore_ray_auth
from hydra import compose, initialize_config_dir

from tuner import node
from tuner.config import register

ROOT = Path(__file__).resolve().parents[1]
HEAD, WORKERS = "milan", ("rpi4", "jetson-nano")
# The GCS (on the head) marks a silent node dead after failure_threshold health checks
# that each wait timeout_ms, period_ms apart: ~12 s here instead of Ray's ~65 s default,
# so the hung-node case stays short. (A crashed node's closed sockets are noticed sooner.)
FAST_HEALTH_CHECK = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "2000",
                     "RAY_health_check_failure_threshold": "4"}
COMMON = ["--num-cpus", "1", "--object-store-memory", str(80 * 1024**2), "--worker-ports", "32"]
SMALL = ["space.backends=[onnxruntime]", "space.model.width.choices=[0.25]",
         "space.model.resolution.choices=[32,48]",
         "fidelity.min_duration_ms=300", "fidelity.min_query_count=32",
         "fidelity.max_duration_ms=3000", "fidelity.accuracy_sample_count=100",
         # cheap knobs: one thread, no spinning, on a shared 2-core host
         "backends.onnxruntime.knobs.intra_op_threads.high=1",
         "backends.onnxruntime.knobs.execution_mode.choices=[sequential]",
         "backends.onnxruntime.knobs.allow_spinning.choices=[false]",
         # an absolute floor the small models pass, so every platform has a Pareto front
         "study.accuracy_floor=0.5", "study.trial_timeout_s=60", "progress=false",
         # node loss and resume are tested here; re-measurements on purpose in
         # test_measurement (here they would only add trials to count around)
         "measurement.racing=false", "measurement.canary_every=0"]

register()
pytestmark = [pytest.mark.timeout(300)]
slow = pytest.mark.slow  # the tests that start a fleet


def agent(env: dict[str, str], *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.node", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def start_node(fleet: dict[str, Any], platform: str, *extra: str,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    out = agent(env or fleet["env"], "start", "--address", fleet["address"], "--platform",
                platform, "--id", platform, "--temp-dir", str(fleet["temp_root"] / platform),
                *COMMON, *extra)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def kill_node(record: dict[str, Any], sig: signal.Signals) -> list[int]:
    """Signal every live process of one recorded node (and only those) in one instant.

    The processes are first all stopped (a stopped process holds its pipes open, so no
    other sees an end of file), then signalled: as on a power cut, none of them lives on
    for a moment to report what it saw of the others dying (seen in CI: a trial's worker
    outlived the fork server it was starting a trial on and reported an EOFError crash)."""
    targets: dict[int, Any] = {}
    while True:  # a process forked before its parent stopped joins on the next pass
        new = {pid: start for pid, start in node.node_targets(record).items()
               if pid not in targets and node.is_alive(pid, start)}
        if not new:
            break
        for pid in new:
            os.kill(pid, signal.SIGSTOP)
        targets.update(new)
    if sig != signal.SIGSTOP:
        for pid, start in targets.items():
            if node.is_alive(pid, start):
                os.kill(pid, sig)
    return sorted(targets)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("fleet") / "state"
    # Ray's unix socket paths must stay short: no pytest tmp_path for --temp-dir
    temp_root = Path(tempfile.mkdtemp(prefix="tf", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in AUTH_KEYS}
    env["TUNER_STATE_DIR"] = str(state)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    fleet: dict[str, Any] = {"state": state, "temp_root": temp_root, "env": env, "nodes": {}}
    t0 = time.monotonic()
    try:
        port = node.pick_ports(["gcs"], 0)[0]["gcs"]
        out = agent({**env, **FAST_HEALTH_CHECK}, "start", "--head", "--port", str(port),
                    "--platform", HEAD, "--id", HEAD, "--temp-dir", str(temp_root / HEAD),
                    *COMMON)
        assert out.returncode == 0, out.stderr[-3000:]
        fleet["nodes"][HEAD] = json.loads(out.stdout)
        fleet["address"] = f"127.0.0.1:{port}"  # joined by the loopback name, as a user would
        # A Jetson runs no LiteRT: hide it from that node (its detection and its workers).
        shim = temp_root / "no-litert" / "ai_edge_litert"
        shim.mkdir(parents=True)
        (shim / "__init__.py").write_text("raise ImportError('not on this node (test fleet)')\n")
        for platform in WORKERS:
            wenv = dict(env)
            if platform == "jetson-nano":
                wenv["PYTHONPATH"] = os.pathsep.join([str(shim.parent), env["PYTHONPATH"]])
            fleet["nodes"][platform] = start_node(fleet, platform, env=wenv)
        fleet["start_s"] = time.monotonic() - t0
        yield fleet
    finally:
        agent(env, "stop", "--grace", "6", timeout=120)
        # belt and braces: whatever a record still owns, and only that
        for record in node.load_records(state):
            kill_node(record, signal.SIGKILL)
        shutil.rmtree(temp_root, ignore_errors=True)


@pytest.fixture
def driver_env(fleet: dict[str, Any], monkeypatch) -> Iterator[None]:
    """This process as a driver of the fleet: the state dir locates the head's token;
    afterwards Ray's cached auth mode and token are reset for later tests."""
    saved = {k: os.environ.get(k) for k in AUTH_KEYS}
    monkeypatch.setenv("TUNER_STATE_DIR", str(fleet["state"]))
    try:
        yield
    finally:
        restore_ray_auth(saved)


def fleet_config(fleet, run_dir, cache_dir, *overrides: str):
    base = ["+space=mobilenet", "cluster=ray", f"cluster.address={fleet['address']}",
            f"run_dir={run_dir}", f"cache_dir={cache_dir}", "study.name=fleet", *SMALL]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=base + list(overrides))


def rows(run_dir: Path) -> list[dict[str, Any]]:
    return read(run_dir).to_pylist()  # the table and any parts not yet compacted


def load_study(run_dir: Path, name: str) -> optuna.Study:
    from tuner.study.driver import JOURNAL

    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / JOURNAL))))


# ---------------------------------------------------------------------------------------


@slow
def test_one_study_per_platform_each_on_its_own_node(fleet, driver_env, tmp_path, cache_dir):
    from experiments.report import fronts
    from tuner.study.driver import Driver

    platforms = [HEAD, *WORKERS]
    cfg = fleet_config(fleet, tmp_path, cache_dir, "study.n_trials=2",
                       f"cluster.platforms=[{','.join(platforms)}]")
    t0 = time.monotonic()
    studies = Driver(cfg).run()  # its own RayDispatcher("ray", address) via make_dispatcher
    took = time.monotonic() - t0
    assert [ps.platform for ps in studies] == platforms
    assert all(ps.plan.devices == 1 for ps in studies)  # one dut_<platform> per node

    got = rows(tmp_path)
    assert sorted((r["study"], r["trial"]) for r in got) == sorted(
        (f"fleet.{p}", n) for p in platforms for n in range(2))
    for r in got:
        assert r["state"] == "complete", r["cause"]
        assert r["study"] == f"fleet.{r['platform']}" and r["node"]
        system = json.loads(r["system"])
        rec = fleet["nodes"][r["platform"]]
        # every trial of platform P ran on P's node, and the record says which node that was
        assert system["ray_node_id"] == rec["node_id"], (r["platform"], system["ray_node_id"])
        assert system["ray_node_labels"]["platform"] == r["platform"]
        assert system["ray_node_labels"]["tuner.node"] == rec["id"]
        assert system["hostname"] == r["node"]
        assert json.loads(r["config"])["platform"] == r["platform"]

    # the studies ran side by side, not one after another
    spans = {p: [(r["started_at"].timestamp(), r["started_at"].timestamp() + r["duration_s"])
                 for r in got if r["platform"] == p] for p in platforms}
    assert any(a0 < b1 and b0 < a1 for i, p in enumerate(platforms) for q in platforms[i + 1:]
               for a0, a1 in spans[p] for b0, b1 in spans[q])

    front = fronts(got)
    assert sorted(front) == sorted(f"fleet.{p}" for p in platforms)
    assert all(front[f"fleet.{p}"] for p in platforms)  # each platform has its own front
    for p in platforms:
        assert {r["platform"] for r in front[f"fleet.{p}"]} == {p}
    print(f"\nfleet start {fleet['start_s']:.1f}s; 3 platforms x 2 trials {took:.1f}s")


@slow
def test_missing_platform_or_runtime_fails_before_dispatch(fleet, driver_env, tmp_path,
                                                           cache_dir):
    import backends

    from tuner.fleet.dispatch import DispatchError
    from tuner.study.driver import Driver
    from tuner.study.run_setup import show_plan

    t0 = time.monotonic()
    cfg = fleet_config(fleet, tmp_path, cache_dir, "cluster.platforms=[milan,nosuch]")
    with pytest.raises(DispatchError) as err:
        Driver(cfg).run()
    msg = str(err.value)
    assert "no node of platform 'nosuch'" in msg, msg
    present = msg.split("present: ")[1].split(")")[0].split(", ")
    assert set(present) >= {HEAD, *WORKERS}, msg
    assert "'milan'" not in msg

    # The space asks for LiteRT, which the Jetson node does not have: reported and
    # skipped there (the plan says so), or a stop when the user asks for strictness.
    cfg = fleet_config(fleet, tmp_path, cache_dir, "cluster.platforms=[milan,jetson-nano]",
                       "space.backends=[onnxruntime,litert]")
    printed: list[str] = []
    show_plan(cfg, out=printed.append)
    plan = printed[0]
    jetson = plan.split("jetson-nano:")[1]
    assert "runtimes: onnxruntime" in jetson and "skipped: litert" in jetson, plan
    if backends.get("litert").available() is None:  # the other nodes do have it
        assert "litert" in plan.split("milan:")[1].split("jetson-nano:")[0], plan
    cfg = fleet_config(fleet, tmp_path, cache_dir, "cluster.platforms=[milan,jetson-nano]",
                       "space.backends=[onnxruntime,litert]", "cluster.require_all_runtimes=true")
    with pytest.raises(DispatchError) as err:
        Driver(cfg).run()
    msg = str(err.value)
    assert "platform 'jetson-nano' has no node with runtime(s) litert" in msg, msg
    assert "'milan'" not in msg, msg
    assert not (tmp_path / "trials.parquet").exists()  # nothing was dispatched
    assert time.monotonic() - t0 < 60


@slow
def test_nodes_lost_mid_trial_are_recorded_and_the_rest_finishes(fleet, driver_env, tmp_path,
                                                                 cache_dir):
    """Two extra workers die while one of their trials runs: one crashes (every process
    SIGKILLed, as on a power cut), one hangs (SIGSTOPped: alive but silent, as a frozen
    board or a cut cable). Both trials end as "node lost"; milan's study finishes."""
    from tuner.fleet.dispatch import RayDispatcher
    from tuner.study.driver import Driver

    crash, hang = "rpi4-coral", "x8664"
    victims = {crash: start_node(fleet, crash), hang: start_node(fleet, hang)}
    killed: dict[str, float] = {}
    stop = threading.Event()

    def killer() -> None:
        # Kill a victim once Ray runs its trial there: the worker's title is the task's name.
        while not stop.is_set() and len(killed) < len(victims):
            procs = node.all_procs()
            for platform, record in victims.items():
                if platform in killed:
                    continue
                try:
                    ours = node.node_targets(record, procs)
                    running = any(procs[pid].cmdline.startswith("ray::_measure_task")
                                  for pid in ours)
                except (KeyError, OSError):  # a process came or went meanwhile
                    continue
                if running:
                    time.sleep(0.5)  # well inside the trial: it takes seconds
                    kill_node(record, signal.SIGKILL if platform == crash else signal.SIGSTOP)
                    killed[platform] = time.time()
            time.sleep(0.2)

    cfg = fleet_config(fleet, tmp_path, cache_dir, "study.n_trials=3",
                       f"cluster.platforms=[{HEAD},{crash},{hang}]")
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    t0 = time.monotonic()
    dispatcher = RayDispatcher("ray", fleet["address"])
    try:
        studies = Driver(cfg, dispatcher=dispatcher).run()
        alive = set(dispatcher.platforms())
    finally:
        dispatcher.shutdown()
        took = time.monotonic() - t0
        stop.set()
        thread.join(10)
        for record in victims.values():  # a stopped process still dies of SIGKILL
            kill_node(record, signal.SIGKILL)
    assert set(killed) == set(victims), f"killed only {sorted(killed)}"

    got = rows(tmp_path)
    by_platform = {p: [r for r in got if r["platform"] == p] for p in (HEAD, crash, hang)}
    for platform in (crash, hang):
        seen = [(r["trial"], r["state"], r["cause"], round(r["started_at"].timestamp()
                 - killed[platform], 1), round(r["duration_s"], 1)) for r in by_platform[platform]]
        *before, row = by_platform[platform]  # the trial in flight is the last one
        assert row["state"] == "failed" and row["cause"].startswith("node lost"), seen
        assert row["started_at"].timestamp() < killed[platform], seen
        # trials finished before the kill (if the killer was slow to see one start) are
        # measured; no trial was sent after the loss
        assert all(r["state"] == "complete" for r in before), seen
        assert row["duration_s"] < 60  # not a trial timeout
        swept = (f"node lost: no alive node of platform '{platform}' left "
                 "(the cluster marked it dead)")
        if platform == crash:
            # Ray's own report, or the driver's if its liveness check came first. With every
            # process SIGKILLed at once, Ray reports whichever link it sees break first: the
            # node (NodeDiedError names it) or the trial's worker (WorkerCrashedError names
            # no node; seen in CI).
            assert row["cause"] in (
                f"node lost: NodeDiedError (node {victims[crash]['node_id']})",
                "node lost: WorkerCrashedError", swept), seen
        else:  # Ray never fails a task on a silent node: the driver's liveness check does
            assert row["cause"] == swept, seen
        noticed = row["started_at"].timestamp() + row["duration_s"] - killed[platform]
        print(f"\n{platform}: '{row['cause']}' recorded {noticed:.1f}s after the kill")
    assert len(by_platform[HEAD]) == 3
    assert all(r["state"] in ("complete", "infeasible") for r in by_platform[HEAD])
    ps = {s.platform: s for s in studies}
    assert ps[HEAD].finished == 3
    assert ps[crash].lane.devices == 0 == ps[hang].lane.devices
    assert "no x8664 node left" in ps[hang].ended
    # told to Optuna as measured-but-penalised, not left RUNNING
    for platform in (crash, hang):
        trials = load_study(tmp_path, f"fleet.{platform}").trials
        # (a trial held for another platform's accuracy measurement and never run is
        # told as failed, with its reason)
        run = [t for t in trials if "never_run" not in t.user_attrs]
        assert len(run) == len(by_platform[platform])
        assert all(t.state.name != "RUNNING" for t in trials)
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in run)
        assert run[-1].user_attrs["cause"].startswith("node lost")
    # the other nodes are untouched
    assert alive >= {HEAD, *WORKERS} and not alive & set(victims)
    assert took < 150, f"the run took {took:.0f}s"
    print(f"kill study {took:.1f}s")


def recorded(run_dir: Path) -> int:
    try:
        return len(rows(run_dir))
    except FileNotFoundError:  # nothing recorded yet
        return 0


def start_and_kill(cmd, cwd, env, out: Path, log_path: Path, at_least: int) -> None:
    """Run the driver until at least ``at_least`` trials are recorded and the next are in
    flight, then SIGKILL it."""
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while time.monotonic() - t0 < 150 and proc.poll() is None:
                if recorded(out) >= at_least:
                    time.sleep(0.3)  # the next trials are asked and running
                    break
                time.sleep(0.1)
            assert proc.poll() is None, log_path.read_text()[-3000:]
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@slow
def test_driver_killed_twice_mid_study_resumes_without_loss_or_rerun(fleet, tmp_path, cache_dir):
    out = tmp_path / "run"
    platforms = [HEAD, "rpi4"]
    n = 8  # trials take about a second each now: enough left to kill the driver twice
    cmd = [sys.executable, "-m", "tuner", "+space=mobilenet", "cluster=ray",
           f"cluster.address={fleet['address']}", f"cluster.platforms=[{','.join(platforms)}]",
           f"study.n_trials={n}", "study.name=resume", f"hydra.run.dir={out}",
           f"cache_dir={cache_dir}", *SMALL]
    env = {**fleet["env"], "TUNER_CACHE_DIR": str(cache_dir)}
    t0 = time.monotonic()
    left_running: dict[str, list[int]] = {p: [] for p in platforms}
    snapshots = []
    for kill, at_least in enumerate((3, 8)):  # killed twice in a row, mid-study each time
        start_and_kill(cmd, tmp_path, env, out, tmp_path / f"run{kill}.log", at_least)
        before = rows(out)
        assert at_least <= len(before) < n * len(platforms)
        recorded = {(r["study"], r["trial"]) for r in before}
        for p in platforms:  # in flight when killed (recorded-but-not-told ones are told later)
            trials = load_study(out, f"resume.{p}").trials
            left_running[p] += [t.number for t in trials
                                if t.state == optuna.trial.TrialState.RUNNING
                                and (f"resume.{p}", t.number) not in recorded]
        snapshots.append(before)
    assert any(left_running.values()), "no trial was in flight when the driver was killed"

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=200)
    took = time.monotonic() - t0
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    after = rows(out)
    for before in snapshots:  # nothing recorded before a kill changed or vanished
        assert after[:len(before)] == before
    keys = [(r["study"], r["trial"]) for r in after]
    assert len(keys) == len(set(keys))  # no trial recorded twice
    for p in platforms:
        name = f"resume.{p}"
        mine = [r for r in after if r["study"] == name]
        assert len(mine) == n, [(r["trial"], r["state"]) for r in mine]
        assert len({r["params"] for r in mine}) == n  # no point measured twice
        assert all(r["state"] in ("complete", "infeasible") for r in mine)
        study = load_study(out, name)
        complete = {t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
                    and "cached_from" not in t.user_attrs}  # a repeat is told, not measured
        assert complete == {r["trial"] for r in mine}  # every told trial has exactly one record
        failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL
                  and "repeat_of_inflight" not in t.user_attrs]
        # the trials a killed driver left running were re-queued once and never recorded,
        # or (seen once) recorded in the instant of the kill and told from that record on
        # resume: never both
        rerun = sorted(n for n in left_running[p] if n not in {r["trial"] for r in mine})
        assert sorted(t.number for t in failed) == rerun
        requeued = [t for t in study.trials if "requeued_from" in t.user_attrs]
        assert sorted(t.user_attrs["requeued_from"] for t in requeued) == rerun
        for t in requeued:
            src = next(f for f in failed if f.number == t.user_attrs["requeued_from"])
            assert t.params == src.params
    print(f"\nresume after two kills: {sum(map(len, left_running.values()))} re-queued, "
          f"{took:.1f}s in all")


@slow
def test_driver_off_the_head_machine_joins_with_the_token_env(fleet, driver_env, tmp_path,
                                                              monkeypatch):
    """A driver where no head of this agent runs (a worker's machine): no record to find
    the token by, so RAY_AUTH_TOKEN_PATH names it; without any token it stops, saying so."""
    from tuner.fleet.dispatch import DispatchError, RayDispatcher

    monkeypatch.setenv("TUNER_STATE_DIR", str(tmp_path / "elsewhere"))  # no records here
    for key in AUTH_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token either
    with pytest.raises(DispatchError, match="RAY_AUTH_TOKEN_PATH"):
        RayDispatcher("ray", fleet["address"])

    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", fleet["nodes"][HEAD]["auth"]["token_path"])
    dispatcher = RayDispatcher("ray", fleet["address"])
    try:
        assert set(dispatcher.platforms()) >= {HEAD, *WORKERS}
        assert os.environ["RAY_AUTH_MODE"] == "token"
    finally:
        dispatcher.shutdown()


def test_ray_up_example_is_a_valid_cluster_file_starting_node_agents():
    """conf/cluster/examples/onprem-ray-up.yaml: what `ray up` accepts, with node agents
    (never `ray stop`) as the start commands; and not a Hydra choice for `cluster=`."""
    import copy
    import shlex

    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    path = ROOT / "conf" / "cluster" / "examples" / "onprem-ray-up.yaml"
    config = yaml.safe_load(path.read_text())
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` runs first
    assert config["provider"]["type"] == "local"

    def agent_args(cmd: str) -> list[str]:
        words = shlex.split(cmd.replace("$RAY_HEAD_IP", config["provider"]["head_ip"]))
        return words[words.index("tuner.node") + 1:words.index("||") if "||" in words else None]

    for key, role in (("head_start_ray_commands", "--head"),
                      ("worker_start_ray_commands", "--address")):
        cmds = config[key]
        assert not any("ray stop" in c for c in cmds), key
        assert all("-m tuner.node " in c for c in cmds), key
        starts = [agent_args(c) for c in cmds if "tuner.node start" in c]
        assert len(starts) == 1, key
        args, unknown = node.build_parser().parse_known_args(starts[0])
        assert args.cmd == "start" and args.token_file and args.platform is None
        assert (args.head if role == "--head" else args.address.endswith(":6379"))
        # `ray up` starts the workers through Ray's autoscaler on the head, which runs only
        # if `ray start --head` gets --autoscaling-config: the agent must pass it on. (The
        # agent may not know the flag yet; then parse_known_args leaves it over.)
        bootstrap = "--autoscaling-config=~/ray_bootstrap_config.yaml"
        assert set(unknown) <= ({bootstrap} if args.head else set()), unknown
        assert (bootstrap in starts[0]) == bool(args.head)
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):  # the schema refuses it as cluster=...
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            compose("config", overrides=["+space=mobilenet", "cluster=examples/onprem-ray-up"])


def test_a_platform_held_after_a_node_loss_follows_the_cluster_view():
    """Ray can report NodeDiedError before the cluster lists the node dead: the platform is
    held (no new trial) until the list drops the node, or released if it never does."""
    from tuner.fleet.dispatch import NodeInfo
    from tuner.study.scheduler import Scheduler
    from tuner.trial import TrialConfig

    class Fleet:  # what the scheduler asks of a dispatcher, with a node that dies at once
        def __init__(self) -> None:
            self.alive = {"rpi4": [NodeInfo("a", "rpi4", "", 1), NodeInfo("b", "rpi4", "", 1)]}
            self.refs: list[int] = []

        def platforms(self):
            return self.alive

        def submit(self, cfg, timeout_s):
            self.refs.append(len(self.refs))
            return self.refs[-1]

        def wait(self, refs, timeout_s):
            return list(refs)

        def result(self, ref):
            return "node lost: NodeDiedError (node abc)"

        def cancel(self, ref):
            pass

    fleet = Fleet()
    scheduler = Scheduler(fleet, trial_timeout_s=60, liveness_period_s=0.0)
    lane = scheduler.add_lane("rpi4", 2)
    scheduler.submit(TrialConfig("s.rpi4", 0, "rpi4", {}, {}, "onnxruntime", {}, "SingleStream"))
    (done,) = scheduler.poll(timeout_s=0)
    assert done.result.cause.startswith("node lost") and not done.result.ok
    # the loss was reported while both nodes are still listed: held, no trial may start
    assert lane.held() and lane.devices == 2 and lane.free() == 0
    fleet.alive["rpi4"].pop()  # the cluster catches up: one node left
    scheduler.check_liveness()
    assert not lane.held() and lane.devices == 1 and lane.free() == 1

    lane.hold_until = time.monotonic() - 1  # a false alarm: the hold ran out, node listed
    scheduler.check_liveness()
    assert lane.hold_until == 0.0 and lane.devices == 1

    lane.hold_until = time.monotonic() + 60
    fleet.alive = {}  # the last node goes: the platform stops
    scheduler.check_liveness()
    assert lane.devices == 0 and "no rpi4 node left" in lane.stopped and not scheduler.holding
