"""Start, stop and inspect the nodes this agent runs on this machine."""
from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tuner.machine import platforms
from tuner.node import labels as names
from tuner.node import python_policy
from tuner.node.auth import apply_env, auth_env, resolve_auth
from tuner.node.doctor import diagnose
from tuner.node.offer import accelerator_kinds, apply_offer, offered_runtimes
from tuner.node.ports import DEFAULT_GCS_PORT, pick_ports, port_free
from tuner.node.procs import all_procs, cmd_arg, node_targets, read_proc, role, session_procs
from tuner.node.ray_start import (NODE_PORTS, build_start_command, head_ports, launch,
                                  startup_failure)
from tuner.node.store import forget_record, load_records, record_path, save_record, state_dir
from tuner.node.terminate import end_node

# Ray's unix sockets live at <temp>/session_<39 chars>/sockets/plasma_store: 107 max
MAX_TEMP_DIR = 45


def start(args: argparse.Namespace) -> dict[str, Any]:
    facts = platforms.detect(args.platform)
    cpus = apply_offer(facts, cpus=args.cpus, runtimes=args.runtimes,
                       accelerators=args.accelerators)
    directory = state_dir()
    agent_id = args.id or f"{facts.platform}-{secrets.token_hex(3)}"
    if record_path(agent_id, directory).exists():
        raise SystemExit(f"agent id {agent_id!r} already has a record in {directory}")
    temp_dir = str(Path(args.temp_dir or f"/tmp/tuner/{agent_id}").resolve())
    if len(temp_dir) > MAX_TEMP_DIR:
        raise SystemExit(f"--temp-dir {temp_dir!r} is too long for Ray's unix sockets "
                         f"(keep it under {MAX_TEMP_DIR} characters, e.g. /tmp/tn-<id>)")

    wanted = list(NODE_PORTS)
    # ports other agents on this machine chose: some of their processes bind late (or
    # rebind), so "free right now" is not enough (two agents once shared a port)
    taken: set[int] = set()
    for other in load_records():
        taken |= {int(p) for p in (other.get("ports") or {}).values() if p}
        lo_hi = other.get("worker_ports") or []
        if len(lo_hi) == 2:
            taken |= set(range(int(lo_hi[0]), int(lo_hi[1]) + 1))
    address = None
    gcs = None
    if args.head:
        wanted += head_ports()
        gcs = args.port if args.port is not None else (
            DEFAULT_GCS_PORT if port_free(DEFAULT_GCS_PORT) else None)
        if gcs is None:
            wanted.append("gcs")  # 6379 is taken (another head): any free port
        else:
            taken.add(gcs)
    else:
        address = args.address
    ports, worker_range = pick_ports(wanted, args.worker_ports, taken)
    if gcs is not None:
        ports["gcs"] = gcs
    auth = resolve_auth(head=args.head, no_auth=args.no_auth, token=args.token,
                        token_file=args.token_file, agent_id=agent_id, directory=directory,
                        address=address)
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    match_level = python_policy.apply(env)  # Python 3.11.2 joins 3.11.7: see python_policy
    apply_env(auth_env(auth), env)
    if not getattr(args, "no_doctor", False):
        try:
            preflight(facts, address, args.runtimes, env, strict=getattr(args, "strict", False))
        except ValueError:
            if auth["owns_token"]:
                Path(auth["token_path"]).unlink(missing_ok=True)
            raise
    Path(temp_dir).mkdir(parents=True, exist_ok=True)
    node_labels = names.node_labels(platform=facts.platform, arch=facts.arch, agent_id=agent_id,
                                    cores=len(cpus), accelerators=accelerator_kinds(facts))
    resources = names.node_resources(facts.platform, offered_runtimes(facts))
    # Ray counts every CPU of the machine, not the affinity set: say how many it may use
    num_cpus = args.num_cpus if args.num_cpus is not None else (len(cpus) if args.cpus else None)
    cmd = build_start_command(
        head=args.head, address=address, labels=node_labels, resources=resources, ports=ports,
        worker_range=worker_range, temp_dir=temp_dir, num_cpus=num_cpus,
        num_gpus=args.num_gpus, node_ip=args.node_ip_address,
        object_store_memory=args.object_store_memory, dashboard=args.dashboard,
        autoscaling_config=args.autoscaling_config)

    log_path = record_path(agent_id, directory, ".log")
    record: dict[str, Any] = {
        "id": agent_id, "role": "head" if args.head else "worker", "state": "starting",
        "address": address, "platform": facts.platform, "node_id": None, "node_ip": None,
        "temp_dir": temp_dir, "session_dir": None, "ports": ports,
        "worker_ports": list(worker_range), "labels": node_labels, "resources": resources,
        "num_cpus": num_cpus, "cpus": cpus if args.cpus else None,
        "runtimes": offered_runtimes(facts), "accelerators": accelerator_kinds(facts),
        "auth": auth, "sid": None, "launcher_start": None,
        "started_at": time.time(), "processes": [], "command": cmd, "log": str(log_path),
        "facts": facts.to_dict(), "python_match_level": match_level,
        "stopped_at": None, "signalled": [],
    }
    launcher = launch(cmd, env, log_path, cpus if args.cpus else None)
    launcher_proc = read_proc(launcher.pid)
    record["sid"] = launcher.pid
    record["launcher_start"] = launcher_start = launcher_proc.start if launcher_proc else 0
    save_record(record, directory)  # already now: if this agent dies, `stop` still finds it
    try:
        rc = launcher.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        rc = None
    if rc != 0:
        end_node(record, grace=6)
        if auth["owns_token"]:
            Path(auth["token_path"]).unlink(missing_ok=True)
        record_path(agent_id, directory).unlink(missing_ok=True)
        tail = log_path.read_text()[-3000:]
        known = startup_failure(tail)
        if known:
            raise SystemExit(f"{known} (log {log_path})")
        raise SystemExit(f"ray start failed ({'timeout' if rc is None else f'rc={rc}'}); "
                         f"log {log_path}:\n{tail}")

    procs = session_procs(launcher.pid, launcher_start)
    raylet = next((p for p in procs if role(p.cmdline) == "raylet"), None)
    if args.head:
        record["address"] = (Path(temp_dir) / "ray_current_cluster").read_text().strip()
        ports["gcs"] = int(record["address"].rpartition(":")[2])  # the real one (--port 0)
    elif raylet and cmd_arg(raylet.cmdline, "--gcs-address"):
        record["address"] = cmd_arg(raylet.cmdline, "--gcs-address")  # as Ray resolved it
    record.update({
        "state": "running",
        "node_id": cmd_arg(raylet.cmdline, "--node_id") if raylet else None,
        "node_ip": cmd_arg(raylet.cmdline, "--node_ip_address") if raylet else None,
        "session_dir": os.path.realpath(Path(temp_dir) / "session_latest"),
        "processes": [{"pid": p.pid, "start": p.start, "role": role(p.cmdline),
                       "cmd": p.cmdline[:200]} for p in sorted(procs, key=lambda p: p.pid)],
    })
    save_record(record, directory)
    return record


def preflight(facts: platforms.NodeFacts, address: str | None, runtimes: str | None,
              env: dict[str, str], strict: bool = False) -> None:
    """The doctor's checks before ``ray start``: a version or LoadGen problem refuses to
    join (ValueError, one line: Ray's own refusal is a traceback in the node's log); a
    runtime the platform expects but the node lacks is a warning, a refusal if ``strict``."""
    bad = [f for f in diagnose(facts, address=address, offered=runtimes, env=env) if not f.ok]
    refused = [f for f in bad if f.fatal or strict]
    for finding in bad:
        if finding is not (refused[0] if refused else None):
            print(f"{'error' if finding in refused else 'warning'}: {finding.line}",
                  file=sys.stderr)
    if refused:
        raise ValueError(refused[0].line)


def stop(ids: list[str] | None = None, grace: float = 30.0, forget: bool = False,
         directory: Path | None = None) -> list[dict[str, Any]]:
    """Stop the nodes this agent started (workers before heads): every process of a node's
    session, what they spawned, and what listens on its ports; then check that none is
    left. Returns per-node reports."""
    directory = directory or state_dir()
    every = load_records(directory)
    records = [r for r in every if not ids or r["id"] in ids]
    missing = set(ids or ()) - {r["id"] for r in records}
    if missing:
        raise SystemExit(f"no record for {sorted(missing)} in {directory}")
    reports = []
    for record in sorted(records, key=lambda r: r["role"] == "head"):
        others = [r["sid"] for r in every if r["id"] != record["id"] and r.get("sid")]
        signalled, still = end_node(record, grace, foreign_sids=others)
        record["stopped_at"] = record.get("stopped_at") or time.time()
        record["state"] = "stopped"
        record["signalled"] = record.get("signalled", []) + signalled
        if record["role"] == "head" and record["auth"].get("owns_token"):
            Path(record["auth"]["token_path"]).unlink(missing_ok=True)
        if forget:
            forget_record(record["id"], directory)
        else:
            save_record(record, directory)
        reports.append({"id": record["id"], "role": record["role"], "signalled": signalled,
                        "still_running": still})
    return reports


def status(directory: Path | None = None) -> dict[str, Any]:
    procs = all_procs()
    nodes = []
    every = load_records(directory)
    for r in every:
        others = [o["sid"] for o in every if o["id"] != r["id"] and o.get("sid")]
        alive = node_targets(r, procs, foreign_sids=others)
        nodes.append({"id": r["id"], "role": r["role"], "platform": r["platform"],
                      "address": r["address"], "node_id": r.get("node_id"),
                      "temp_dir": r["temp_dir"], "alive": bool(alive),
                      "running_pids": sorted(alive), "stopped_at": r.get("stopped_at"),
                      "auth": r["auth"]["mode"], "cpus": r.get("cpus"),
                      "runtimes": r.get("runtimes"), "accelerators": r.get("accelerators")})
    return {"facts": platforms.detect().to_dict(), "nodes": nodes}
