"""What the kernel says about this machine's hardware: readers of ``/proc``, ``/sys``,
``/etc`` under a ``root`` (``/`` by default; tests pass fake trees), and of the commands
``nvidia-smi`` and ``vcgencmd`` looked up on a ``path``. Each reader returns plain data and
never raises for a missing file: a node reports what it can see."""
from __future__ import annotations

import ctypes
import glob
import os
import platform as _platform
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from backends.tvm_target import arm_core_name  # the one table of Arm core names

# Coral Edge TPU USB ids: 1a6e:089a before its firmware is loaded, 18d1:9302 after.
_CORAL_USB = {("1a6e", None), ("18d1", "9302")}

# vcgencmd get_throttled bits (Raspberry Pi firmware docs).
_THROTTLE_BITS = {
    0: "under-voltage", 1: "arm-frequency-capped", 2: "throttled", 3: "soft-temp-limit",
    16: "under-voltage-occurred", 17: "arm-frequency-capping-occurred",
    18: "throttling-occurred", 19: "soft-temp-limit-occurred",
}

def _p(root: str | os.PathLike, rel: str) -> Path:
    return Path(root) / rel.lstrip("/")


def read_file(root: str | os.PathLike, rel: str) -> str | None:
    try:
        # device-tree strings end in NUL
        return _p(root, rel).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def read_cpuinfo(root: str | os.PathLike = "/") -> tuple[list[dict[str, str]], dict[str, str]]:
    """(per-processor blocks, fields outside any processor block such as ARM's Hardware/Model)."""
    text = read_file(root, "/proc/cpuinfo") or ""
    blocks: list[dict[str, str]] = []
    extra: dict[str, str] = {}
    current: dict[str, str] = {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if "processor" in current:
                blocks.append(current)
            else:  # ARM's trailing Hardware/Revision/Model block
                extra.update(current)
            current = {}
            continue
        key, _, value = line.partition(":")
        current[key.strip()] = value.strip()
    return blocks, extra


def read_meminfo_gib(root: str | os.PathLike = "/") -> float:
    text = read_file(root, "/proc/meminfo") or ""
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.M)
    return round(int(m.group(1)) / 1024**2, 2) if m else 0.0


def read_os(root: str | os.PathLike = "/") -> str:
    text = read_file(root, "/etc/os-release") or ""
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.M)
    return m.group(1) if m else ""


def read_device_tree_model(root: str | os.PathLike = "/") -> str | None:
    return (read_file(root, "/proc/device-tree/model")
            or read_file(root, "/sys/firmware/devicetree/base/model"))


def read_arch(root: str | os.PathLike, blocks: list[dict[str, str]], extra: dict[str, str]) -> str:
    if Path(root).resolve() == Path("/"):
        return _platform.machine()
    # fake root: infer from cpuinfo, which differs by architecture
    first = blocks[0] if blocks else {}
    if first.get("vendor_id") in ("GenuineIntel", "AuthenticAMD", "HygonGenuine"):
        return "x86_64"
    arch = first.get("CPU architecture") or extra.get("CPU architecture")
    if arch == "8":
        return "aarch64"
    if arch == "7":
        return "armv7l"
    return "unknown"


def cpu_model_name(blocks: list[dict[str, str]], extra: dict[str, str]) -> str:
    first = blocks[0] if blocks else {}
    if first.get("model name") and not first.get("CPU part"):
        return first["model name"]
    core = arm_core_name(first["CPU part"]) if first.get("CPU part") else None
    if core:
        return f"ARM {core}"
    # 32-bit ARM kernels put "ARMv7 Processor rev 3 (v7l)" in model name
    return (first.get("model name") or extra.get("Model") or extra.get("Hardware")
            or first.get("Processor") or "unknown")


def cpu_topology(blocks: list[dict[str, str]]) -> tuple[int, int]:
    """(sockets, physical cores per socket); ARM cpuinfo has neither field."""
    sockets = len({b.get("physical id") for b in blocks if "physical id" in b}) or 1
    cores_field = blocks[0].get("cpu cores") if blocks else None
    if cores_field and cores_field.isdigit():
        return sockets, int(cores_field)
    return sockets, max(1, len(blocks) // sockets) if blocks else 0


def read_cpufreq(root: str | os.PathLike = "/") -> tuple[str | None, dict[str, float]]:
    base = "/sys/devices/system/cpu/cpu0/cpufreq/"
    governor = read_file(root, base + "scaling_governor")
    freq: dict[str, float] = {}
    for key, name in (("cur", "scaling_cur_freq"), ("min", "cpuinfo_min_freq"),
                      ("max", "cpuinfo_max_freq")):
        value = read_file(root, base + name)
        if value and value.isdigit():
            freq[key] = int(value) / 1000.0  # kHz -> MHz
    return governor, freq


def read_caches(root: str | os.PathLike = "/") -> dict[str, str]:
    caches: dict[str, str] = {}
    for d in sorted(glob.glob(str(_p(root, "/sys/devices/system/cpu/cpu0/cache/index*")))):
        level, kind, size = (read_file(d, f) for f in ("level", "type", "size"))
        if not (level and size):
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind or "", "")
        caches[f"L{level}{suffix}"] = size
    return caches


def read_storage(root: str | os.PathLike = "/") -> dict[str, Any]:
    """Block devices from sysfs: total capacity and kind (SD card, NVMe, SSD, HDD...)."""
    kinds: list[str] = []
    total = 0
    for d in sorted(glob.glob(str(_p(root, "/sys/block/*")))):
        name = os.path.basename(d)
        if re.match(r"(loop|ram|zram|dm-|md|sr|nbd|fd)", name):
            continue
        sectors = read_file(d, "size")
        total += int(sectors) * 512 if sectors and sectors.isdigit() else 0
        if name.startswith("mmcblk"):
            kind = "eMMC" if read_file(d, "device/type") == "MMC" else "microSD card"
        elif name.startswith("nvme"):
            kind = "NVMe SSD"
        elif name.startswith("vd"):
            kind = "virtio disk"
        else:
            kind = {"0": "SSD", "1": "HDD"}.get(read_file(d, "queue/rotational") or "", "disk")
        if kind not in kinds:
            kinds.append(kind)
    if not total and Path(root).resolve() == Path("/"):
        total = shutil.disk_usage("/").total
    return {"capacity_gb": round(total / 1e9), "type": ", ".join(kinds) or "unknown"}


def read_network(root: str | os.PathLike = "/") -> list[dict[str, Any]]:
    """Physical network interfaces (those with a ``device`` link in sysfs)."""
    nics = []
    for d in sorted(glob.glob(str(_p(root, "/sys/class/net/*")))):
        name = os.path.basename(d)
        if name == "lo" or not os.path.exists(os.path.join(d, "device")):
            continue
        kind = "Wi-Fi" if os.path.exists(os.path.join(d, "wireless")) else "Ethernet"
        speed = read_file(d, "speed")
        nics.append({"name": name, "kind": kind,
                     "speed_mbps": int(speed) if speed and speed.lstrip("-").isdigit()
                     and int(speed) > 0 else None})
    return nics


def _run(cmd: list[str], path: str | None, timeout: float = 10.0) -> str | None:
    exe = shutil.which(cmd[0], path=path if path is not None else os.environ.get("PATH"))
    if not exe:
        return None
    try:
        out = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def read_nvidia_gpus(path: str | None = None) -> list[dict[str, Any]]:
    out = _run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"], path)
    gpus = []
    for line in (out or "").splitlines():
        if not line.strip():
            continue
        name, _, memory = line.rpartition(",")
        if not name:  # no comma: a name alone
            name, memory = memory, ""
        gpus.append({"kind": "gpu", "vendor": "NVIDIA", "name": name.strip(),
                     "memory": memory.strip() or None, "interconnect": "PCIe",
                     "source": "nvidia-smi"})
    return gpus


def _edgetpu_library(root: str | os.PathLike) -> bool:
    if Path(root).resolve() == Path("/"):
        try:
            ctypes.CDLL("libedgetpu.so.1")
            return True
        except OSError:
            pass
    patterns = ("/usr/lib/libedgetpu.so.1", "/usr/lib/*/libedgetpu.so.1",
                "/usr/local/lib/libedgetpu.so.1", "/usr/local/lib/*/libedgetpu.so.1")
    return any(glob.glob(str(_p(root, pat))) for pat in patterns)


def read_edgetpus(root: str | os.PathLike = "/") -> list[dict[str, Any]]:
    tpus: list[dict[str, Any]] = []
    for dev in sorted(glob.glob(str(_p(root, "/dev/apex_*")))):
        tpus.append({"kind": "edgetpu", "vendor": "Google", "name": "Coral Edge TPU (PCIe/M.2)",
                     "interconnect": "PCIe", "device": "/dev/" + os.path.basename(dev)})
    for vendor_file in sorted(glob.glob(str(_p(root, "/sys/bus/usb/devices/*/idVendor")))):
        d = os.path.dirname(vendor_file)
        vendor, product = read_file(d, "idVendor"), read_file(d, "idProduct")
        if (vendor, None) in _CORAL_USB or (vendor, product) in _CORAL_USB:
            speed = read_file(d, "speed")  # Mbit/s: 5000 = USB 3.0
            usb = "USB 3.0" if speed and speed.isdigit() and int(speed) >= 5000 else "USB 2.0"
            tpus.append({"kind": "edgetpu", "vendor": "Google", "name": "Coral USB Accelerator",
                         "interconnect": usb, "device": f"usb {vendor}:{product}"})
    if not tpus and _edgetpu_library(root):
        # The brief counts an installed libedgetpu as evidence; say that is all we saw.
        tpus.append({"kind": "edgetpu", "vendor": "Google", "name": "Coral Edge TPU",
                     "interconnect": "unknown", "device": "libedgetpu.so.1 only"})
    return tpus


def read_throttled(path: str | None = None) -> dict[str, Any] | None:
    out = _run(["vcgencmd", "get_throttled"], path)
    m = re.search(r"throttled=(0x[0-9a-fA-F]+)", out or "")
    if not m:
        return None
    value = int(m.group(1), 16)
    return {"raw": m.group(1), "value": value,
            "flags": [name for bit, name in _THROTTLE_BITS.items() if value >> bit & 1]}


def read_hostname(root: str | os.PathLike) -> str:
    if Path(root).resolve() == Path("/"):
        return socket.gethostname()
    return read_file(root, "/proc/sys/kernel/hostname") or read_file(root, "/etc/hostname") or ""
