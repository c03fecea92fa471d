"""Ending a node's processes: SIGTERM in ``ray stop``'s order, SIGKILL what stays, then look
again (a raylet may have spawned more while it died) until nothing of the node is left."""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Iterable

from tuner.node.procs import is_alive, node_targets, read_proc, role, running


def _kill_bucket(targets: dict[int, int], grace: float) -> list[dict[str, Any]]:
    """SIGTERM each (pid, start), wait up to ``grace`` s, SIGKILL what is left."""
    signalled: list[dict[str, Any]] = []

    def send(pid: int, start: int, sig: signal.Signals) -> None:
        p = read_proc(pid)
        if running(p) and p.start == start:  # type: ignore[union-attr]
            try:
                os.kill(pid, sig)
                signalled.append({"pid": pid, "start": start, "signal": sig.name,
                                  "role": role(p.cmdline)})  # type: ignore[union-attr]
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


def kill_in_order(targets: dict[int, int], grace: float) -> list[dict[str, Any]]:
    """Raylet first (its agents fate-share with it), then the rest, gcs_server last (killed
    alongside the agents it reports to, it hangs ~20 s flushing events). ``grace`` is split
    over the three steps."""
    roles = {pid: role(p.cmdline) if (p := read_proc(pid)) else "other" for pid in targets}
    buckets = [{p: s for p, s in targets.items() if roles[p] == "raylet"},
               {p: s for p, s in targets.items() if roles[p] not in ("raylet", "gcs_server")},
               {p: s for p, s in targets.items() if roles[p] == "gcs_server"}]
    signalled: list[dict[str, Any]] = []
    for bucket in buckets:
        if bucket:
            signalled += _kill_bucket(bucket, grace / len(buckets))
    return signalled


def end_node(record: dict[str, Any], grace: float, foreign_sids: Iterable[int] = (),
             rounds: int = 3) -> tuple[list[dict[str, Any]], list[int]]:
    """Stop everything of a node; returns (what was signalled, pids still running)."""
    foreign = list(foreign_sids)
    signalled: list[dict[str, Any]] = []
    for i in range(rounds):
        targets = node_targets(record, foreign_sids=foreign)
        if not targets:
            return signalled, []
        # later rounds catch stragglers only: no need to wait the full grace again
        signalled += kill_in_order(targets, grace if i == 0 else min(grace, 3.0))
    return signalled, sorted(node_targets(record, foreign_sids=foreign))
