"""Which CPU this is, in the names LLVM and TVM use, and the TVM ``target`` knob resolved.

The one place that maps ``/proc/cpuinfo`` to a CPU name: platform detection (display name,
``arm_core_name``) and the TVM backend (LLVM ``mcpu``, ``host_cpu``) both read it here.
Nothing here imports TVM at module level, so detection can use it where TVM is absent.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# Arm "CPU part" (/proc/cpuinfo) -> core name as Arm writes it; lower-cased, it is LLVM's
# CPU name (cortex-a72, neoverse-n1).
ARM_CORES = {0xd03: "Cortex-A53", 0xd04: "Cortex-A35", 0xd05: "Cortex-A55",
             0xd07: "Cortex-A57", 0xd08: "Cortex-A72", 0xd09: "Cortex-A73",
             0xd0a: "Cortex-A75", 0xd0b: "Cortex-A76", 0xd0c: "Neoverse-N1",
             0xd0d: "Cortex-A77", 0xd40: "Neoverse-V1", 0xd41: "Cortex-A78",
             0xd42: "Cortex-A78AE", 0xd49: "Neoverse-N2", 0xd4f: "Neoverse-V2"}

# x86 feature flag -> an LLVM CPU that has it: the fallback when LLVM cannot name the host
_X86_BY_FLAG = (("avx512f", "skylake-avx512"), ("avx2", "haswell"), ("avx", "sandybridge"),
                ("sse4_2", "nehalem"))


def arm_core_name(part: str | int) -> str | None:
    """An Arm "CPU part" (``"0xd08"`` or 0xd08) -> ``"Cortex-A72"``; None when unknown."""
    try:
        number = part if isinstance(part, int) else int(str(part).strip(), 16)
    except ValueError:
        return None
    return ARM_CORES.get(number)


def llvm_cpu_from_cpuinfo(text: str) -> str | None:
    """The LLVM CPU name that ``/proc/cpuinfo`` text implies (x86: by feature flags, Arm:
    by CPU part), or None when it names none."""
    for line in text.splitlines():
        field, _, value = line.partition(":")
        field = field.strip()
        if field == "flags":
            flags = set(value.split())
            return next((cpu for flag, cpu in _X86_BY_FLAG if flag in flags), None)
        if field == "CPU part":
            core = arm_core_name(value)
            return core.lower() if core else None
    return None


def host_cpu() -> str | None:
    """This host's CPU as LLVM names it (``znver3``, ``cortex-a72``), or None when unknown."""
    try:
        from tvm.target import codegen

        name = str(codegen.llvm_get_system_cpu())
        if name and name != "generic":
            return name
    except Exception:  # noqa: BLE001 - TVM absent or built without LLVM: read cpuinfo
        pass
    try:
        return llvm_cpu_from_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_target(spec: Any = None, num_cores: int | None = None):
    """The ``target`` knob as a ``tvm.target.Target``: None/"host" = this machine's CPU; a
    tag (``raspberry-pi/4b-aarch64``), a kind (``llvm``), a dict or its JSON otherwise.
    ``num_cores`` sets the target's core count (tuned kernels split parallel loops by it)."""
    from tvm.target import Target

    if spec is None or spec in ("", "host", "native"):
        cpu = host_cpu()
        spec = {"kind": "llvm", "mcpu": cpu} if cpu else {"kind": "llvm"}
    elif isinstance(spec, str) and spec.lstrip().startswith("{"):
        spec = json.loads(spec)
    elif not isinstance(spec, (str, dict)):
        spec = dict(spec)  # e.g. an OmegaConf DictConfig
    target = Target(spec)
    if num_cores:
        config = json.loads(str(target))
        config["num-cores"] = int(num_cores)
        if isinstance(config.get("host"), dict):
            config["host"]["num-cores"] = int(num_cores)
        target = Target(config)
    return target
