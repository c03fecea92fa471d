"""The node agent's doctor: a node whose Ray or Python differs from the head's is refused in
one line before `ray start` (versions given by hand, and read from a real head's GCS on
127.0.0.1); LoadGen and the platform's runtimes; the extras a platform's setup installs;
the Jetson Nano's platform file and the on-prem `ray up` example."""
from __future__ import annotations

import json
import os
import platform as _platform
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import AUTH_KEYS
from tuner import node
from tuner.node import cli
from tuner.node.doctor import Finding, compare_versions, extras_spec, my_versions

ROOT = Path(__file__).resolve().parents[1]
RAY, PYTHON = my_versions()
MAJOR, MINOR, PATCH = (int(x) for x in PYTHON.split("."))
OTHER_MINOR = f"{MAJOR}.{MINOR - 1}.4"
OTHER_PATCH = f"{MAJOR}.{MINOR}.{PATCH + 1}"
# only the core's runtime expected: the refusals below are about versions alone
ONLY_CORE = ["--platform", "x8664", "--runtimes", "onnxruntime"]


def agent(env: dict[str, str], *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.node", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def doctor(capsys, *args: str) -> tuple[int, list[str], str]:
    rc = cli.main(["doctor", *ONLY_CORE, *args])
    out = capsys.readouterr()
    return rc, out.err.strip().splitlines(), out.out


# ----------------------------------------------------------------- versions given by hand

def test_a_mismatched_ray_is_refused_in_one_line(capsys, monkeypatch):
    monkeypatch.delenv("RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL", raising=False)
    rc, err, _ = doctor(capsys, "--head-ray", "2.59.0", "--head-python", PYTHON)
    assert rc == 1 and err == [
        f"doctor: Ray {RAY} here, 2.59.0 on the head (as given): install ray[default]==2.59.0 "
        "in this node's environment (Ray needs one version on every node and the driver)"]


def test_a_mismatched_python_is_refused_in_one_line(capsys, monkeypatch):
    monkeypatch.delenv("RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL", raising=False)
    rc, err, _ = doctor(capsys, "--head-ray", RAY, "--head-python", OTHER_MINOR)
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith(f"doctor: Python {PYTHON} here, {OTHER_MINOR} on the head")
    assert f"uv venv --python {OTHER_MINOR}" in err[0]


def test_a_patch_release_joins_under_the_fleets_policy(capsys, monkeypatch):
    # the fleet's policy (python_policy): the same minor release; Ray's own default
    # ("patch", check_version_info) only when the user sets it explicitly
    monkeypatch.delenv("RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL", raising=False)
    rc, err, out = doctor(capsys, "--head-ray", RAY, "--head-python", OTHER_PATCH)
    assert rc == 0 and err == [] and out.startswith("doctor: ok: x8664;")
    assert f"(head {OTHER_PATCH}: RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor)" in out
    monkeypatch.setenv("RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL", "patch")
    rc, err, _ = doctor(capsys, "--head-ray", RAY, "--head-python", OTHER_PATCH)
    assert rc == 1 and len(err) == 1 and "MATCH_LEVEL=patch refuses" in err[0]


def test_compare_versions_is_rays_rule():
    same = compare_versions(("2.60.0", "3.11.7"), ("2.60.0", "3.11.7"))
    assert [f.ok for f in same] == [True]
    both = compare_versions(("2.60.0", "3.12.1"), ("2.59.0", "3.11.7"), level="minor")
    assert [f.ok for f in both] == [False, False]
    assert compare_versions(("2.60.0", "3.11.9"), ("2.60.0", "3.11.7"), level="minor")[0].ok
    assert not compare_versions(("2.60.0", "3.11.9"), ("2.60.0", "3.11.7"), level="patch")[0].ok
    missing = compare_versions(("2.60.0", None), (None, "3.11.7"))
    assert missing[0].line.startswith("Ray not installed here")


def test_json_lists_every_check(capsys):
    rc = cli.main(["doctor", *ONLY_CORE, "--head-ray", RAY, "--head-python", PYTHON, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["ok"] and report["platform"] == "x8664"
    assert [f["check"] for f in report["findings"]] == ["python", "versions", "loadgen", "runtime"]


# ----------------------------------------------------------------- what start refuses (fast)

def test_start_refuses_an_unreachable_head_before_ray_start(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUNER_STATE_DIR", str(tmp_path / "state"))
    rc = cli.main(["start", "--address", "127.0.0.1:1", "--no-auth", "--temp-dir", "/tmp/tn-none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot reach the head's GCS at 127.0.0.1:1" in err[0]
    assert not list((tmp_path / "state").glob("*.json"))


def test_strict_start_refuses_a_coral_pi_without_its_edge_tpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUNER_STATE_DIR", str(tmp_path / "state"))
    from tuner.machine import platforms

    facts = platforms.detect()
    if any(a["kind"] == "edgetpu" for a in facts.accelerators) or facts.runtimes.get("litert"):
        pytest.skip("this machine has an Edge TPU, or no LiteRT")
    rc = cli.main(["start", "--head", "--strict", "--platform", "rpi4-coral",
                   "--runtimes", "litert", "--temp-dir", "/tmp/tn-none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no Coral Edge TPU seen" in err[0], err
    assert not list((tmp_path / "state").glob("*.json"))  # nothing started, no token left


def test_a_missing_runtime_is_one_line_saying_how(capsys, monkeypatch):
    from tuner.machine import platforms
    from tuner.node import doctor as doc

    facts = platforms.detect("rpi4", runtimes=False)
    facts.runtimes = {"onnxruntime": None, "tvm": "No module named 'tvm'", "litert": None}
    found = doc.runtime_findings(facts)
    assert [(f.ok, f.fatal) for f in found] == [(True, False), (False, False), (True, False)]
    assert found[1].line == ("tvm (expected on rpi4 by conf/platform/rpi4.yaml) is unavailable: "
                             "No module named 'tvm'; pip install -e '<checkout>[tvm]'")
    assert doc.runtime_findings(facts, offered="onnxruntime,litert") == [
        Finding("runtime", True, "onnxruntime", fatal=False),
        Finding("runtime", True, "litert", fatal=False)]


# ----------------------------------------------------------------- a real head on 127.0.0.1

@pytest.fixture
def head(tmp_path):
    state = tmp_path / "state"
    temp_root = Path(tempfile.mkdtemp(prefix="td", dir="/tmp"))  # short unix socket paths
    env = {k: v for k, v in os.environ.items() if k not in AUTH_KEYS}
    env.update(TUNER_STATE_DIR=str(state),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    env.pop("RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL", None)
    try:
        out = agent(env, "start", "--head", "--port", "0", "--id", "dhead", "--num-cpus", "1",
                    "--object-store-memory", str(80 * 1024**2), "--worker-ports", "16",
                    "--runtimes", "onnxruntime", "--temp-dir", str(temp_root / "h"))
        assert out.returncode == 0, out.stderr[-3000:]
        record = json.loads(out.stdout)
        port = record["address"].rpartition(":")[2]
        yield {"env": env, "state": state, "address": f"127.0.0.1:{port}", "record": record}
    finally:
        agent(env, "stop", "--grace", "6", timeout=120)
        for record in node.load_records(state):
            for pid, start in node.node_targets(record).items():
                if node.is_alive(pid, start):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_root, ignore_errors=True)


def _set_head_python(head, version: str) -> None:
    """Rewrite the head's own version record in its GCS, as a head on another Python
    would have written it."""
    code = ("import json, sys\nfrom ray._raylet import GcsClient\n"
            "c = GcsClient(address=sys.argv[1])\n"
            "m = json.loads(c.internal_kv_get(b'CLUSTER_METADATA', namespace=b'cluster'))\n"
            "m['python_version'] = sys.argv[2]\n"
            "c.internal_kv_put(b'CLUSTER_METADATA', json.dumps(m).encode(), True, "
            "namespace=b'cluster')\n")
    env = {**head["env"], "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": head["record"]["auth"]["token_path"]}
    done = subprocess.run([sys.executable, "-c", code, head["address"], version], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_the_heads_versions_are_read_from_its_gcs_and_a_mismatch_refused(head):
    env, address = head["env"], head["address"]
    # a node on this machine: the token comes from the head's record, as for start
    out = agent(env, "doctor", *ONLY_CORE, "--address", address)
    assert out.returncode == 0, out.stderr
    assert f"Ray {RAY}, Python {PYTHON} as on the head {address}" in out.stdout

    _set_head_python(head, OTHER_MINOR)
    out = agent(env, "doctor", *ONLY_CORE, "--address", address)
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        f"doctor: Python {PYTHON} here, {OTHER_MINOR} on the head {address}: make this node's "
        f"venv with Python {OTHER_MINOR} (e.g. uv venv --python {OTHER_MINOR}); Ray needs one "
        "Python on every node"]
    # start runs the same check and does not join: one line, no record, no `ray start`
    out = agent(env, "start", "--address", address, "--id", "dworker", "--runtimes",
                "onnxruntime", "--temp-dir", "/tmp/tn-none")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"error: Python {PYTHON} here, {OTHER_MINOR} on the head")
    assert [r["id"] for r in node.load_records(head["state"])] == ["dhead"]

    bad_token = Path(head["state"]) / "wrong.token"
    bad_token.write_text("0" * 64)
    out = agent(env, "doctor", *ONLY_CORE, "--address", address, "--token-file", str(bad_token))
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert "InvalidAuthToken" in out.stderr and "check the token" in out.stderr


# ----------------------------------------------------------------- setup per platform

def test_extras_per_platform():
    assert extras_spec("rpi4", None) == "litert,tvm"
    assert extras_spec("rpi4-coral", "/src") == "/src[litert,tvm]"
    assert extras_spec("jetson-nano", "/src") == "/src[litert,tvm]"
    assert extras_spec("nvidia-generic", "/src") == "/src[tvm]"  # TensorRT: NVIDIA's packages
    assert extras_spec("no-such-board", "/src") == "/src"


def test_jetson_nano_platform_file_is_what_the_board_can_run():
    from tuner.machine.platforms import CONF_DIR, load_platform_config

    conf = load_platform_config("jetson-nano")
    assert "tensorrt" not in conf["runtimes"]  # TensorRT 8.2 / Python 3.6 only on JetPack 4.6
    assert conf["tvm_target"]["kind"] == "llvm" and conf["tvm_target"]["mcpu"] == "cortex-a57"
    text = (CONF_DIR / "jetson-nano.yaml").read_text()
    assert "TensorRT 8.2" in text and "Python 3.6" in text and "container" in text


def test_ray_up_example_installs_per_platform_with_one_id_per_node():
    import yaml

    path = ROOT / "conf" / "cluster" / "examples" / "onprem-ray-up.yaml"
    config = yaml.safe_load(path.read_text())
    assert config["setup_commands"] == ["bash ~/tuner/conf/cluster/examples/onprem-node.sh"]
    script = ROOT / "conf" / "cluster" / "examples" / "onprem-node.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "tuner.node extras --spec" in script.read_text()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "tuner.node start" in c]
        assert len(start) == 1 and "--strict" in start[0] and "--id tuner-$HOSTNAME" in start[0]


def test_python_range_matches_what_the_pins_publish():
    from tuner.node.doctor import PYTHON_RANGE, python_finding

    assert python_finding().ok == (PYTHON_RANGE[0] <= sys.version_info[:2] < PYTHON_RANGE[1])
    assert _platform.python_version() == PYTHON
