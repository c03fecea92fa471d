"""A real second architecture in the fleet, on this machine: a Debian bookworm arm64 node
(Raspberry Pi OS's base, run by qemu-user) with a Raspberry Pi 4 identity joins an x86 head
on 127.0.0.1, and one study runs over both.

    python scripts/arm64_fleet.py --trials N --out RUN_DIR [--root DIR]
                                  [--arm-runtimes onnxruntime,litert] [--keep-going]

Steps, each timed and printed:
1. the arm64 root (``scripts/arm64_root.py``): built once, cached outside the repository
   (``/var/cache/tuner/arm64-bookworm``, or ``--root``/``$TUNER_ARM64_ROOT``); a build a
   killed run left half-made is resumed or rebuilt, never used;
2. the project from this working tree, copied into the root and installed there
   (editable, without dependencies: the root has them);
3. the x86 head, started by the node agent on this machine (``python -m tuner.node start
   --head``), pinned to CPU 0;
4. the arm64 node: the node agent inside the root (``python -m tuner.node start --address``)
   with a Pi 4's /proc/cpuinfo and board model bind-mounted, one trial at a time, not
   pinned (its five emulated Ray daemons starting on one core missed Ray's 30 s raylet
   registration wait three times in three on this loaded 2-core machine). It detects
   ``aarch64`` and that its CPU is emulated, so it names itself ``rpi4-emulated``; its
   Python (Debian's 3.11.2) joins the head's 3.11.x under the fleet's Python policy;
5. the study: ``python -m tuner`` with ``cluster=ray`` against the head, one study per
   platform of N trials each, records into RUN_DIR;
6. stop: the agent stops both nodes by the process ids it recorded (never ``ray stop``: the
   root shares this machine's /proc, so it would end every Ray process here), then this
   script checks that no process of theirs is left and nothing listens on their ports.

Without root, qemu-user-static or a binfmt_misc handler for aarch64 it says so in one line
and exits 2. Emulated latencies are some hundreds of times a Pi's: the records say
``emulated`` and the reports and the packer treat them so (``experiments.emulated``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arm64_root  # noqa: E402  (the script's own helper beside it)

REPO = arm64_root.REPO
STATE_IN_ROOT = "/opt/tuner-state"   # the arm64 agent's records, inside the root
TOKEN_IN_ROOT = f"{STATE_IN_ROOT}/fleet.token"
ARM_TEMP = "/tmp/tn-arm"             # Ray's temp dir inside the root (a tmpfs of its own)
# the node agent's line for Ray's fixed 30 s raylet wait (tuner.node.ray_start): an emulated
# node on a busy machine misses it now and then; what it says to do is try again
RAYLET_TIMEOUT_LINE = "did not register with the GCS"
JOIN_ATTEMPTS = 3
COMMON = ["--num-cpus", "1", "--object-store-memory", str(80 * 1024**2), "--worker-ports", "16"]
# a small study: the emulated node runs some hundreds of times slower than a Pi
SMALL = ["space.model.width.choices=[0.25,0.5]", "space.model.resolution.choices=[32,48]",
         "fidelity.min_duration_ms=300", "fidelity.min_query_count=32",
         # the cap must let an emulated node (~100x slower) reach its minimum query count
         "fidelity.max_duration_ms=30000", "fidelity.accuracy_sample_count=100",
         "backends.onnxruntime.knobs.execution_mode.choices=[sequential]",
         "backends.onnxruntime.knobs.allow_spinning.choices=[false]",
         "study.accuracy_floor=0.5", "progress=false", "study.sampler=random"]
COPY_IGNORE = shutil.ignore_patterns(".git", "runs", "__pycache__", "*.egg-info",
                                     ".pytest_cache", "outputs", "multirun")


def say(msg: str) -> None:
    print(f"[arm64_fleet {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def install_tree(root: Path, log) -> float:
    """This working tree at /opt/tuner inside the root, installed editable (no deps)."""
    t0 = time.monotonic()
    dest = root / arm64_root.TREE.lstrip("/")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(REPO, dest, ignore=COPY_IGNORE, symlinks=True)
    arm64_root.host_files_in(root)
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]
    marker = root / "opt/.tuner-editable"
    if not marker.exists() or marker.read_text().strip() != key:
        marker.unlink(missing_ok=True)
        arm64_root.run_inside(root, [f"{arm64_root.VENV}/bin/pip", "install", "--no-input",
                                     "--no-deps", "--no-build-isolation", "-e",
                                     arm64_root.TREE], env=arm64_root.pip_env(root),
                            stdout=log, stderr=log)
        marker.write_text(key + "\n")
    return time.monotonic() - t0


def agent(args: list[str], env: dict[str, str], timeout: float = 400) -> dict:
    """``python -m tuner.node start ...`` on this machine; its record, or SystemExit."""
    out = subprocess.run([sys.executable, "-m", "tuner.node", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"node agent failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(out.stdout)


def start_arm_node(root: Path, address: str, token: Path, runtimes: str, log) -> dict:
    """The node agent inside the root, as a Pi 4; returns its record."""
    state = root / STATE_IN_ROOT.lstrip("/")
    state.mkdir(parents=True, exist_ok=True)
    for old in state.glob("*.json"):  # records of an earlier run (its processes are gone)
        old.unlink()
    shutil.copy(token, root / TOKEN_IN_ROOT.lstrip("/"))
    os.chmod(root / TOKEN_IN_ROOT.lstrip("/"), 0o600)
    argv = [f"{arm64_root.VENV}/bin/python", "-m", "tuner.node", "start", "--address", address,
            "--id", "arm64-pi4", "--runtimes", runtimes, "--temp-dir", ARM_TEMP,
            "--token-file", TOKEN_IN_ROOT, "--timeout", "600", *COMMON]
    cmd = arm64_root.chroot_command(root, argv, tree=None,
                                    env={"TUNER_STATE_DIR": STATE_IN_ROOT})
    for attempt in range(1, JOIN_ATTEMPTS + 1):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        log.write(out.stderr)
        log.flush()
        if out.returncode == 0:
            return json.loads(out.stdout)
        why = (out.stderr.strip().splitlines() or ["?"])[-1]
        if RAYLET_TIMEOUT_LINE not in why or attempt == JOIN_ATTEMPTS:
            raise SystemExit(f"the arm64 node did not join: {why}")
        say(f"arm64 node, attempt {attempt}: {why.split(':')[0]}: the raylet missed Ray's "
            "30 s; trying again")
    raise AssertionError("unreachable")


def stop_nodes(env: dict[str, str], state_dirs: list[Path]) -> list[str]:
    """Stop every node recorded in ``state_dirs`` by its recorded pids; problems, if any."""
    problems = []
    for state in state_dirs:
        if not state.is_dir() or not list(state.glob("*.json")):
            continue
        out = subprocess.run([sys.executable, "-m", "tuner.node", "stop", "--grace", "10",
                              "--json"], cwd=REPO, env={**env, "TUNER_STATE_DIR": str(state)},
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            problems.append(f"stop {state}: {out.stdout.strip()[-300:]} {out.stderr.strip()[-300:]}")
    return problems


def leftovers(records: list[dict]) -> dict[int, list[int]]:
    """Ports of the nodes still listened on, and by whom (after stop: nothing)."""
    from tuner.node.procs import listeners

    ports = {int(p) for r in records for p in (r.get("ports") or {}).values() if p}
    return {port: sorted(pids) for port, pids in listeners(ports).items() if pids}


def summarise(run_dir: Path) -> dict[str, dict]:
    from experiments.records import read

    per: dict[str, dict] = {}
    for r in read(run_dir).to_pylist():
        system = json.loads(r["system"] or "{}")
        p = per.setdefault(r["platform"], {"trials": 0, "complete": 0, "backends": set(),
                                           "arch": set(), "emulated": set()})
        p["trials"] += 1
        p["complete"] += r["state"] == "complete"
        p["backends"].add(r["backend"])
        p["arch"].add(system.get("arch"))
        p["emulated"].add(system.get("emulated"))
    return {k: {**v, **{s: sorted(map(str, v[s])) for s in ("backends", "arch", "emulated")}}
            for k, v in per.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10, help="trials per platform's study")
    ap.add_argument("--out", type=Path, required=True, help="the run directory (records)")
    ap.add_argument("--root", type=Path, default=arm64_root.DEFAULT_ROOT)
    ap.add_argument("--arm-runtimes", default="onnxruntime,litert",
                    help="runtimes the arm64 node offers (tvm compiles under emulation: slow)")
    ap.add_argument("--x86-runtimes", default="onnxruntime,litert")
    ap.add_argument("--trial-timeout", type=int, default=900)
    args = ap.parse_args(argv)

    problem = arm64_root.missing_prerequisite()
    if problem:
        print(f"arm64_fleet: {problem}", file=sys.stderr)
        return 2
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "arm64_fleet.log", "a")
    times: dict[str, float] = {}
    t_all = time.monotonic()
    say(f"arm64 root at {args.root} (build log: {args.out / 'arm64_fleet.log'})")
    try:
        times["root_build_s"] = arm64_root.ensure_root(args.root, log=log)
    except arm64_root.NotReady as e:
        print(f"arm64_fleet: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"arm64_fleet: building the root failed ({' '.join(map(str, e.cmd))[:160]}); "
              f"see {args.out / 'arm64_fleet.log'}; run again to resume", file=sys.stderr)
        return 1
    say("root ready" + (f": built in {times['root_build_s']:.0f} s" if times["root_build_s"]
                        else " (cached)"))
    times["install_s"] = install_tree(args.root, log)
    say(f"working tree installed in the root in {times['install_s']:.0f} s")

    work = Path(tempfile.mkdtemp(prefix="ta", dir="/tmp"))  # short: Ray's unix sockets
    host_state = work / "state"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    env.update(TUNER_STATE_DIR=str(host_state),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    arm_state = args.root / STATE_IN_ROOT.lstrip("/")
    records: list[dict] = []
    rc = 1
    try:
        t0 = time.monotonic()
        head = agent(["start", "--head", "--port", "0", "--id", "x86-head", "--cpus", "0",
                      "--runtimes", args.x86_runtimes, "--temp-dir", str(work / "h"),
                      *COMMON], env)
        records.append(head)
        address = "127.0.0.1:" + head["address"].rpartition(":")[2]
        times["head_start_s"] = time.monotonic() - t0
        say(f"x86 head {head['platform']} at {address} in {times['head_start_s']:.0f} s")
        t0 = time.monotonic()
        arm = start_arm_node(args.root, address, Path(head["auth"]["token_path"]),
                             args.arm_runtimes, log)
        records.append(arm)
        times["arm_join_s"] = time.monotonic() - t0
        facts = arm["facts"]
        say(f"arm64 node {arm['platform']} joined in {times['arm_join_s']:.0f} s: "
            f"{facts['arch']}, {facts['cpu_model']}, board {facts['board']!r}, "
            f"emulated={facts['emulated']} ({(facts['emulation'] or {}).get('signal')}), "
            f"Python {facts['software'].get('Python')} (head "
            f"{head['facts']['software'].get('Python')}, match level "
            f"{arm.get('python_match_level')})")
        t0 = time.monotonic()
        backends = sorted(set(args.arm_runtimes.split(",")) & set(args.x86_runtimes.split(",")))
        study = subprocess.run(
            [sys.executable, "-m", "tuner", "+space=mobilenet", "cluster=ray",
             f"cluster.address={address}", f"run_dir={args.out}", "study.name=arm64-fleet",
             f"study.n_trials={args.trials}", f"space.backends=[{','.join(backends)}]",
             f"study.trial_timeout_s={args.trial_timeout}", *SMALL],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        times["study_s"] = time.monotonic() - t0
        say(f"study ended (rc={study.returncode}) in {times['study_s']:.0f} s")
        per = summarise(args.out)
        for platform, p in sorted(per.items()):
            say(f"  {platform}: {p['complete']}/{p['trials']} trials complete, backends {p['backends']}, "
                f"arch {p['arch']}, emulated {p['emulated']}")
        both = len([p for p in per.values() if p["complete"]]) >= 2
        rc = 0 if study.returncode == 0 and both else 1
    except SystemExit as e:
        print(f"arm64_fleet: {e}", file=sys.stderr)
    finally:
        t0 = time.monotonic()
        problems = stop_nodes(env, [arm_state, host_state])
        held = leftovers(records)
        times["stop_s"] = time.monotonic() - t0
        times["total_s"] = time.monotonic() - t_all
        if problems or held:
            say(f"STOP PROBLEMS: {problems} still listening: {held}")
            rc = 1
        else:
            say(f"stopped: no process of the fleet left, nothing on its ports "
                f"({times['stop_s']:.0f} s)")
        shutil.rmtree(work, ignore_errors=True)
        (args.out / "arm64_fleet_times.json").write_text(json.dumps(times, indent=1))
        say("times: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    return rc


if __name__ == "__main__":
    sys.exit(main())
