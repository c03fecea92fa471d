"""Node agent: detect this machine's platform and run ``ray start`` with matching labels.

    python -m tuner.node start --head [--port P] [--platform NAME] [--cpus 0-1]
                               [--runtimes onnxruntime,litert] [--accelerators edgetpu] ...
    python -m tuner.node start --address HOST:PORT [--platform NAME] ...
    python -m tuner.node status [--json]
    python -m tuner.node env [--address HOST:PORT]      # shell exports for a driver
    python -m tuner.node stop [--id ID ...] [--grace S] [--json]
    python -m tuner.node doctor [--address HOST:PORT | --head-ray V --head-python V] ...
    python -m tuner.node extras [--spec PATH]         # pip extras of this platform's runtimes

Each node gets the labels and resources ``labels`` names (platform, arch, agent id, usable
cores, accelerator kinds; ``dut_``/``platform_``/``runtime_`` resources). All of Ray's
ports are chosen free per agent, so several agents can share one machine, each pinned to
its own CPUs (``--cpus``) and offering its own runtimes (``--runtimes``): an emulated
heterogeneous fleet. What was started is recorded in ``$TUNER_STATE_DIR`` (default
``~/.tuner/nodes``); ``stop`` ends every process of the node's session, what they spawned
and what listens on its ports, and checks that nothing is left; never ``ray stop``, which
would end every Ray process of the user.

Note: ray 2.60 ``ray start`` replaces a loopback ``--node-ip-address`` (127.0.0.1) by the
machine's routable address and the GCS listens on all interfaces, so a cluster is reachable
from the network whatever the agent passes; the token (``auth``) is what guards it.

Modules, one job each:
    store      the state records          procs      /proc: processes, listeners, membership
    ports      free port choice           terminate  ending a node's processes, verified
    labels     label/resource names       auth       tokens; ``prepare_driver`` for drivers
    offer      CPUs/runtimes/accelerators ray_start  the ``ray start`` command and launch
    lifecycle  start / stop / status      cli        ``python -m tuner.node``
    doctor     checks before joining: the head's Ray and Python, LoadGen, runtimes

The names below are imported on first use, so that a driver importing ``tuner.node.auth``
does not load the rest of the agent.
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "state_dir": "store", "load_records": "store",
    "Proc": "procs", "read_proc": "procs", "all_procs": "procs", "is_alive": "procs",
    "node_targets": "procs", "listeners": "procs",
    "pick_ports": "ports", "port_free": "ports",
    "prepare_driver": "auth", "driver_env": "auth", "refresh_ray_auth_cache": "auth",
    "start": "lifecycle", "stop": "lifecycle", "status": "lifecycle",
    "build_parser": "cli", "main": "cli",
}
__all__ = [name for name in _PUBLIC if not name.startswith("_")]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'tuner.node' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tuner.node.{module}"), name)
