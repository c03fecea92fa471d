"""What this node is: platform name, CPU, memory, OS, accelerators, runtimes.

``detect()`` reads the same files the kernel exposes (``/proc/cpuinfo``,
``/proc/device-tree/model``, ``/sys/...``, ``/etc/os-release``) under a ``root`` that
defaults to ``/``, so tests feed fake trees from ``tmp_path``. Commands (``nvidia-smi``,
``vcgencmd``) are looked up on ``PATH`` (tests put fake scripts there).

The platform name is what Ray labels a node with (``platform=<name>``) and what a trial
asks for; ``conf/platform/<name>.yaml`` holds its defaults. Detection order, first match
wins: ``rpi4-coral`` / ``rpi4`` (device-tree model), ``jetson-nano`` (Tegra + model),
``nvidia-generic`` (nvidia-smi lists a GPU: the GPU is then the device under test),
``milan`` (AMD EPYC 7xx3), ``x8664``, ``aarch64`` (any other ARM).

``system_description()`` turns facts into the 35-key MLPerf system JSON.
"""
from __future__ import annotations

import ctypes
import dataclasses
import glob
import importlib.metadata
import os
import platform as _platform
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "platform"

KNOWN_PLATFORMS = ("milan", "x8664", "rpi4", "rpi4-coral", "jetson-nano", "nvidia-generic",
                   "aarch64")

# Coral Edge TPU USB ids: 1a6e:089a before its firmware is loaded, 18d1:9302 after.
_CORAL_USB = {("1a6e", None), ("18d1", "9302")}

# ARM "CPU part" -> core name (cpuinfo on ARM has no "model name").
_ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2",
}

# vcgencmd get_throttled bits (Raspberry Pi firmware docs).
_THROTTLE_BITS = {
    0: "under-voltage", 1: "arm-frequency-capped", 2: "throttled", 3: "soft-temp-limit",
    16: "under-voltage-occurred", 17: "arm-frequency-capping-occurred",
    18: "throttling-occurred", 19: "soft-temp-limit-occurred",
}

_RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "tvm": "Apache TVM", "litert": "LiteRT",
                  "tensorrt": "TensorRT"}

# Software recorded with every result besides the runtimes (distribution names).
_SOFTWARE = {"Ray": "ray", "Optuna": "optuna", "MLPerf LoadGen": "mlcommons-loadgen",
             "tuner": "tuner", "NumPy": "numpy"}


@dataclass
class NodeFacts:
    """Everything recorded about a node; plain data so it crosses Ray and lands in JSON."""

    platform: str
    detected_platform: str
    arch: str
    cpu_model: str
    cores: int                       # logical CPUs the kernel lists
    hostname: str = ""
    cpu_vendor: str = ""
    sockets: int = 1
    cores_per_socket: int = 0        # physical cores per socket (0: unknown)
    cpus_usable: int | None = None   # CPUs this process may run on (affinity), real root only
    memory_gib: float = 0.0
    os: str = ""
    kernel: str = ""
    board: str | None = None         # device-tree model or DMI product name
    tegra_release: str | None = None
    accelerators: list[dict[str, Any]] = field(default_factory=list)
    governor: str | None = None
    cpu_freq_mhz: dict[str, float] = field(default_factory=dict)
    cpu_caches: dict[str, str] = field(default_factory=dict)
    throttled: dict[str, Any] | None = None
    storage: dict[str, Any] = field(default_factory=dict)
    network: list[dict[str, Any]] = field(default_factory=list)
    runtimes: dict[str, str | None] = field(default_factory=dict)
    runtime_versions: dict[str, str] = field(default_factory=dict)
    software: dict[str, str] = field(default_factory=dict)

    @property
    def overridden(self) -> bool:
        return self.platform != self.detected_platform

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeFacts:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# --------------------------------------------------------------------------- readers


def _p(root: str | os.PathLike, rel: str) -> Path:
    return Path(root) / rel.lstrip("/")


def _read(root: str | os.PathLike, rel: str) -> str | None:
    try:
        # device-tree strings end in NUL
        return _p(root, rel).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def read_cpuinfo(root: str | os.PathLike = "/") -> tuple[list[dict[str, str]], dict[str, str]]:
    """(per-processor blocks, fields outside any processor block such as ARM's Hardware/Model)."""
    text = _read(root, "/proc/cpuinfo") or ""
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
    text = _read(root, "/proc/meminfo") or ""
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.M)
    return round(int(m.group(1)) / 1024**2, 2) if m else 0.0


def read_os(root: str | os.PathLike = "/") -> str:
    text = _read(root, "/etc/os-release") or ""
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.M)
    return m.group(1) if m else ""


def read_device_tree_model(root: str | os.PathLike = "/") -> str | None:
    return _read(root, "/proc/device-tree/model") or _read(root, "/sys/firmware/devicetree/base/model")


def _arch(root: str | os.PathLike, blocks: list[dict[str, str]], extra: dict[str, str]) -> str:
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


def _cpu_model(blocks: list[dict[str, str]], extra: dict[str, str]) -> str:
    first = blocks[0] if blocks else {}
    if first.get("model name") and not first.get("CPU part"):
        return first["model name"]
    part = (first.get("CPU part") or "").lower()
    if part in _ARM_PARTS:
        return f"ARM {_ARM_PARTS[part]}"
    # 32-bit ARM kernels put "ARMv7 Processor rev 3 (v7l)" in model name
    return (first.get("model name") or extra.get("Model") or extra.get("Hardware")
            or first.get("Processor") or "unknown")


def _topology(blocks: list[dict[str, str]]) -> tuple[int, int]:
    """(sockets, physical cores per socket); ARM cpuinfo has neither field."""
    sockets = len({b.get("physical id") for b in blocks if "physical id" in b}) or 1
    cores_field = blocks[0].get("cpu cores") if blocks else None
    if cores_field and cores_field.isdigit():
        return sockets, int(cores_field)
    return sockets, max(1, len(blocks) // sockets) if blocks else 0


def read_cpufreq(root: str | os.PathLike = "/") -> tuple[str | None, dict[str, float]]:
    base = "/sys/devices/system/cpu/cpu0/cpufreq/"
    governor = _read(root, base + "scaling_governor")
    freq: dict[str, float] = {}
    for key, name in (("cur", "scaling_cur_freq"), ("min", "cpuinfo_min_freq"),
                      ("max", "cpuinfo_max_freq")):
        value = _read(root, base + name)
        if value and value.isdigit():
            freq[key] = int(value) / 1000.0  # kHz -> MHz
    return governor, freq


def read_caches(root: str | os.PathLike = "/") -> dict[str, str]:
    caches: dict[str, str] = {}
    for d in sorted(glob.glob(str(_p(root, "/sys/devices/system/cpu/cpu0/cache/index*")))):
        level, kind, size = (_read(d, f) for f in ("level", "type", "size"))
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
        sectors = _read(d, "size")
        total += int(sectors) * 512 if sectors and sectors.isdigit() else 0
        if name.startswith("mmcblk"):
            kind = "eMMC" if _read(d, "device/type") == "MMC" else "microSD card"
        elif name.startswith("nvme"):
            kind = "NVMe SSD"
        elif name.startswith("vd"):
            kind = "virtio disk"
        else:
            kind = {"0": "SSD", "1": "HDD"}.get(_read(d, "queue/rotational") or "", "disk")
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
        speed = _read(d, "speed")
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
        vendor, product = _read(d, "idVendor"), _read(d, "idProduct")
        if (vendor, None) in _CORAL_USB or (vendor, product) in _CORAL_USB:
            speed = _read(d, "speed")  # Mbit/s: 5000 = USB 3.0
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


def _hostname(root: str | os.PathLike) -> str:
    if Path(root).resolve() == Path("/"):
        return socket.gethostname()
    return _read(root, "/proc/sys/kernel/hostname") or _read(root, "/etc/hostname") or ""


def probe_runtimes() -> tuple[dict[str, str | None], dict[str, str]]:
    """backends.availability() plus each available runtime's version; never raises."""
    try:
        import backends
    except Exception as exc:  # a broken checkout must not stop a node from reporting
        return {"*": f"backends not importable: {exc}"}, {}
    try:
        avail = backends.availability()
    except Exception as exc:
        return {"*": f"availability() failed: {exc}"}, {}
    versions: dict[str, str] = {}
    for name, reason in avail.items():
        if reason is None:
            try:
                versions[name] = str(backends.get(name).version())
            except Exception as exc:
                versions[name] = f"unknown ({exc})"
    return avail, versions


def software_versions() -> dict[str, str]:
    found = {"Python": _platform.python_version()}
    for key, dist in _SOFTWARE.items():
        try:
            found[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


# ------------------------------------------------------------------------ classification


def _is_milan(vendor: str, blocks: list[dict[str, str]], model: str) -> bool:
    if re.search(r"AMD EPYC 7\d\d3", model):
        return True
    # VMs often mask the name to "AMD EPYC": Zen 3 server parts are family 25, models 0-15.
    first = blocks[0] if blocks else {}
    return (vendor == "AuthenticAMD" and "EPYC" in model and first.get("cpu family") == "25"
            and first.get("model", "").isdigit() and int(first["model"]) < 16)


def classify(*, arch: str, cpu_vendor: str, cpu_model: str, board: str | None,
             tegra: bool, accelerators: list[dict[str, Any]],
             blocks: list[dict[str, str]] | None = None) -> str:
    board = board or ""
    kinds = {a["kind"] for a in accelerators}
    if "Raspberry Pi 4" in board:
        return "rpi4-coral" if "edgetpu" in kinds else "rpi4"
    if tegra and "Nano" in board and "Orin" not in board:
        return "jetson-nano"
    # only GPUs nvidia-smi lists; a Tegra without nvidia-smi (JetPack < 6) stays aarch64
    if any(a.get("source") == "nvidia-smi" for a in accelerators):
        return "nvidia-generic"
    if arch in ("x86_64", "amd64", "AMD64"):
        return "milan" if _is_milan(cpu_vendor, blocks or [], cpu_model) else "x8664"
    if arch.startswith(("aarch64", "arm")):
        return "aarch64"
    return arch or "unknown"


def check_platform_name(name: str, conf_dir: Path | None = None) -> str:
    """A --platform override must be a known platform or have a conf/platform YAML."""
    if name in KNOWN_PLATFORMS or ((conf_dir or CONF_DIR) / f"{name}.yaml").is_file():
        if not re.fullmatch(r"[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?", name):
            raise ValueError(f"platform {name!r} is not a valid Ray label value")
        return name
    raise ValueError(f"unknown platform {name!r}; known: {', '.join(KNOWN_PLATFORMS)} "
                     f"(or add conf/platform/{name}.yaml)")


def detect(override: str | None = None, *, root: str | os.PathLike = "/",
           path: str | None = None, runtimes: bool = True) -> NodeFacts:
    """Facts about this node. ``override`` (``--platform``) replaces only the platform name;
    ``root`` prefixes every file read; ``path`` is the PATH searched for commands;
    ``runtimes=False`` skips importing the runtime backends (fast unit tests)."""
    blocks, extra = read_cpuinfo(root)
    arch = _arch(root, blocks, extra)
    vendor = blocks[0].get("vendor_id") or blocks[0].get("CPU implementer", "") if blocks else ""
    model = _cpu_model(blocks, extra)
    sockets, per_socket = _topology(blocks)
    board = read_device_tree_model(root) or _read(root, "/sys/class/dmi/id/product_name")
    tegra_release = _read(root, "/etc/nv_tegra_release")
    accelerators = read_nvidia_gpus(path)
    if tegra_release is not None and not accelerators:
        # Tegra's integrated GPU is not listed by nvidia-smi (absent on JetPack 4)
        name = ("NVIDIA Tegra X1 Maxwell GPU (128 CUDA cores, integrated)"
                if "Nano" in (board or "") else "NVIDIA Tegra integrated GPU")
        accelerators.append({"kind": "gpu", "vendor": "NVIDIA", "name": name,
                             "memory": "shared with host", "interconnect": "integrated",
                             "source": "nv_tegra_release"})
    accelerators += read_edgetpus(root)
    governor, freq = read_cpufreq(root)
    if not freq and blocks and blocks[0].get("cpu MHz"):
        freq = {"cur": float(blocks[0]["cpu MHz"])}
    cores = len(blocks)
    if not cores:
        online = _read(root, "/sys/devices/system/cpu/online") or ""
        cores = sum(int(b) - int(a) + 1 if b else 1
                    for a, _, b in (r.partition("-") for r in online.split(",") if r))
    real = Path(root).resolve() == Path("/")
    if not cores and real:
        cores = os.cpu_count() or 0
    avail, versions = probe_runtimes() if runtimes else ({}, {})
    detected = classify(arch=arch, cpu_vendor=vendor, cpu_model=model, board=board,
                        tegra=tegra_release is not None, accelerators=accelerators,
                        blocks=blocks)
    chosen = detected if override in (None, "", "auto") else check_platform_name(override)
    return NodeFacts(
        platform=chosen, detected_platform=detected, arch=arch, cpu_model=model,
        cores=cores, hostname=_hostname(root), cpu_vendor=vendor, sockets=sockets,
        cores_per_socket=per_socket,
        cpus_usable=len(os.sched_getaffinity(0)) if real and hasattr(os, "sched_getaffinity")
        else None,
        memory_gib=read_meminfo_gib(root), os=read_os(root),
        kernel=_read(root, "/proc/sys/kernel/osrelease") or "",
        board=board, tegra_release=tegra_release, accelerators=accelerators,
        governor=governor, cpu_freq_mhz=freq, cpu_caches=read_caches(root),
        throttled=read_throttled(path), storage=read_storage(root),
        network=read_network(root), runtimes=avail, runtime_versions=versions,
        software=software_versions(),
    )


# ------------------------------------------------------------------------ platform config


def load_platform_config(name: str, conf_dir: Path | None = None) -> dict[str, Any]:
    """conf/platform/<name>.yaml as a dict (keys: name, tvm_target, threads, runtimes,
    system_type)."""
    import yaml

    path = (conf_dir or CONF_DIR) / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no platform config {path}")
    with open(path) as f:
        return yaml.safe_load(f)


def resolve_platform_config(cfg: dict[str, Any], facts: NodeFacts | None = None,
                            conf_dir: Path | None = None) -> dict[str, Any]:
    """``platform=auto`` becomes the detected platform's config; others pass through."""
    if cfg.get("name") != "auto":
        return dict(cfg)
    facts = facts or detect(runtimes=False)
    return load_platform_config(facts.platform, conf_dir)


# ------------------------------------------------------------------------ MLPerf system JSON

SYSTEM_KEYS = (
    "division", "submitter", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
    "host_memory_capacity", "host_storage_capacity", "host_storage_type",
    "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "framework", "operating_system", "system_type", "other_software_stack",
    "host_processor_frequency", "host_processor_caches", "host_memory_configuration",
    "host_processor_interconnect", "host_networking", "host_networking_topology",
    "accelerator_frequency", "accelerator_host_interconnect", "accelerator_interconnect",
    "accelerator_interconnect_topology", "accelerator_memory_configuration",
    "accelerator_on-chip_memories", "cooling", "hw_notes", "sw_notes",
    "host_network_card_count", "system_type_detail",
)
# The checker (v6.1) fails these when empty ("requires a meaningful response").
SYSTEM_KEYS_NON_EMPTY = (
    "division", "submitter", "system_type", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
    "host_memory_capacity", "host_memory_configuration", "host_storage_capacity",
    "host_storage_type", "host_networking", "host_network_card_count",
    "host_networking_topology", "accelerators_per_node", "accelerator_model_name",
    "accelerator_memory_capacity", "accelerator_host_interconnect",
    "accelerator_memory_configuration", "accelerator_interconnect", "cooling", "framework",
    "operating_system", "other_software_stack",
)
# "N/A" = not applicable (e.g. accelerator fields of a CPU system); "unknown" = a value the
# node cannot see (cooling, DIMM layout): override it for a real submission.
NA, UNKNOWN = "N/A", "unknown"

# Board facts no file on the node states.
_BOARD_FACTS: dict[str, dict[str, str]] = {
    "rpi4": {"host_memory_configuration": "LPDDR4-3200 SDRAM (on board)",
             "system_type_detail": "single-board computer"},
    "jetson-nano": {"host_memory_configuration": "64-bit LPDDR4-3200, shared with the GPU",
                    "system_type_detail": "embedded module (developer kit)",
                    "accelerator_frequency": "921 MHz",
                    "accelerator_memory_configuration": "LPDDR4, shared with the CPU"},
    "milan": {"system_type_detail": "server"},
}
_BOARD_FACTS["rpi4-coral"] = dict(_BOARD_FACTS["rpi4"])
_EDGETPU_FACTS = {"accelerator_memory_capacity": "8 MB on-chip SRAM",
                  "accelerator_memory_configuration": "on-chip SRAM",
                  "accelerator_on-chip_memories": "8 MB SRAM",
                  "accelerator_frequency": "500 MHz"}
VALID_STATUS = ("available", "preview", "rdi")
VALID_DIVISIONS = ("open", "closed", "network")


def _gb(gib: float) -> str:
    return f"{max(1, round(gib))} GB" if gib >= 0.75 else f"{round(gib * 1024)} MB"


def _framework(facts: NodeFacts) -> str:
    parts = [f"{_RUNTIME_NAMES.get(n, n)} {v}" for n, v in facts.runtime_versions.items()]
    return ", ".join(parts) or UNKNOWN


def system_description(facts: NodeFacts, overrides: dict[str, Any] | None = None, *,
                       division: str | None = None, submitter: str | None = None,
                       status: str | None = None,
                       platform_config: dict[str, Any] | None = None) -> dict[str, str]:
    """The MLPerf ``systems/<system>.json`` for a one-node system described by ``facts``.

    ``overrides`` may set any of the 35 keys (unknown keys are an error: a typo would
    otherwise vanish); ``division``/``submitter``/``status`` arguments win over it.
    """
    ov = dict(overrides or {})
    unknown = set(ov) - set(SYSTEM_KEYS)
    if unknown:
        raise KeyError(f"unknown system description key(s): {sorted(unknown)}")
    division = division or ov.pop("division", None) or "open"
    submitter = submitter or ov.pop("submitter", None)
    status = status or ov.pop("status", None) or "available"
    if not submitter:
        raise ValueError("submitter is required (it must match the submission folder name)")
    if division not in VALID_DIVISIONS:
        raise ValueError(f"division {division!r}; one of {VALID_DIVISIONS}")
    if status not in VALID_STATUS:
        raise ValueError(f"status {status!r}; one of {VALID_STATUS}")
    if platform_config is None:
        try:
            platform_config = load_platform_config(facts.platform)
        except FileNotFoundError:
            platform_config = {}
    board = _BOARD_FACTS.get(facts.platform, {})

    freq = facts.cpu_freq_mhz
    freq_text = (f"{freq['max']:.0f} MHz (max)" if "max" in freq
                 else f"{freq['cur']:.0f} MHz" if "cur" in freq else UNKNOWN)
    nics = facts.network
    networking = ", ".join(sorted({n["kind"] for n in nics})) or "none"

    accs = facts.accelerators
    desc: dict[str, str] = {
        "division": division, "submitter": submitter, "status": status,
        "system_name": facts.board or f"{facts.cpu_model} ({facts.platform})",
        "number_of_nodes": "1",
        "host_processor_model_name": facts.cpu_model or UNKNOWN,
        "host_processors_per_node": str(facts.sockets or 1),
        "host_processor_core_count": str(facts.cores_per_socket or facts.cores or UNKNOWN),
        "host_memory_capacity": _gb(facts.memory_gib) if facts.memory_gib else UNKNOWN,
        "host_storage_capacity": (f"{facts.storage['capacity_gb']} GB"
                                  if facts.storage.get("capacity_gb") else UNKNOWN),
        "host_storage_type": facts.storage.get("type") or UNKNOWN,
        "framework": _framework(facts),
        "operating_system": " ".join(x for x in (facts.os, facts.kernel and
                                                 f"(Linux {facts.kernel})") if x) or UNKNOWN,
        "system_type": str(platform_config.get("system_type") or "edge"),
        "other_software_stack": ", ".join(f"{k} {v}" for k, v in facts.software.items())
        or UNKNOWN,
        "host_processor_frequency": freq_text,
        "host_processor_caches": ", ".join(f"{k} {v}" for k, v in facts.cpu_caches.items())
        or NA,
        "host_memory_configuration": board.get("host_memory_configuration", UNKNOWN),
        "host_processor_interconnect": NA if (facts.sockets or 1) == 1 else UNKNOWN,
        "host_networking": networking,
        "host_networking_topology": "N/A (single node)",
        "host_network_card_count": str(len(nics)),
        "cooling": UNKNOWN,
        "hw_notes": "; ".join(x for x in (
            f"platform {facts.platform}" + (f" (detected {facts.detected_platform})"
                                            if facts.overridden else ""),
            f"CPU governor {facts.governor}" if facts.governor else "",
            f"throttled={facts.throttled['raw']}" if facts.throttled else "",
        ) if x),
        "sw_notes": "Measured with MLPerf LoadGen; configurations searched by tuner "
                    "(Optuna + Ray)",
        "system_type_detail": board.get("system_type_detail", NA),
    }
    if accs:
        names = sorted({a["name"] for a in accs})
        first = accs[0]
        tpu = first["kind"] == "edgetpu"
        desc.update({
            "accelerators_per_node": str(len(accs)),
            "accelerator_model_name": " + ".join(names),
            "accelerator_memory_capacity": (_EDGETPU_FACTS["accelerator_memory_capacity"] if tpu
                                            else first.get("memory") or UNKNOWN),
            "accelerator_host_interconnect": first.get("interconnect") or UNKNOWN,
            "accelerator_interconnect": NA if len(accs) == 1 else UNKNOWN,
            "accelerator_interconnect_topology": NA if len(accs) == 1 else UNKNOWN,
            "accelerator_memory_configuration": (
                _EDGETPU_FACTS["accelerator_memory_configuration"] if tpu
                else board.get("accelerator_memory_configuration", UNKNOWN)),
            "accelerator_frequency": (_EDGETPU_FACTS["accelerator_frequency"] if tpu
                                      else board.get("accelerator_frequency", UNKNOWN)),
            "accelerator_on-chip_memories": (_EDGETPU_FACTS["accelerator_on-chip_memories"]
                                             if tpu else UNKNOWN),
        })
    else:
        # a CPU system: the checker wants the string "0" (an int 0 reads as empty)
        desc.update({k: NA for k in (
            "accelerator_model_name", "accelerator_memory_capacity",
            "accelerator_host_interconnect", "accelerator_interconnect",
            "accelerator_interconnect_topology", "accelerator_memory_configuration",
            "accelerator_frequency", "accelerator_on-chip_memories")})
        desc["accelerators_per_node"] = "0"
    desc.update({k: str(v) for k, v in ov.items()})
    for key in SYSTEM_KEYS_NON_EMPTY:
        if not desc.get(key):
            raise ValueError(f"system description field {key!r} must not be empty")
    return {k: desc[k] for k in SYSTEM_KEYS}


__all__ = ["KNOWN_PLATFORMS", "NodeFacts", "SYSTEM_KEYS", "SYSTEM_KEYS_NON_EMPTY",
           "check_platform_name", "classify", "detect", "load_platform_config",
           "resolve_platform_config", "system_description"]
