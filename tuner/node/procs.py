"""What runs on this machine, read from ``/proc``: processes (named by pid *and* start time,
so a reused pid is never mistaken for ours), the sockets they listen on, and which of them
belong to a node the agent started."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


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


def running(p: Proc | None) -> bool:
    # zombies: exited, waiting for a parent (here often pid 1) to reap them
    return p is not None and p.state not in ("Z", "X")


def is_alive(pid: int, start: int) -> bool:
    p = read_proc(pid)
    return running(p) and p.start == start  # type: ignore[union-attr]


def role(cmd: str) -> str:
    """What a Ray process is, from its command line."""
    for needle, name in (("gcs_server", "gcs_server"), ("raylet/raylet", "raylet"),
                         ("log_monitor.py", "log_monitor"), ("monitor.py", "monitor"),
                         ("dashboard/agent.py", "dashboard_agent"),
                         ("ray::DashboardAgent", "dashboard_agent"),
                         ("runtime_env/agent", "runtime_env_agent"),
                         ("ray::RuntimeEnvAgent", "runtime_env_agent"),
                         ("dashboard/dashboard.py", "dashboard"),
                         ("ray.util.client.server", "client_server"),  # python -m
                         ("client/server", "client_server"), ("ray::", "worker")):
        if needle in cmd:
            return name
    return "other"


def cmd_arg(cmd: str, name: str) -> str | None:
    """The value of ``name=value`` in a command line."""
    for part in cmd.split():
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    return None


def listeners(ports: Iterable[int]) -> dict[int, set[int]]:
    """port -> pids holding a TCP socket listening on it (any address, IPv4 or IPv6)."""
    wanted = set(ports)
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            port = int(f[1].rsplit(":", 1)[1], 16)
            if f[3] == _LISTEN and port in wanted:
                inodes[f"socket:[{f[9]}]"] = port
    found: dict[int, set[int]] = {}
    if not inodes:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                port = inodes.get(os.readlink(f"/proc/{entry}/fd/{fd}"))
            except OSError:
                continue
            if port is not None:
                found.setdefault(port, set()).add(int(entry))
    return found


def session_procs(sid: int, launcher_start: int,
                  procs: dict[int, Proc] | None = None) -> list[Proc]:
    """Processes of the session the launcher created: ``ray start`` runs in its own session
    and every daemon it forks stays there after it exits (the Ray client server too, which
    names neither the temp dir nor ``ray::``). Linux does not reuse a pid while a session of
    that id has members, so sid + start time cannot name a stranger."""
    procs = procs if procs is not None else all_procs()
    return [p for p in procs.values() if p.sid == sid and p.start >= launcher_start
            and running(p)]


def node_ports(record: dict[str, Any]) -> set[int]:
    """The ports the node itself listens on (a worker's ``address`` is the head's: not its)."""
    return {int(p) for p in record.get("ports", {}).values()}


def node_targets(record: dict[str, Any], procs: dict[int, Proc] | None = None,
                 foreign_sids: Iterable[int] = ()) -> dict[int, int]:
    """pid -> start of the running processes that belong to a recorded node: the recorded
    ones, the members of its session, everything they spawned (workers get their own
    process groups), and whatever started since the node and listens on one of its ports,
    unless it is in the session of another node (``foreign_sids``)."""
    procs = procs if procs is not None else all_procs()
    ours = {p["pid"] for p in record["processes"]
            if p["pid"] in procs and procs[p["pid"]].start == p["start"]}
    ours |= {p.pid for p in session_procs(record["sid"], record["launcher_start"], procs)}
    foreign = set(foreign_sids) - {record["sid"]}
    for pids in listeners(node_ports(record)).values():
        ours |= {pid for pid in pids if pid in procs and procs[pid].sid not in foreign
                 and procs[pid].start >= record["launcher_start"]}
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    stack = list(ours)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in ours:
                ours.add(child)
                stack.append(child)
    return {pid: procs[pid].start for pid in ours if pid in procs and running(procs[pid])}
