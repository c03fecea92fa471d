"""Is this node's CPU emulated? Detected, never configured: a process run by qemu-user
(binfmt_misc) sees its guest architecture everywhere it asks the usual way (``uname``,
``platform.machine()``, ``/proc/cpuinfo`` if a description is bind-mounted), but the kernel
still says what it runs on. Its latencies are those of a translator, not of the device.

Signals, first that answers wins (all read under ``root``; tests pass fake trees):
- ``/proc/sys/kernel/arch``: the kernel's own architecture (Linux >= 6.1); qemu-user does
  not translate it (checked under qemu-aarch64-static 7.2 on an x86_64 kernel).
- the ELF machine of ``/proc/1/exe`` (init runs natively), where this process may read it.
- a binfmt_misc handler enabled for this process's own architecture: Debian's
  qemu-user-static never registers the host's native one.
A 32-bit ARM userland on a 64-bit ARM kernel (Raspberry Pi OS 32-bit) is not emulation:
the kernel runs it natively (compat mode), as an x86_64 kernel runs i686.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

# ELF e_machine -> architecture name as uname spells it
_ELF_MACHINES = {3: "i686", 40: "armv7l", 62: "x86_64", 183: "aarch64", 243: "riscv64"}
_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}
# kernel arch -> user architectures it runs natively besides its own (compat mode)
_COMPAT = {"aarch64": ("armv6l", "armv7l", "armv8l", "arm"),
           "x86_64": ("i386", "i486", "i586", "i686", "x86")}


def normalise(arch: str) -> str:
    arch = arch.strip().lower()
    return _ALIASES.get(arch, arch)


def runs_natively(kernel_arch: str, user_arch: str) -> bool:
    kernel, user = normalise(kernel_arch), normalise(user_arch)
    return kernel == user or user in _COMPAT.get(kernel, ())


def elf_machine(path: Path) -> str | None:
    """The architecture an ELF file is built for, or None (unreadable, not ELF)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    order = "<" if head[5] == 1 else ">"
    (machine,) = struct.unpack(order + "H", head[18:20])
    return _ELF_MACHINES.get(machine, f"elf-machine-{machine}")


def _binfmt_translator(root: Path, arch: str) -> str | None:
    """The interpreter of an enabled binfmt_misc handler for ``arch``, if any."""
    directory = root / "proc/sys/fs/binfmt_misc"
    for name in (f"qemu-{arch}", f"qemu-{arch}-static"):
        try:
            text = (directory / name).read_text()
        except OSError:
            continue
        if text.startswith("enabled"):
            for line in text.splitlines():
                if line.startswith("interpreter "):
                    return line.split(None, 1)[1]
            return name
    return None


def _qemu_cpu() -> dict[str, str]:
    """The CPU model qemu-user was told to emulate (``QEMU_CPU``), if any: without one it
    emulates every extension it knows, which no real board of that name has."""
    cpu = os.environ.get("QEMU_CPU")
    return {"emulated_cpu": cpu} if cpu else {}


def read_emulation(root: str | os.PathLike, arch: str) -> dict[str, Any] | None:
    """How this node's ``arch`` (what its processes are told) is emulated, or None when the
    kernel runs it natively or nothing says otherwise:
    ``{"host_arch": "x86_64", "translator": "qemu-user", "signal": "/proc/sys/kernel/arch"}``."""
    base = Path(root)
    if not arch or arch == "unknown":
        return None
    try:
        kernel = (base / "proc/sys/kernel/arch").read_text().strip() or None
        signal = "/proc/sys/kernel/arch"
    except OSError:
        kernel = None
    if kernel is None:
        kernel, signal = elf_machine(base / "proc/1/exe"), "ELF machine of /proc/1/exe"
    if kernel is not None:
        if runs_natively(kernel, arch):
            return None
        return {"host_arch": normalise(kernel), "translator": "qemu-user", "signal": signal,
                **_qemu_cpu()}
    interpreter = _binfmt_translator(base, normalise(arch))
    if interpreter is not None:
        return {"host_arch": "unknown", "translator": interpreter,
                "signal": f"binfmt_misc handler for {normalise(arch)}", **_qemu_cpu()}
    return None


__all__ = ["elf_machine", "normalise", "read_emulation", "runs_natively"]
