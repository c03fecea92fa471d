"""What this node is: platform name, CPU, memory, OS, accelerators, runtimes.

``detect()`` reads the same files the kernel exposes (``tuner.machine.hardware``: ``/proc/cpuinfo``,
``/proc/device-tree/model``, ``/sys/...``, ``/etc/os-release``) under a ``root`` that
defaults to ``/``, so tests feed fake trees from ``tmp_path``. Commands (``nvidia-smi``,
``vcgencmd``) are looked up on ``PATH`` (tests put fake scripts there).

The platform name is what Ray labels a node with (``platform=<name>``) and what a trial
asks for; ``conf/platform/<name>.yaml`` holds its defaults. Detection order, first match
wins: ``rpi4-coral`` / ``rpi4`` (device-tree model), ``jetson-nano`` (Tegra + model),
``nvidia-generic`` (nvidia-smi lists a GPU: the GPU is then the device under test),
``milan`` (AMD EPYC 7xx3), ``x8664``, ``aarch64`` (any other ARM). A node whose CPU is
emulated (``tuner.machine.emulation``: qemu-user) gets ``-emulated`` after its name, detected
or given (``rpi4-emulated``): its trials never pass for the device's, and it takes the base
platform's ``conf/platform`` YAML.

The facts are plain data (``NodeFacts.to_dict()``) recorded with each trial; the MLPerf
system JSON is made from that dict by ``experiments.system_json``, never by re-detecting.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform as _platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments import emulated as emulated_records
from tuner.machine.emulation import read_emulation
from tuner.machine.hardware import (cpu_model_name, cpu_topology, read_arch, read_caches, read_cpufreq,
                            read_cpuinfo, read_device_tree_model, read_edgetpus, read_file,
                            read_hostname, read_meminfo_gib, read_network, read_nvidia_gpus,
                            read_os, read_storage, read_throttled)

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "platform"

KNOWN_PLATFORMS = ("milan", "x8664", "rpi4", "rpi4-coral", "jetson-nano", "nvidia-generic",
                   "aarch64")
EMULATED_SUFFIX = emulated_records.SUFFIX  # one spelling for the node, reports and packer

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
    cpu_affinity: list[int] | None = None   # which CPUs those are (a node agent's --cpus)
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
    emulated: bool = False           # the CPU is emulated (detected): latencies are not real
    emulation: dict[str, Any] | None = None  # host_arch, translator, the signal that said so

    @property
    def overridden(self) -> bool:
        return self.platform != self.detected_platform

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeFacts:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})



# ------------------------------------------------------------------------ probes


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


def base_platform(name: str) -> str:
    """The platform an emulated one stands in for (``rpi4-emulated`` -> ``rpi4``)."""
    return name.removesuffix(EMULATED_SUFFIX)


def check_platform_name(name: str, conf_dir: Path | None = None) -> str:
    """A --platform override must be a known platform or have a conf/platform YAML."""
    base = base_platform(name)
    if base in KNOWN_PLATFORMS or ((conf_dir or CONF_DIR) / f"{base}.yaml").is_file():
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
    arch = read_arch(root, blocks, extra)
    vendor = blocks[0].get("vendor_id") or blocks[0].get("CPU implementer", "") if blocks else ""
    model = cpu_model_name(blocks, extra)
    sockets, per_socket = cpu_topology(blocks)
    board = read_device_tree_model(root) or read_file(root, "/sys/class/dmi/id/product_name")
    tegra_release = read_file(root, "/etc/nv_tegra_release")
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
        online = read_file(root, "/sys/devices/system/cpu/online") or ""
        cores = sum(int(b) - int(a) + 1 if b else 1
                    for a, _, b in (r.partition("-") for r in online.split(",") if r))
    real = Path(root).resolve() == Path("/")
    if not cores and real:
        cores = os.cpu_count() or 0
    affinity = sorted(os.sched_getaffinity(0)) if real and hasattr(os, "sched_getaffinity") \
        else None
    avail, versions = probe_runtimes() if runtimes else ({}, {})
    detected = classify(arch=arch, cpu_vendor=vendor, cpu_model=model, board=board,
                        tegra=tegra_release is not None, accelerators=accelerators,
                        blocks=blocks)
    chosen = detected if override in (None, "", "auto") else check_platform_name(override)
    emulation = read_emulation(root, arch)
    if emulation is not None:  # no name, detected or given, hides it
        detected, chosen = (n if n.endswith(EMULATED_SUFFIX) else n + EMULATED_SUFFIX
                            for n in (detected, chosen))
    return NodeFacts(
        platform=chosen, detected_platform=detected, arch=arch, cpu_model=model,
        cores=cores, hostname=read_hostname(root), cpu_vendor=vendor, sockets=sockets,
        cores_per_socket=per_socket,
        cpus_usable=len(affinity) if affinity else None, cpu_affinity=affinity,
        memory_gib=read_meminfo_gib(root), os=read_os(root),
        kernel=read_file(root, "/proc/sys/kernel/osrelease") or "",
        board=board, tegra_release=tegra_release, accelerators=accelerators,
        governor=governor, cpu_freq_mhz=freq, cpu_caches=read_caches(root),
        throttled=read_throttled(path), storage=read_storage(root),
        network=read_network(root), runtimes=avail, runtime_versions=versions,
        software=software_versions(), emulated=emulation is not None, emulation=emulation,
    )


# ------------------------------------------------------------------------ platform config


def load_platform_config(name: str, conf_dir: Path | None = None) -> dict[str, Any]:
    """conf/platform/<name>.yaml as a dict (keys: name, tvm_target, threads, runtimes,
    system_type); an emulated platform takes its base platform's, under its own name."""
    import yaml

    path = (conf_dir or CONF_DIR) / f"{base_platform(name)}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no platform config {path}")
    with open(path) as f:
        conf = yaml.safe_load(f)
    return {**conf, "name": name} if name != base_platform(name) else conf


__all__ = ["EMULATED_SUFFIX", "KNOWN_PLATFORMS", "NodeFacts", "base_platform",
           "check_platform_name", "classify", "detect",
           "load_platform_config"]
