"""``python -m tuner.node doctor``: will this node work in the fleet? Checked before it
joins, each problem as one line that says what to do; exit 1 when there is any.

- **The head's Ray and Python.** Ray refuses a node whose Ray version, or Python version,
  differs from the cluster's, but only inside ``ray start``, as a traceback in the node's
  log. The fleet's policy (``tuner.node.python_policy``): the same minor release; a patch
  difference joins (Ray's ``RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor``, which ``start``
  and the driver set) and is said in the ok line. The head's versions are Ray's own
  record of them: the cluster metadata the head writes into its GCS when it starts (what
  Ray compares with), read with ``--address`` in a child process (Ray's client logs from C++ and waits 40 s on
  a dead address; the child keeps that out of the one line). ``--head-ray`` /
  ``--head-python`` give them by hand instead (no head to reach, or an older Ray).
- **Python** within what the pinned packages publish for.
- **LoadGen** (``mlperf_loadgen``) imports.
- **Each runtime the platform expects**: ``conf/platform/<name>.yaml``'s ``runtimes``
  (narrowed by ``--runtimes``) available here; on a platform that searches the Edge TPU
  delegate, a Coral device and ``libedgetpu.so.1``.

``start`` runs the same checks first: it refuses to join on a version or LoadGen problem
(exit 2, one line) and warns about missing runtimes (the node offers what it has).
``extras`` prints the pip extras of the platform's runtimes for a node's setup.
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import json
import os
import platform as _platform
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from tuner.machine import platforms
from tuner.machine.platforms import NodeFacts
from tuner.node import python_policy
from tuner.node.python_policy import MATCH_ENV, PYTHON_RANGE  # noqa: F401 (re-exported)
# runtime -> the pip extra that installs it (None: the core install has it)
EXTRAS = {"onnxruntime": None, "litert": "litert", "tvm": "tvm", "tensorrt": None}
HOW = {
    "onnxruntime": "pip install -e <checkout> (the core install has it)",
    "litert": "pip install -e '<checkout>[litert]'",
    "tvm": "pip install -e '<checkout>[tvm]'",
    "tensorrt": "needs an NVIDIA GPU, onnxruntime-gpu and NVIDIA's TensorRT (README, Runtimes)",
}
EDGETPU_LIBRARY = "libedgetpu.so.1"
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0

# Run in a child: prints {"ray_version", "python_version", ...} or one line of error.
_READ_METADATA = r"""
import json, sys
try:
    from ray._raylet import GcsClient
    raw = GcsClient(address=sys.argv[1]).internal_kv_get(
        b"CLUSTER_METADATA", namespace=b"cluster", timeout=10)
    print(json.dumps(json.loads(raw) if raw else None))
except Exception as exc:
    print("error: " + (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200])
    sys.exit(3)
"""


@dataclass
class Finding:
    check: str  # versions | python | loadgen | runtime | edgetpu
    ok: bool
    line: str  # what is wrong and what to do; or what was found
    fatal: bool = True  # start refuses to join (versions, loadgen); runtimes only warn


# ----------------------------------------------------------------------------- versions

def head_versions(address: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """(Ray version, Python version) as the head's GCS records them; RuntimeError with one
    line when they cannot be read."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot reach the head's GCS at {address} ({exc}): check the "
                           f"address and that TCP {port} is open from this node") from None
    try:
        done = subprocess.run([sys.executable, "-c", _READ_METADATA, address],
                              capture_output=True, text=True, timeout=READ_TIMEOUT_S,
                              env=env if env is not None else dict(os.environ))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the head's GCS at {address} did not answer in "
                           f"{READ_TIMEOUT_S:.0f} s") from None
    lines = done.stdout.strip().splitlines() or done.stderr.strip().splitlines() or ["no output"]
    out = lines[-1]
    if done.returncode != 0 or not out.startswith("{"):
        why = "no version record in its GCS" if out == "null" else \
            out.removeprefix("error: ").split(". ")[0]  # Ray's first sentence says it
        hint = "; check the token (--token-file)" if "auth" in why.lower() else ""
        raise RuntimeError(f"could not read the head's versions at {address}: {why[:200]}"
                           f"{hint}; or pass --head-ray/--head-python")
    meta = json.loads(out)
    return str(meta["ray_version"]), str(meta["python_version"])


def my_versions() -> tuple[str | None, str]:
    try:
        ray_version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        ray_version = None
    return ray_version, _platform.python_version()


def compare_versions(head: tuple[str | None, str | None], mine: tuple[str | None, str],
                     where: str = "the head", level: str | None = None) -> list[Finding]:
    """Ray's own rule (``ray._private.utils.check_version_info``) at the level the fleet's
    policy puts in force (``python_policy``), one line per mismatch."""
    level = level or python_policy.level()
    (head_ray, head_py), (my_ray, my_py) = head, mine
    out = []
    if head_ray and my_ray != head_ray:
        out.append(Finding("versions", False, f"Ray {my_ray or 'not installed'} here, "
                           f"{head_ray} on {where}: install ray[default]=={head_ray} in this "
                           "node's environment (Ray needs one version on every node and the driver)"))
    if head_py:
        if my_py.split(".")[:2] != head_py.split(".")[:2]:
            out.append(Finding("versions", False, f"Python {my_py} here, {head_py} on {where}: "
                               f"make this node's venv with Python {head_py} (e.g. uv venv "
                               f"--python {head_py}); Ray needs one Python on every node"))
        elif my_py != head_py and level == "patch":
            out.append(Finding("versions", False, f"Python {my_py} here, {head_py} on {where}: "
                               f"{MATCH_ENV}=patch refuses another patch release: unset it "
                               f"(the tuner's nodes and driver then use minor), or install "
                               f"Python {head_py} here"))
    if not out and head_ray and head_py:
        patch = "" if my_py == head_py else f" (head {head_py}: {MATCH_ENV}={level})"
        out.append(Finding("versions", True, f"Ray {my_ray}, Python {my_py} as on {where}{patch}"))
    return out


def python_finding(facts: NodeFacts | None = None) -> Finding:
    line = python_policy.too_old(tegra=bool(facts.tegra_release) if facts else None)
    if line is None:
        return Finding("python", True, f"Python {_platform.python_version()}")
    return Finding("python", False, line)


# ----------------------------------------------------------------------------- imports

def loadgen_finding() -> Finding:
    try:
        import mlperf_loadgen  # noqa: F401
    except Exception as exc:  # ImportError, or a build for another Python
        return Finding("loadgen", False, f"LoadGen does not import ({exc}): pip install "
                       "mlcommons-loadgen==6.0.17 (it builds from source on Linux: needs g++ "
                       "and the Python headers, e.g. apt install g++ python3.11-dev)")
    try:
        version = importlib.metadata.version("mlcommons-loadgen")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return Finding("loadgen", True, f"LoadGen {version}")


def expected_runtimes(platform: str, offered: str | None = None) -> list[str]:
    """The platform YAML's runtimes, narrowed by ``--runtimes``; [] for a platform without
    a YAML (its runtimes are whatever the node has)."""
    try:
        wanted = list(platforms.load_platform_config(platform).get("runtimes") or [])
    except FileNotFoundError:
        wanted = []
    if offered:
        narrowed = {n.strip() for n in offered.split(",")}
        wanted = [n for n in wanted if n in narrowed]
    return wanted


def runtime_findings(facts: NodeFacts, offered: str | None = None) -> list[Finding]:
    out = []
    for name in expected_runtimes(facts.platform, offered):
        why = facts.runtimes.get(name, "not a runtime this checkout knows")
        if why is None:
            version = facts.runtime_versions.get(name, "")
            out.append(Finding("runtime", True, f"{name} {version}".strip(), fatal=False))
        else:
            why = (str(why).strip().splitlines() or [""])[0][:160]
            out.append(Finding("runtime", False, f"{name} (expected on {facts.platform} by "
                               f"conf/platform/{facts.platform}.yaml) is unavailable: {why}; "
                               f"{HOW.get(name, 'install it')}", fatal=False))
    return out


def edgetpu_finding(facts: NodeFacts, offered: str | None = None) -> Finding | None:
    """On a platform that searches the Edge TPU delegate: a device and its library."""
    try:
        conf = platforms.load_platform_config(facts.platform)
    except FileNotFoundError:
        return None
    if "edgetpu" not in (conf.get("device_knobs") or {}) \
            or "litert" not in expected_runtimes(facts.platform, offered):
        return None
    tpus = [a for a in facts.accelerators if a["kind"] == "edgetpu"]
    if any(a.get("emulated") for a in tpus):
        return Finding("edgetpu", True, "Edge TPU emulated (--accelerators)", fatal=False)
    if not [a for a in tpus if a.get("device") != f"{EDGETPU_LIBRARY} only"]:
        return Finding("edgetpu", False, f"no Coral Edge TPU seen on this {facts.platform} "
                       "(no /dev/apex_*, no USB 1a6e:089a or 18d1:9302): plug it in (USB 3 "
                       "port), or start with --platform rpi4", fatal=False)
    try:
        ctypes.CDLL(EDGETPU_LIBRARY)
    except OSError as exc:
        return Finding("edgetpu", False, f"{EDGETPU_LIBRARY} does not load ({exc}): install "
                       "libedgetpu1-std from the Coral apt repository", fatal=False)
    return Finding("edgetpu", True, f"Edge TPU ({tpus[0]['name']})", fatal=False)


# ----------------------------------------------------------------------------- together

def diagnose(facts: NodeFacts, *, address: str | None = None, head_ray: str | None = None,
             head_python: str | None = None, offered: str | None = None,
             env: dict[str, str] | None = None) -> list[Finding]:
    findings = [python_finding(facts)]
    if head_ray or head_python:
        findings += compare_versions((head_ray, head_python), my_versions(),
                                     "the head (as given)")
    elif address:
        try:
            head = head_versions(address, env)
        except RuntimeError as exc:
            findings.append(Finding("versions", False, str(exc)))
        else:
            findings += compare_versions(head, my_versions(), f"the head {address}")
    findings.append(loadgen_finding())
    findings += runtime_findings(facts, offered)
    tpu = edgetpu_finding(facts, offered)
    return findings + ([tpu] if tpu else [])


def extras_spec(platform: str, source: str | None) -> str:
    """The pip extras of ``platform``'s runtimes: ``litert,tvm``, or with ``source``
    the requirement ``source[litert,tvm]`` (``source`` alone when there are none)."""
    extras = sorted({e for r in expected_runtimes(platform) if (e := EXTRAS.get(r))})
    if source is None:
        return ",".join(extras)
    return f"{source}[{','.join(extras)}]" if extras else source


def auth_env_for(args: argparse.Namespace) -> dict[str, str]:
    """The environment the GCS reader runs in: this process's, with the token the options
    name (the same sources as ``start``, without writing a token file)."""
    from tuner.node.auth import AUTH_MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV, head_record

    env = dict(os.environ)
    if args.no_auth:
        env[AUTH_MODE_ENV] = "disabled"
        return env
    env[AUTH_MODE_ENV] = "token"
    if args.token_file:
        env.pop(TOKEN_ENV, None)
        env[TOKEN_PATH_ENV] = os.path.abspath(os.path.expanduser(args.token_file))
    elif not (env.get(TOKEN_ENV) or env.get(TOKEN_PATH_ENV)) and args.address:
        found = head_record(args.address)  # a head this agent started on this machine
        if found and found["auth"]["mode"] == "token":
            env[TOKEN_PATH_ENV] = found["auth"]["token_path"]
    return env


def main(args: argparse.Namespace) -> int:
    if args.cmd == "extras":
        facts = platforms.detect(args.platform, runtimes=False)
        print(extras_spec(facts.platform, args.spec))
        return 0
    facts = platforms.detect(args.platform)
    findings = diagnose(facts, address=args.address, head_ray=args.head_ray,
                        head_python=args.head_python, offered=args.runtimes,
                        env=auth_env_for(args) if args.address else None)
    bad = [f for f in findings if not f.ok]
    if args.json:
        print(json.dumps({"platform": facts.platform, "ok": not bad,
                          "findings": [asdict(f) for f in findings]}, indent=1))
    else:
        for f in bad:
            print(f"doctor: {f.line}", file=sys.stderr)
        if not bad:
            print(f"doctor: ok: {facts.platform}; " + "; ".join(f.line for f in findings))
    return 1 if bad else 0
