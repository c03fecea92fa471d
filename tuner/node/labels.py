"""What a node advertises to Ray, in one place: the agent writes these labels and resources,
the driver (``tuner.fleet.dispatch``) reads them back.

Labels: ``platform``, ``arch``, ``tuner.node`` (agent id), ``tuner.cores`` (the CPUs the
node's processes may run on) and ``tuner.accelerators`` (device kinds, e.g. ``edgetpu``).
Resources: ``dut_<platform>: 1`` (one measurement at a time on the device under test),
``platform_<platform>: 1`` and ``runtime_<name>: 1`` per runtime the node offers.
"""
from __future__ import annotations

from typing import Any, Mapping

PLATFORM_LABEL = "platform"
ARCH_LABEL = "arch"
NODE_LABEL = "tuner.node"
CORES_LABEL = "tuner.cores"
ACCELERATORS_LABEL = "tuner.accelerators"
RUNTIME_PREFIX = "runtime_"
# Ray label values follow Kubernetes syntax: no commas (``--labels`` splits on them), so a
# list of accelerator kinds is joined by dots ("edgetpu.gpu"); no accelerator is "".
LIST_SEP = "."


def dut_resource(platform: str) -> str:
    return f"dut_{platform}"


def platform_resource(platform: str) -> str:
    return f"platform_{platform}"


def runtime_resource(runtime: str) -> str:
    return f"{RUNTIME_PREFIX}{runtime}"


def node_labels(*, platform: str, arch: str, agent_id: str, cores: int,
                accelerators: list[str]) -> dict[str, str]:
    return {PLATFORM_LABEL: platform, ARCH_LABEL: arch, NODE_LABEL: agent_id,
            CORES_LABEL: str(cores), ACCELERATORS_LABEL: LIST_SEP.join(sorted(accelerators))}


def node_resources(platform: str, runtimes: list[str]) -> dict[str, float]:
    resources: dict[str, float] = {dut_resource(platform): 1, platform_resource(platform): 1}
    resources.update({runtime_resource(name): 1 for name in runtimes})
    return resources


def runtimes_of(resources: Mapping[str, Any]) -> list[str]:
    return sorted(k[len(RUNTIME_PREFIX):] for k in resources if k.startswith(RUNTIME_PREFIX))


def cores_of(labels: Mapping[str, str], resources: Mapping[str, Any]) -> int:
    """The node's usable cores; a node not started by the agent (``cluster=local``) has no
    label, so its CPU resource stands in."""
    value = labels.get(CORES_LABEL, "")
    return int(value) if value.isdigit() else int(resources.get("CPU", 0))


def accelerators_of(labels: Mapping[str, str]) -> list[str]:
    return [k for k in labels.get(ACCELERATORS_LABEL, "").split(LIST_SEP) if k]
