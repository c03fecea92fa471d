"""Node agent: detect this machine's platform and run ``ray start`` with matching labels.

    python -m tuner.node start --head [--port P] [--platform NAME] [--num-cpus N] [--temp-dir D]
    python -m tuner.node start --address HOST:PORT [--platform NAME] ...
    python -m tuner.node status [--json]
    python -m tuner.node env [--address HOST:PORT]      # shell exports for a driver
    python -m tuner.node stop [--id ID ...] [--grace S] [--json]

Each node gets labels ``platform``, ``arch``, ``tuner.node`` (this agent's id) and the
resources ``dut_<platform>: 1`` (one measurement at a time on the device under test),
``platform_<platform>: 1`` and ``runtime_<name>: 1`` per runtime available here. All of
Ray's ports are chosen free per agent, so several agents (``--platform`` overrides) can
share one machine. What was started is recorded in ``$TUNER_STATE_DIR`` (default
``~/.tuner/nodes``); ``stop`` signals exactly those processes (and the workers their raylet
spawned), never ``ray stop``, which would end every Ray process of the user.

Token authentication (read from ray 2.60's ``ray/_private/authentication`` and
``scripts.py``): the mode comes only from ``RAY_AUTH_MODE`` (``token``/``disabled``); the
token from ``RAY_AUTH_TOKEN``, else the file ``RAY_AUTH_TOKEN_PATH``, else
``~/.ray/auth_token``. ``ray.init()`` starting a new local cluster turns token mode on and
writes ``~/.ray/auth_token`` if missing; ``ray start --head`` turns it on only if a token
already exists (else it warns and runs without auth) and never creates one; ``ray start
--address`` and ``ray.init(address=...)`` never turn it on by themselves, so they need
``RAY_AUTH_MODE=token`` explicitly or they are refused ("InvalidAuthToken"). The agent
therefore sets the mode explicitly for every ``ray start``: a head generates a fresh token
into ``$TUNER_STATE_DIR/<id>.token`` (0600; or uses ``--token``/``--token-file``/
``RAY_AUTH_TOKEN[_PATH]``) and never touches ``~/.ray/auth_token`` (other Ray users of the
machine would silently switch to it). A worker on the same machine finds the head's token
through the head's state record; elsewhere pass ``--token-file``/``--token`` or the env.
Drivers call ``prepare_driver(address)`` (or ``eval $(python -m tuner.node env)``) before
``ray.init``. ``--no-auth`` sets ``RAY_AUTH_MODE=disabled`` for the node; the driver then
needs the same.

Note: ray 2.60 ``ray start`` replaces a loopback ``--node-ip-address`` (127.0.0.1) by the
machine's routable address and the GCS listens on all interfaces, so a cluster is reachable
from the network whatever the agent passes; the token is what guards it.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner import platforms

STATE_ENV = "TUNER_STATE_DIR"
AUTH_MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
# Chosen ports stay below Linux's ephemeral range (32768+) and above Ray's default worker
# ports (10002-19999) so they collide neither with outgoing connections nor default nodes.
PORT_LO, PORT_HI = 20000, 32767
DEFAULT_GCS_PORT = 6379


# ----------------------------------------------------------------------------- state


def state_dir(create: bool = True) -> Path:
    path = Path(os.environ.get(STATE_ENV) or Path.home() / ".tuner" / "nodes")
    if create:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # holds tokens: owner only
    return path


def load_records(directory: Path | None = None) -> list[dict[str, Any]]:
    records = []
    for f in sorted((directory or state_dir(create=False)).glob("*.json")):
        try:
            records.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return records


def _save(record: dict[str, Any], directory: Path | None = None) -> Path:
    path = (directory or state_dir()) / f"{record['id']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)  # atomic: status never reads half a record
    return path


# ----------------------------------------------------------------------------- /proc


@dataclass
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    start: int      # clock ticks after boot: (pid, start) names a process despite pid reuse
    cmdline: str


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return None
    comm_end = stat.rfind(")")  # comm may hold spaces and parentheses
    fields = stat[comm_end + 2:].split()
    if not cmd:
        cmd = stat[stat.find("(") + 1:comm_end]
    return Proc(pid=pid, state=fields[0], ppid=int(fields[1]), pgid=int(fields[2]),
                sid=int(fields[3]), start=int(fields[19]), cmdline=cmd)


def all_procs() -> dict[int, Proc]:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            p = read_proc(int(entry))
            if p:
                procs[p.pid] = p
    return procs


def _running(p: Proc | None) -> bool:
    # zombies: exited, waiting for a parent (here often pid 1) to reap them
    return p is not None and p.state not in ("Z", "X")


def is_alive(pid: int, start: int) -> bool:
    p = read_proc(pid)
    return _running(p) and p.start == start  # type: ignore[union-attr]


def _role(cmd: str) -> str:
    for needle, role in (("gcs_server", "gcs_server"), ("raylet/raylet", "raylet"),
                         ("log_monitor.py", "log_monitor"), ("monitor.py", "monitor"),
                         ("dashboard/agent.py", "dashboard_agent"),
                         ("ray::DashboardAgent", "dashboard_agent"),
                         ("runtime_env/agent", "runtime_env_agent"),
                         ("ray::RuntimeEnvAgent", "runtime_env_agent"),
                         ("dashboard/dashboard.py", "dashboard"),
                         ("client/server", "client_server"), ("ray::", "worker")):
        if needle in cmd:
            return role
    return "other"


def _arg(cmd: str, name: str) -> str | None:
    for part in cmd.split():
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    return None


# ----------------------------------------------------------------------------- ports


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))  # the GCS and raylet listen on all interfaces
        except OSError:
            return False
    return True


def pick_ports(names: list[str], worker_ports: int, taken: set[int] | None = None,
               rng: random.Random | None = None) -> tuple[dict[str, int], tuple[int, int]]:
    """Free single ports for ``names`` plus a free contiguous worker-port range."""
    rng = rng or random.SystemRandom()
    taken = set(taken or ())
    for _ in range(200):
        lo = rng.randrange(PORT_LO, PORT_HI - worker_ports)
        rng_ports = range(lo, lo + worker_ports)
        if not taken.intersection(rng_ports) and all(port_free(p) for p in rng_ports):
            taken.update(rng_ports)
            break
    else:
        raise RuntimeError(f"no {worker_ports} free consecutive ports in {PORT_LO}-{PORT_HI}")
    ports: dict[str, int] = {}
    for name in names:
        for _ in range(500):
            p = rng.randrange(PORT_LO, PORT_HI)
            if p not in taken and port_free(p):
                ports[name] = p
                taken.add(p)
                break
        else:
            raise RuntimeError(f"no free port for {name}")
    return ports, (lo, lo + worker_ports - 1)


# ----------------------------------------------------------------------------- auth


def _write_token(path: Path, token: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token.strip())
    return path


def _same_endpoint(recorded: str, given: str) -> bool:
    """Does ``given`` name the head recorded at ``recorded`` (a head this agent started, so
    its host is this machine)?"""
    rh, _, rp = recorded.rpartition(":")
    gh, _, gp = given.rpartition(":")
    local = {rh, "localhost", "", socket.gethostname()}
    return rp == gp and (gh in local or gh.startswith("127."))


def head_record(address: str | None = None, directory: Path | None = None) -> dict[str, Any] | None:
    """The live head this agent started for ``address`` (or the only live head)."""
    heads = [r for r in load_records(directory)
             if r.get("role") == "head" and not r.get("stopped_at")
             and (address is None or _same_endpoint(r["address"], address))]
    heads = [r for r in heads if any(is_alive(p["pid"], p["start"]) for p in r["processes"])]
    if address is None and len(heads) > 1:
        raise RuntimeError("several heads are running here; pass --address: "
                           + ", ".join(r["address"] for r in heads))
    return heads[-1] if heads else None


def resolve_auth(args: argparse.Namespace, agent_id: str, directory: Path,
                 address: str | None) -> dict[str, Any]:
    """Where this node's token comes from; a head generates one when none is given."""
    if args.no_auth:
        return {"mode": "disabled", "token_path": None, "owns_token": False, "source": "--no-auth"}
    own = directory / f"{agent_id}.token"
    if args.token_file:
        return {"mode": "token", "token_path": str(Path(args.token_file).resolve()),
                "owns_token": False, "source": "--token-file"}
    if args.token:
        return {"mode": "token", "token_path": str(_write_token(own, args.token)),
                "owns_token": True, "source": "--token"}
    if os.environ.get(TOKEN_PATH_ENV):
        return {"mode": "token", "token_path": os.environ[TOKEN_PATH_ENV], "owns_token": False,
                "source": TOKEN_PATH_ENV}
    if os.environ.get(TOKEN_ENV):
        return {"mode": "token", "token_path": str(_write_token(own, os.environ[TOKEN_ENV])),
                "owns_token": True, "source": TOKEN_ENV}
    if args.head:
        return {"mode": "token", "token_path": str(_write_token(own, secrets.token_hex(32))),
                "owns_token": True, "source": "generated"}
    head = head_record(address, directory)
    if head:
        return {"mode": head["auth"]["mode"], "token_path": head["auth"]["token_path"],
                "owns_token": False, "source": f"head record {head['id']}"}
    default = Path.home() / ".ray" / "auth_token"
    if default.is_file():
        return {"mode": "token", "token_path": str(default), "owns_token": False,
                "source": "~/.ray/auth_token"}
    raise SystemExit("no auth token for this cluster: pass --token-file/--token, set "
                     f"{TOKEN_ENV} or {TOKEN_PATH_ENV}, or --no-auth if the head has none")


def auth_env(auth: dict[str, Any]) -> dict[str, str]:
    if auth["mode"] != "token":
        return {AUTH_MODE_ENV: "disabled"}
    return {AUTH_MODE_ENV: "token", TOKEN_PATH_ENV: auth["token_path"]}


def _apply_env(env: dict[str, str], target: dict[str, str]) -> None:
    target.pop(TOKEN_ENV, None)  # RAY_AUTH_TOKEN outranks the file: drop a stale one
    if AUTH_MODE_ENV in env and env[AUTH_MODE_ENV] != "token":
        target.pop(TOKEN_PATH_ENV, None)
    target.update(env)


def driver_env(address: str | None = None, directory: Path | None = None) -> dict[str, str]:
    """Environment a driver on this machine needs for a cluster this agent started."""
    head = head_record(address, directory)
    if head is None:
        raise RuntimeError(f"no running head started by this agent"
                           f"{' at ' + address if address else ''} in {directory or state_dir()}")
    return {"RAY_ADDRESS": head["address"], **auth_env(head["auth"])}


def refresh_ray_auth_cache() -> None:
    """Ray caches RayConfig (auth mode) and the token at import: after changing the auth
    environment, refresh both as ray's own _enable_token_auth does."""
    if "ray._raylet" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def prepare_driver(address: str | None = None, directory: Path | None = None) -> str:
    """Set this process's auth env for ``ray.init(address=...)``; returns the address."""
    env = driver_env(address, directory)
    _apply_env(env, os.environ)  # type: ignore[arg-type]
    refresh_ray_auth_cache()
    return env["RAY_ADDRESS"]


# ----------------------------------------------------------------------------- start


def ray_cli() -> list[str]:
    # the Ray of this very interpreter: every node needs the same Ray and Python
    return [sys.executable, "-m", "ray.scripts.scripts"]


def _ray_client_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("grpc") is not None  # what ray checks for its client


def build_start_command(*, head: bool, address: str | None, facts: platforms.NodeFacts,
                        agent_id: str, ports: dict[str, int], worker_range: tuple[int, int],
                        temp_dir: str, num_cpus: int | None, num_gpus: int | None,
                        node_ip: str | None, object_store_memory: int | None,
                        dashboard: bool, autoscaling_config: str | None = None
                        ) -> tuple[list[str], dict[str, str], dict[str, float]]:
    labels = {"platform": facts.platform, "arch": facts.arch, "tuner.node": agent_id}
    resources: dict[str, float] = {f"dut_{facts.platform}": 1, f"platform_{facts.platform}": 1}
    resources.update({f"runtime_{name}": 1 for name, why in facts.runtimes.items()
                      if why is None and name != "*"})
    cmd = ray_cli() + ["start", "--disable-usage-stats", f"--temp-dir={temp_dir}",
                       "--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()),
                       "--resources=" + json.dumps(resources),
                       f"--min-worker-port={worker_range[0]}",
                       f"--max-worker-port={worker_range[1]}"]
    if head:
        cmd += ["--head", f"--port={ports['gcs']}",
                f"--node-ip-address={node_ip or '127.0.0.1'}",
                f"--include-dashboard={'true' if dashboard else 'false'}",
                # even without the dashboard a minimal one starts and would take 8265
                f"--dashboard-port={ports['dashboard']}"]
        if "client_server" in ports:
            cmd.append(f"--ray-client-server-port={ports['client_server']}")
        if autoscaling_config:  # `ray up` passes ~/ray_bootstrap_config.yaml to the head
            cmd.append(f"--autoscaling-config={autoscaling_config}")
    else:
        cmd.append(f"--address={address}")
        if node_ip:
            cmd.append(f"--node-ip-address={node_ip}")
    for name, flag in (("node_manager", "--node-manager-port"),
                       ("object_manager", "--object-manager-port"),
                       ("dashboard_agent_listen", "--dashboard-agent-listen-port"),
                       ("dashboard_agent_grpc", "--dashboard-agent-grpc-port"),
                       ("metrics_export", "--metrics-export-port"),
                       ("runtime_env_agent", "--runtime-env-agent-port")):
        cmd.append(f"{flag}={ports[name]}")
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus}")
    if object_store_memory:
        cmd.append(f"--object-store-memory={object_store_memory}")
    return cmd, labels, resources


def _session_procs(sid: int, launcher_start: int, temp_dir: str,
                   procs: dict[int, Proc] | None = None) -> list[Proc]:
    """Processes of the session the launcher created (``ray start`` runs in its own
    session, and the daemons it forks stay there after it exits)."""
    procs = procs if procs is not None else all_procs()
    return [p for p in procs.values() if p.sid == sid and p.start >= launcher_start
            and _running(p) and (temp_dir in p.cmdline or p.cmdline.startswith("ray::")
                                 or p.pid == sid)]


def _kill_bucket(targets: dict[int, int], grace: float) -> list[dict[str, Any]]:
    """SIGTERM each (pid, start), wait up to ``grace`` s, SIGKILL what is left."""
    signalled: list[dict[str, Any]] = []

    def send(pid: int, start: int, sig: signal.Signals) -> None:
        p = read_proc(pid)
        if _running(p) and p.start == start:  # type: ignore[union-attr]
            try:
                os.kill(pid, sig)
                signalled.append({"pid": pid, "start": start, "signal": sig.name,
                                  "role": _role(p.cmdline)})  # type: ignore[union-attr]
            except ProcessLookupError:
                pass

    for pid, start in targets.items():
        send(pid, start, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_alive(p, s) for p, s in targets.items()):
        time.sleep(0.1)
    for pid, start in targets.items():
        send(pid, start, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(is_alive(p, s) for p, s in targets.items()):
        time.sleep(0.1)
    return signalled


def _kill(targets: dict[int, int], grace: float) -> list[dict[str, Any]]:
    """Stop a node's processes in ``ray stop``'s order: raylet first (its agents fate-share
    with it), then the rest, gcs_server last (killed alongside the agents it reports to,
    it hangs ~20 s flushing events). ``grace`` is split over the three steps."""
    roles = {pid: _role(p.cmdline) if (p := read_proc(pid)) else "other" for pid in targets}
    buckets = [{p: s for p, s in targets.items() if roles[p] == "raylet"},
               {p: s for p, s in targets.items() if roles[p] not in ("raylet", "gcs_server")},
               {p: s for p, s in targets.items() if roles[p] == "gcs_server"}]
    signalled: list[dict[str, Any]] = []
    for bucket in buckets:
        if bucket:
            signalled += _kill_bucket(bucket, grace / len(buckets))
    return signalled


def start(args: argparse.Namespace) -> dict[str, Any]:
    facts = platforms.detect(args.platform)
    directory = state_dir()
    agent_id = args.id or f"{facts.platform}-{secrets.token_hex(3)}"
    if (directory / f"{agent_id}.json").exists():
        raise SystemExit(f"agent id {agent_id!r} already has a record in {directory}")
    temp_dir = str(Path(args.temp_dir or f"/tmp/tuner/{agent_id}").resolve())
    # Ray's unix sockets live at <temp>/session_<39 chars>/sockets/plasma_store: 107 max
    if len(temp_dir) > 45:
        raise SystemExit(f"--temp-dir {temp_dir!r} is too long for Ray's unix sockets "
                         "(keep it under 45 characters, e.g. /tmp/tn-<id>)")

    names = ["node_manager", "object_manager", "dashboard_agent_listen", "dashboard_agent_grpc",
             "metrics_export", "runtime_env_agent"]
    taken: set[int] = set()
    address = None
    if args.head:
        names += ["dashboard"] + (["client_server"] if _ray_client_available() else [])
        gcs = args.port if args.port is not None else (
            DEFAULT_GCS_PORT if port_free(DEFAULT_GCS_PORT) else None)
        if gcs is None:
            names.append("gcs")  # 6379 is taken (another head): any free port
        else:
            taken.add(gcs)
    else:
        address = args.address
    ports, worker_range = pick_ports(names, args.worker_ports, taken)
    if args.head and gcs is not None:
        ports["gcs"] = gcs
    auth = resolve_auth(args, agent_id, directory, address)
    Path(temp_dir).mkdir(parents=True, exist_ok=True)
    cmd, labels, resources = build_start_command(
        head=args.head, address=address, facts=facts, agent_id=agent_id, ports=ports,
        worker_range=worker_range, temp_dir=temp_dir, num_cpus=args.num_cpus,
        num_gpus=args.num_gpus, node_ip=args.node_ip_address,
        object_store_memory=args.object_store_memory, dashboard=args.dashboard,
        autoscaling_config=getattr(args, "autoscaling_config", None))
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    _apply_env(auth_env(auth), env)

    log_path = directory / f"{agent_id}.log"
    record: dict[str, Any] = {
        "id": agent_id, "role": "head" if args.head else "worker", "state": "starting",
        "address": address, "platform": facts.platform, "node_id": None, "node_ip": None,
        "temp_dir": temp_dir, "session_dir": None, "ports": ports,
        "worker_ports": list(worker_range), "labels": labels, "resources": resources,
        "num_cpus": args.num_cpus, "auth": auth, "sid": None, "launcher_start": None,
        "started_at": time.time(), "processes": [], "command": cmd, "log": str(log_path),
        "facts": facts.to_dict(), "stopped_at": None, "signalled": [],
    }
    with open(log_path, "w") as log:
        # own session: every daemon `ray start` forks stays in it, so we can find them all
        launcher = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
    launcher_proc = read_proc(launcher.pid)
    record["sid"] = launcher.pid
    record["launcher_start"] = launcher_start = launcher_proc.start if launcher_proc else 0
    _save(record, directory)  # already now: if this agent dies, `stop` still finds the session
    try:
        rc = launcher.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        rc = None
    if rc != 0:
        _kill(node_targets(record), grace=6)
        if auth["owns_token"]:
            Path(auth["token_path"]).unlink(missing_ok=True)
        (directory / f"{agent_id}.json").unlink(missing_ok=True)
        tail = log_path.read_text()[-3000:]
        raise SystemExit(f"ray start failed ({'timeout' if rc is None else f'rc={rc}'}); "
                         f"log {log_path}:\n{tail}")

    procs = _session_procs(launcher.pid, launcher_start, temp_dir)
    raylet = next((p for p in procs if _role(p.cmdline) == "raylet"), None)
    if args.head:
        record["address"] = (Path(temp_dir) / "ray_current_cluster").read_text().strip()
    elif raylet and _arg(raylet.cmdline, "--gcs-address"):
        record["address"] = _arg(raylet.cmdline, "--gcs-address")  # as Ray resolved it
    record.update({
        "state": "running",
        "node_id": _arg(raylet.cmdline, "--node_id") if raylet else None,
        "node_ip": _arg(raylet.cmdline, "--node_ip_address") if raylet else None,
        "session_dir": os.path.realpath(Path(temp_dir) / "session_latest"),
        "processes": [{"pid": p.pid, "start": p.start, "role": _role(p.cmdline),
                       "cmd": p.cmdline[:200]} for p in sorted(procs, key=lambda p: p.pid)],
    })
    _save(record, directory)
    return record


# ----------------------------------------------------------------------------- stop / status


def node_targets(record: dict[str, Any], procs: dict[int, Proc] | None = None) -> dict[int, int]:
    """pid -> start of the running processes that belong to a recorded node: the recorded
    ones, everything they spawned since (workers get their own process groups), and
    daemons left in the node's session."""
    procs = procs if procs is not None else all_procs()
    ours = {p["pid"] for p in record["processes"]
            if p["pid"] in procs and procs[p["pid"]].start == p["start"]}
    ours |= {p.pid for p in _session_procs(record["sid"], record["launcher_start"],
                                           record["temp_dir"], procs)}
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    stack = list(ours)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in ours:
                ours.add(child)
                stack.append(child)
    return {pid: procs[pid].start for pid in ours if _running(procs[pid])}


def stop(ids: list[str] | None = None, grace: float = 30.0, forget: bool = False,
         directory: Path | None = None) -> list[dict[str, Any]]:
    """Stop the nodes this agent started (workers before heads); returns per-node reports."""
    directory = directory or state_dir()
    records = [r for r in load_records(directory) if not ids or r["id"] in ids]
    missing = set(ids or ()) - {r["id"] for r in records}
    if missing:
        raise SystemExit(f"no record for {sorted(missing)} in {directory}")
    reports = []
    for record in sorted(records, key=lambda r: r["role"] == "head"):
        targets = node_targets(record)
        signalled = _kill(targets, grace) if targets else []
        still = [pid for pid, start in targets.items() if is_alive(pid, start)]
        record["stopped_at"] = record.get("stopped_at") or time.time()
        record["state"] = "stopped"
        record["signalled"] = record.get("signalled", []) + signalled
        if record["role"] == "head" and record["auth"].get("owns_token"):
            Path(record["auth"]["token_path"]).unlink(missing_ok=True)
        if forget:
            for suffix in (".json", ".log"):
                (directory / f"{record['id']}{suffix}").unlink(missing_ok=True)
        else:
            _save(record, directory)
        reports.append({"id": record["id"], "role": record["role"], "signalled": signalled,
                        "still_running": still})
    return reports


def status(directory: Path | None = None) -> dict[str, Any]:
    procs = all_procs()
    nodes = []
    for r in load_records(directory):
        alive = node_targets(r, procs)
        nodes.append({"id": r["id"], "role": r["role"], "platform": r["platform"],
                      "address": r["address"], "node_id": r.get("node_id"),
                      "temp_dir": r["temp_dir"], "alive": bool(alive),
                      "running_pids": sorted(alive), "stopped_at": r.get("stopped_at"),
                      "auth": r["auth"]["mode"]})
    return {"facts": platforms.detect().to_dict(), "nodes": nodes}


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tuner.node", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="detect this node and run `ray start` for it")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--head", action="store_true", help="start a head node")
    where.add_argument("--address", help="HOST:PORT of the head's GCS to join")
    s.add_argument("--port", type=int, help="head GCS port (default 6379 if free, else any)")
    s.add_argument("--platform", help="override the detected platform (other facts are kept)")
    s.add_argument("--num-cpus", type=int)
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
    st = sub.add_parser("status", help="facts and the nodes this agent started here")
    st.add_argument("--json", action="store_true")
    e = sub.add_parser("env", help="shell exports for a driver (RAY_ADDRESS and auth)")
    e.add_argument("--address")
    sp = sub.add_parser("stop", help="stop the Ray processes this agent started")
    sp.add_argument("--id", action="append", help="only this agent id (repeatable)")
    sp.add_argument("--grace", type=float, default=30.0,
                    help="seconds for SIGTERM before SIGKILL, split over raylet / other "
                         "daemons / gcs_server")
    sp.add_argument("--forget", action="store_true", help="delete the records afterwards")
    sp.add_argument("--json", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "start":
        try:
            record = start(args)
        except ValueError as exc:  # bad --platform
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(record, indent=1))
        print(f"started {record['role']} {record['id']} (platform={record['platform']}) at "
              f"{record['address']}; driver env: python -m tuner.node env --address "
              f"{record['address']}", file=sys.stderr)
    elif args.cmd == "status":
        info = status()
        if args.json:
            print(json.dumps(info, indent=1))
        else:
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
                print(f"{n['id']:24} {n['role']:6} {n['platform']:14} {str(n['address']):22} "
                      f"{state} pids={n['running_pids']}")
            if not info["nodes"]:
                print(f"no nodes started from {state_dir()}")
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


if __name__ == "__main__":
    sys.exit(main())
