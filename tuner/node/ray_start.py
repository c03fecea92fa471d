"""The ``ray start`` command of a node, and launching it in a session of its own, pinned to
the node's CPUs (affinity is inherited by every daemon and worker Ray forks from it)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

# agent port name -> ``ray start`` flag, for the ports every node listens on
_NODE_PORT_FLAGS = (("node_manager", "--node-manager-port"),
                    ("object_manager", "--object-manager-port"),
                    ("dashboard_agent_listen", "--dashboard-agent-listen-port"),
                    ("dashboard_agent_grpc", "--dashboard-agent-grpc-port"),
                    ("metrics_export", "--metrics-export-port"),
                    ("runtime_env_agent", "--runtime-env-agent-port"))
NODE_PORTS = [name for name, _ in _NODE_PORT_FLAGS]


def ray_cli() -> list[str]:
    # the Ray of this very interpreter: every node needs the same Ray and Python
    return [sys.executable, "-m", "ray.scripts.scripts"]


def ray_client_available() -> bool:
    return importlib.util.find_spec("grpc") is not None  # what ray checks for its client


def head_ports() -> list[str]:
    """Ports only a head has (``gcs`` is chosen apart: 6379 when free)."""
    return ["dashboard"] + (["client_server"] if ray_client_available() else [])


def build_start_command(*, head: bool, address: str | None, labels: dict[str, str],
                        resources: dict[str, float], ports: dict[str, int],
                        worker_range: tuple[int, int], temp_dir: str, num_cpus: int | None,
                        num_gpus: int | None, node_ip: str | None,
                        object_store_memory: int | None, dashboard: bool,
                        autoscaling_config: str | None = None) -> list[str]:
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
    cmd += [f"{flag}={ports[name]}" for name, flag in _NODE_PORT_FLAGS]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus}")
    if object_store_memory:
        cmd.append(f"--object-store-memory={object_store_memory}")
    return cmd


def launch(cmd: list[str], env: dict[str, str], log_path: Path,
           cpus: list[int] | None) -> subprocess.Popen:
    """Run ``cmd`` in a new session (every daemon ``ray start`` forks stays in it, so stop
    finds them all) on ``cpus`` only."""
    def pin() -> None:  # in the child, before exec: nothing runs unpinned
        if cpus:
            os.sched_setaffinity(0, cpus)

    with open(log_path, "w") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=pin)


# Ray 2.60 waits a fixed 30 s for a new raylet to register with the GCS
# (``ray/_private/node.py``: raylet_start_wait_time_s), not configurable: a slow node (a Pi
# under load, an emulated CPU, a machine busy with other jobs) can miss it.
RAYLET_TIMEOUT = "timed out during startup"


def startup_failure(log_text: str) -> str | None:
    """One line for a known way ``ray start`` fails on a slow node, or None."""
    if RAYLET_TIMEOUT in log_text:
        return ("ray start gave up: the raylet did not register with the GCS within Ray's "
                "fixed 30 s (a slow, loaded or emulated node): try again when the machine is "
                "quieter, or with fewer other jobs on it; nothing of this node is left running")
    return None
