"""``python -m tuner.node``: the node agent's command line (see the package docstring)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tuner.node.auth import driver_env
from tuner.node.lifecycle import start, status, stop
from tuner.node.store import state_dir


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tuner.node",
                                 description="Node agent: detect this machine's platform and "
                                             "run `ray start` with matching labels.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="detect this node and run `ray start` for it")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--head", action="store_true", help="start a head node")
    where.add_argument("--address", help="HOST:PORT of the head's GCS to join")
    s.add_argument("--port", type=int, help="head GCS port (default 6379 if free, else any)")
    s.add_argument("--platform", help="override the detected platform (other facts are kept)")
    s.add_argument("--cpus", help="run the node's Ray processes (and trials) on these CPUs "
                                  "only, e.g. 0 or 0,1 or 0-3; the node reports that many cores")
    s.add_argument("--runtimes", help="offer only these installed runtimes, e.g. "
                                      "onnxruntime,litert (default: every installed one)")
    s.add_argument("--accelerators", help="for emulation: report exactly these accelerator "
                                          "kinds (edgetpu, gpu; none), faking undetected ones")
    s.add_argument("--num-cpus", type=int, help="Ray CPU slots (default: all, or --cpus' count)")
    s.add_argument("--num-gpus", type=int)
    s.add_argument("--temp-dir", help="Ray temp dir of this node (default /tmp/tuner/<id>)")
    s.add_argument("--autoscaling-config",
                   help="(head) Ray autoscaler config; `ray up` passes ~/ray_bootstrap_config.yaml")
    s.add_argument("--node-ip-address", help="default for a head: 127.0.0.1")
    s.add_argument("--object-store-memory", type=int, help="bytes")
    s.add_argument("--worker-ports", type=int, default=64, help="size of the worker port range")
    s.add_argument("--dashboard", action="store_true", help="include the Ray dashboard")
    s.add_argument("--id", help="agent id (default <platform>-<random>)")
    s.add_argument("--token", help="cluster auth token (prefer --token-file or the env)")
    s.add_argument("--token-file", help="file holding the cluster auth token")
    s.add_argument("--no-auth", action="store_true", help="RAY_AUTH_MODE=disabled")
    s.add_argument("--timeout", type=float, default=180.0, help="seconds for `ray start`")
    s.add_argument("--no-doctor", action="store_true",
                   help="skip the checks before `ray start` (see `doctor`)")
    s.add_argument("--strict", action="store_true",
                   help="refuse to join unless every doctor check passes (runtimes included)")
    d = sub.add_parser("doctor", help="check, before joining, that this node matches the head "
                                      "(Ray, Python) and that LoadGen and the platform's runtimes "
                                      "import; one line per problem, exit 1")
    d.add_argument("--address", help="HOST:PORT of the head's GCS: its versions are read there")
    d.add_argument("--head-ray", help="the head's Ray version, instead of reading it")
    d.add_argument("--head-python", help="the head's Python version (3.11.7), instead of reading it")
    d.add_argument("--platform", help="as for start: the platform whose runtimes are expected")
    d.add_argument("--runtimes", help="as for start: expect only these of the platform's runtimes")
    d.add_argument("--token-file", help="file holding the cluster auth token")
    d.add_argument("--no-auth", action="store_true", help="the head runs without auth")
    d.add_argument("--json", action="store_true")
    x = sub.add_parser("extras", help="the pip extras this node's platform needs (litert,tvm)")
    x.add_argument("--platform", help="this platform instead of the detected one")
    x.add_argument("--spec", metavar="PATH",
                   help="print a requirement for pip instead: PATH[litert,tvm] (PATH alone if none)")
    st = sub.add_parser("status", help="facts and the nodes this agent started here")
    st.add_argument("--json", action="store_true")
    e = sub.add_parser("env", help="shell exports for a driver (RAY_ADDRESS and auth)")
    e.add_argument("--address")
    sp = sub.add_parser("stop", help="stop every process of the nodes this agent started")
    sp.add_argument("--id", action="append", help="only this agent id (repeatable)")
    sp.add_argument("--grace", type=float, default=30.0,
                    help="seconds for SIGTERM before SIGKILL, split over raylet / other "
                         "daemons / gcs_server")
    sp.add_argument("--forget", action="store_true", help="delete the records afterwards")
    sp.add_argument("--json", action="store_true")
    return ap




def _print_status(info: dict[str, Any]) -> None:
    f = info["facts"]
    print(f"platform {f['platform']} (detected {f['detected_platform']}), {f['arch']}, "
          f"{f['cpu_model']}, {f['cores']} cpus, {f['memory_gib']} GiB, {f['os']}")
    print("accelerators: " + (", ".join(a["name"] for a in f["accelerators"]) or "none"))
    print("runtimes: " + ", ".join(f"{k} {f['runtime_versions'].get(k, '')}".strip()
                                   if v is None else f"{k} (unavailable: {v})"
                                   for k, v in f["runtimes"].items()))
    if f["governor"] or f["throttled"]:
        print(f"governor {f['governor']}, throttled {f['throttled']}")
    for n in info["nodes"]:
        state = "running" if n["alive"] else "stopped"
        offer = (f" cpus={','.join(map(str, n['cpus']))}" if n.get("cpus") else "") + (
            f" runtimes={','.join(n['runtimes'])}" if n.get("runtimes") is not None else "")
        print(f"{n['id']:24} {n['role']:6} {n['platform']:14} {str(n['address']):22} "
              f"{state}{offer} pids={n['running_pids']}")
    if not info["nodes"]:
        print(f"no nodes started from {state_dir()}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "start":
        try:
            record = start(args)
        except ValueError as exc:  # bad --platform, --cpus, --runtimes, --accelerators;
            # a node the doctor refuses (another Ray or Python than the head's, no LoadGen)
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(record, indent=1))
        print(f"started {record['role']} {record['id']} (platform={record['platform']}) at "
              f"{record['address']}; driver env: python -m tuner.node env --address "
              f"{record['address']}", file=sys.stderr)
    elif args.cmd in ("doctor", "extras"):
        from tuner.node.doctor import main as doctor_main

        try:
            return doctor_main(args)
        except ValueError as exc:  # a bad --platform
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.cmd == "status":
        info = status()
        if args.json:
            print(json.dumps(info, indent=1))
        else:
            _print_status(info)
    elif args.cmd == "env":
        try:
            env = driver_env(args.address)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for k, v in env.items():
            print(f"export {k}={v}")
    elif args.cmd == "stop":
        reports = stop(args.id, args.grace, args.forget)
        if args.json:
            print(json.dumps(reports, indent=1))
        else:
            for r in reports:
                print(f"{r['id']}: signalled {[s['pid'] for s in r['signalled']]}"
                      + (f", STILL RUNNING {r['still_running']}" if r["still_running"] else ""))
        return 1 if any(r["still_running"] for r in reports) else 0
    return 0
