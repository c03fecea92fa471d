"""Picking free ports for a node, so several agents (and other Ray users) share a machine."""
from __future__ import annotations

import random
import socket

# Chosen ports stay below Linux's ephemeral range (32768+) and above Ray's default worker
# ports (10002-19999) so they collide neither with outgoing connections nor default nodes.
PORT_LO, PORT_HI = 20000, 32767
DEFAULT_GCS_PORT = 6379


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
