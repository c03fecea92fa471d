"""Platform detection on fake /proc, /sys and /etc trees (no real hardware needed)."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from experiments import system_json
from tuner.machine import platforms
from tuner.machine.platforms import NodeFacts, detect

CONF = Path(__file__).resolve().parents[1] / "conf" / "platform"

X86_BLOCK = """processor\t: {n}
vendor_id\t: {vendor}
cpu family\t: {family}
model\t\t: {model}
model name\t: {name}
cpu MHz\t\t: 2445.424
physical id\t: 0
cpu cores\t: {cores}
flags\t\t: fpu sse sse2 avx2
"""

ARM_BLOCK = """processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: {part}
CPU revision\t: 3
"""


def system_description(f: NodeFacts, overrides: dict | None = None, **kw: str) -> dict:
    """As the packer does: the recorded facts dict, the platform's MLPerf category."""
    kind = platforms.load_platform_config(f.platform)["system_type"]
    return system_json.system_description(f.to_dict(), overrides, system_type=kind, **kw)


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def script(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def common(root: Path, *, os_name: str, mem_kb: int, hostname: str) -> None:
    write(root, "/proc/meminfo", f"MemTotal:       {mem_kb} kB\nMemFree:  1000 kB\n")
    write(root, "/etc/os-release", f'NAME="x"\nPRETTY_NAME="{os_name}"\nID=x\n')
    write(root, "/proc/sys/kernel/osrelease", "6.1.0-test\n")
    write(root, "/proc/sys/kernel/hostname", hostname + "\n")


def x86_tree(root: Path, name: str, *, vendor: str = "AuthenticAMD", family: int = 25,
             model: int = 1, cpus: int = 4, cores: int = 64) -> Path:
    write(root, "/proc/cpuinfo", "\n".join(
        X86_BLOCK.format(n=i, vendor=vendor, family=family, model=model, name=name, cores=cores)
        for i in range(cpus)))
    common(root, os_name="Ubuntu 24.04.1 LTS", mem_kb=263_999_000, hostname="server1")
    cpufreq = "/sys/devices/system/cpu/cpu0/cpufreq/"
    write(root, cpufreq + "scaling_governor", "performance\n")
    write(root, cpufreq + "scaling_cur_freq", "2450000\n")
    write(root, cpufreq + "cpuinfo_max_freq", "3529000\n")
    write(root, cpufreq + "cpuinfo_min_freq", "1500000\n")
    for idx, (level, kind, size) in enumerate([("1", "Data", "32K"), ("1", "Instruction", "32K"),
                                               ("2", "Unified", "512K"),
                                               ("3", "Unified", "32768K")]):
        base = f"/sys/devices/system/cpu/cpu0/cache/index{idx}/"
        write(root, base + "level", level)
        write(root, base + "type", kind)
        write(root, base + "size", size)
    write(root, "/sys/block/nvme0n1/size", str(1_000_000_000_000 // 512))
    write(root, "/sys/block/loop0/size", "100")
    write(root, "/sys/class/net/eth0/device/vendor", "0x8086")
    write(root, "/sys/class/net/eth0/speed", "10000")
    write(root, "/sys/class/net/lo/operstate", "unknown")
    return root


def rpi4_tree(root: Path) -> Path:
    write(root, "/proc/cpuinfo", "\n".join(ARM_BLOCK.format(n=i, part="0xd08") for i in range(4))
          + "\nHardware\t: BCM2835\nRevision\t: d03114\nSerial\t\t: 10000000abcdef\n"
            "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
    write(root, "/proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\x00")
    common(root, os_name="Debian GNU/Linux 12 (bookworm)", mem_kb=7_998_000, hostname="pi4")
    write(root, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "ondemand\n")
    write(root, "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "1800000\n")
    write(root, "/sys/block/mmcblk0/size", str(64_000_000_000 // 512))
    write(root, "/sys/block/mmcblk0/device/type", "SD")
    write(root, "/sys/class/net/eth0/device/x", "")
    write(root, "/sys/class/net/wlan0/device/x", "")
    write(root, "/sys/class/net/wlan0/wireless/x", "")
    return root


@pytest.fixture
def empty_path(tmp_path: Path) -> str:
    (tmp_path / "emptybin").mkdir()
    return str(tmp_path / "emptybin")


def test_milan_cpuinfo(tmp_path: Path, empty_path: str) -> None:
    root = x86_tree(tmp_path / "root", "AMD EPYC 7763 64-Core Processor")
    f = detect(root=root, path=empty_path, runtimes=False)
    assert f.platform == f.detected_platform == "milan"
    assert f.arch == "x86_64"
    assert f.cpu_model == "AMD EPYC 7763 64-Core Processor"
    assert (f.cores, f.sockets, f.cores_per_socket) == (4, 1, 64)
    assert f.memory_gib == pytest.approx(251.77, abs=0.01)
    assert f.os == "Ubuntu 24.04.1 LTS" and f.kernel == "6.1.0-test"
    assert f.hostname == "server1"
    assert f.governor == "performance"
    assert f.cpu_freq_mhz == {"cur": 2450.0, "min": 1500.0, "max": 3529.0}
    assert f.cpu_caches == {"L1d": "32K", "L1i": "32K", "L2": "512K", "L3": "32768K"}
    assert f.storage == {"capacity_gb": 1000, "type": "NVMe SSD"}
    assert f.network == [{"name": "eth0", "kind": "Ethernet", "speed_mbps": 10000}]
    assert f.accelerators == [] and f.throttled is None


@pytest.mark.parametrize("name,vendor,family,model,expected", [
    ("AMD EPYC 7413 24-Core Processor", "AuthenticAMD", 25, 1, "milan"),
    ("AMD EPYC", "AuthenticAMD", 25, 1, "milan"),             # VM-masked name, Zen 3 server
    ("AMD EPYC 9654 96-Core Processor", "AuthenticAMD", 25, 17, "x8664"),   # Genoa
    ("AMD EPYC 7742 64-Core Processor", "AuthenticAMD", 23, 49, "x8664"),   # Rome
    ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "GenuineIntel", 6, 106, "x8664"),
])
def test_x86_classification(tmp_path: Path, empty_path: str, name: str, vendor: str,
                            family: int, model: int, expected: str) -> None:
    root = x86_tree(tmp_path / "root", name, vendor=vendor, family=family, model=model)
    assert detect(root=root, path=empty_path, runtimes=False).platform == expected


def test_rpi4_device_tree_and_throttling(tmp_path: Path) -> None:
    root = rpi4_tree(tmp_path / "root")
    bin_dir = tmp_path / "bin"
    script(bin_dir, "vcgencmd", 'test "$1" = get_throttled && echo "throttled=0x50005"')
    f = detect(root=root, path=str(bin_dir), runtimes=False)
    assert f.platform == "rpi4"
    assert f.arch == "aarch64"
    assert f.board == "Raspberry Pi 4 Model B Rev 1.4"   # NUL stripped
    assert f.cpu_model == "ARM Cortex-A72"
    assert (f.cores, f.cores_per_socket) == (4, 4)
    assert f.governor == "ondemand" and f.cpu_freq_mhz == {"max": 1800.0}
    assert f.throttled == {"raw": "0x50005", "value": 0x50005,
                           "flags": ["under-voltage", "throttled", "under-voltage-occurred",
                                     "throttling-occurred"]}
    assert f.storage["type"] == "microSD card"
    assert sorted(n["kind"] for n in f.network) == ["Ethernet", "Wi-Fi"]
    assert f.accelerators == []


@pytest.mark.parametrize("variant", ["usb-unprovisioned", "usb-google", "pcie", "library"])
def test_rpi4_coral(tmp_path: Path, empty_path: str, variant: str) -> None:
    root = rpi4_tree(tmp_path / "root")
    usb = "/sys/bus/usb/devices/2-1/"
    write(root, "/sys/bus/usb/devices/1-1/idVendor", "2109\n")   # an unrelated USB hub
    write(root, "/sys/bus/usb/devices/1-1/idProduct", "3431\n")
    if variant == "usb-unprovisioned":
        write(root, usb + "idVendor", "1a6e\n")
        write(root, usb + "idProduct", "089a\n")
        write(root, usb + "speed", "5000\n")
    elif variant == "usb-google":
        write(root, usb + "idVendor", "18d1\n")
        write(root, usb + "idProduct", "9302\n")
        write(root, usb + "speed", "480\n")
    elif variant == "pcie":
        write(root, "/dev/apex_0", "")
    else:
        write(root, "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1", "")
    f = detect(root=root, path=empty_path, runtimes=False)
    assert f.platform == "rpi4-coral"
    assert len(f.accelerators) == 1 and f.accelerators[0]["kind"] == "edgetpu"
    expected = {"usb-unprovisioned": "USB 3.0", "usb-google": "USB 2.0", "pcie": "PCIe",
                "library": "unknown"}[variant]
    assert f.accelerators[0]["interconnect"] == expected


def test_rpi4_without_coral_ignores_other_google_usb(tmp_path: Path, empty_path: str) -> None:
    root = rpi4_tree(tmp_path / "root")
    write(root, "/sys/bus/usb/devices/2-1/idVendor", "18d1\n")   # a Google phone, not a TPU
    write(root, "/sys/bus/usb/devices/2-1/idProduct", "4ee7\n")
    assert detect(root=root, path=empty_path, runtimes=False).platform == "rpi4"


def jetson_tree(root: Path, model: str, part: str = "0xd07") -> Path:
    write(root, "/proc/cpuinfo", "\n".join(ARM_BLOCK.format(n=i, part=part) for i in range(4)))
    write(root, "/proc/device-tree/model", model + "\x00")
    write(root, "/etc/nv_tegra_release",
          "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64\n")
    common(root, os_name="Ubuntu 18.04.6 LTS", mem_kb=4_051_000, hostname="nano")
    return root


def test_jetson_nano(tmp_path: Path, empty_path: str) -> None:
    root = jetson_tree(tmp_path / "root", "NVIDIA Jetson Nano Developer Kit")
    f = detect(root=root, path=empty_path, runtimes=False)
    assert f.platform == "jetson-nano"
    assert f.cpu_model == "ARM Cortex-A57"
    assert f.tegra_release and f.tegra_release.startswith("# R32")
    assert [a["kind"] for a in f.accelerators] == ["gpu"]
    assert "Maxwell" in f.accelerators[0]["name"]
    desc = system_description(f, submitter="Org")
    assert desc["accelerators_per_node"] == "1" and desc["system_type"] == "edge"


def test_jetson_orin_nano_is_not_a_nano(tmp_path: Path, empty_path: str) -> None:
    root = jetson_tree(tmp_path / "root", "NVIDIA Jetson Orin Nano Developer Kit", part="0xd42")
    assert detect(root=root, path=empty_path, runtimes=False).platform == "aarch64"


def test_nvidia_generic_via_fake_nvidia_smi_on_path(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = x86_tree(tmp_path / "root", "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
                    vendor="GenuineIntel", family=6, model=106)
    bin_dir = tmp_path / "bin"
    script(bin_dir, "nvidia-smi",
           'case "$*" in *--query-gpu=name,memory.total*--format=csv,noheader*) '
           'echo "NVIDIA A100-SXM4-40GB, 40960 MiB"; echo "NVIDIA A100-SXM4-40GB, 40960 MiB";; '
           '*) exit 9;; esac')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    f = detect(root=root, runtimes=False)   # found on PATH
    assert f.platform == "nvidia-generic"
    assert [a["name"] for a in f.accelerators] == ["NVIDIA A100-SXM4-40GB"] * 2
    assert f.accelerators[0]["memory"] == "40960 MiB"
    desc = system_description(f, submitter="Org")
    assert desc["accelerators_per_node"] == "2"
    assert desc["accelerator_model_name"] == "NVIDIA A100-SXM4-40GB"
    assert desc["accelerator_memory_capacity"] == "40960 MiB"
    assert desc["system_type"] == "datacenter"


def test_nvidia_smi_without_gpu_is_not_nvidia(tmp_path: Path) -> None:
    root = x86_tree(tmp_path / "root", "Intel(R) Core(TM) i7-8700", vendor="GenuineIntel",
                    family=6, model=158)
    bin_dir = tmp_path / "bin"
    script(bin_dir, "nvidia-smi", 'echo "No devices were found"; exit 6')
    f = detect(root=root, path=str(bin_dir), runtimes=False)
    assert f.platform == "x8664" and f.accelerators == []


def test_override_keeps_other_facts(tmp_path: Path, empty_path: str) -> None:
    root = x86_tree(tmp_path / "root", "AMD EPYC 7763 64-Core Processor")
    plain = detect(root=root, path=empty_path, runtimes=False)
    forced = detect("rpi4-coral", root=root, path=empty_path, runtimes=False)
    assert forced.platform == "rpi4-coral" and forced.detected_platform == "milan"
    assert forced.overridden and not plain.overridden
    a, b = plain.to_dict(), forced.to_dict()
    a.pop("platform"), b.pop("platform")
    assert a == b
    assert detect("auto", root=root, path=empty_path, runtimes=False).platform == "milan"
    with pytest.raises(ValueError, match="unknown platform"):
        detect("pdp11", root=root, path=empty_path, runtimes=False)


def test_facts_round_trip_json(tmp_path: Path, empty_path: str) -> None:
    f = detect(root=rpi4_tree(tmp_path / "root"), path=empty_path, runtimes=False)
    again = NodeFacts.from_dict(json.loads(json.dumps(f.to_dict())))
    assert again == f


def test_runtimes_from_backends(tmp_path: Path, empty_path: str) -> None:
    import backends

    f = detect(root=rpi4_tree(tmp_path / "root"), path=empty_path)
    assert set(f.runtimes) == set(backends.names())
    assert f.runtimes == backends.availability()
    # a version for each available runtime, none for the others
    assert set(f.runtime_versions) == {n for n, why in f.runtimes.items() if why is None}
    assert f.software["Python"] and "Ray" in f.software


def test_real_node_smoke() -> None:
    f = detect(runtimes=False)
    assert f.platform in platforms.KNOWN_PLATFORMS and f.cores >= 1 and f.memory_gib > 0
    json.dumps(f.to_dict())


# ----------------------------------------------------------------------- system description


def test_system_description_cpu(tmp_path: Path, empty_path: str) -> None:
    f = detect(root=x86_tree(tmp_path / "root", "AMD EPYC 7763 64-Core Processor"),
               path=empty_path, runtimes=False)
    f.runtime_versions = {"onnxruntime": "1.31.1"}
    desc = system_description(f, {"cooling": "air", "system_name": "EPYC box"},
                              division="open", submitter="MyOrg")
    assert list(desc) == list(system_json.SYSTEM_KEYS) and len(desc) == 35
    assert len(system_json.SYSTEM_KEYS_NON_EMPTY) == 26
    assert all(isinstance(v, str) for v in desc.values())
    assert all(desc[k] for k in system_json.SYSTEM_KEYS_NON_EMPTY)
    assert desc["accelerators_per_node"] == "0"          # the string, not int 0
    assert desc["accelerator_model_name"] == "N/A"
    assert desc["status"] == "available" and desc["division"] == "open"
    assert desc["submitter"] == "MyOrg" and desc["system_name"] == "EPYC box"
    assert desc["system_type"] == "datacenter"           # conf/platform/milan.yaml
    assert desc["host_processor_model_name"] == "AMD EPYC 7763 64-Core Processor"
    assert desc["host_processor_core_count"] == "64"
    assert desc["host_memory_capacity"] == "252 GB"
    assert desc["host_storage_capacity"] == "1000 GB" and desc["host_storage_type"] == "NVMe SSD"
    assert desc["framework"] == "ONNX Runtime 1.31.1"
    assert desc["operating_system"].startswith("Ubuntu 24.04.1 LTS")
    assert desc["cooling"] == "air"
    assert desc["host_processor_frequency"] == "3529 MHz (max)"


def test_system_description_edge_coral(tmp_path: Path, empty_path: str) -> None:
    root = rpi4_tree(tmp_path / "root")
    write(root, "/dev/apex_0", "")
    f = detect(root=root, path=empty_path, runtimes=False)
    desc = system_description(f, {"submitter": "Org", "division": "closed"})
    assert desc["system_type"] == "edge" and desc["division"] == "closed"
    assert desc["accelerators_per_node"] == "1"
    assert "Edge TPU" in desc["accelerator_model_name"]
    assert desc["accelerator_host_interconnect"] == "PCIe"
    assert desc["host_processor_model_name"] == "ARM Cortex-A72"
    assert desc["system_name"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert all(desc[k] for k in system_json.SYSTEM_KEYS_NON_EMPTY)


def test_system_description_rejects_bad_input(tmp_path: Path, empty_path: str) -> None:
    f = detect(root=rpi4_tree(tmp_path / "root"), path=empty_path, runtimes=False)
    with pytest.raises(ValueError, match="submitter"):
        system_description(f, {})
    with pytest.raises(ValueError, match="status"):
        system_description(f, submitter="Org", status="released")
    with pytest.raises(KeyError, match="colling"):
        system_description(f, {"colling": "air"}, submitter="Org")
    with pytest.raises(ValueError, match="must not be empty"):
        system_description(f, {"cooling": ""}, submitter="Org")


# ----------------------------------------------------------------------- conf/platform


def test_platform_yamls() -> None:
    import yaml

    files = {p.stem: yaml.safe_load(p.read_text()) for p in CONF.glob("*.yaml")}
    assert set(platforms.KNOWN_PLATFORMS) | {"auto"} <= set(files)
    for name, cfg in files.items():
        # the keys every platform has (others, e.g. device_knobs, belong to the driver's tests)
        assert set(cfg) >= {"name", "tvm_target", "threads", "runtimes", "system_type"}, name
        assert cfg["name"] == name
        assert isinstance(cfg["threads"], int) and cfg["threads"] >= 0
        assert isinstance(cfg["runtimes"], list) and all(isinstance(r, str) for r in cfg["runtimes"])
        assert isinstance(cfg["tvm_target"], (str, dict))
        if name != "auto":
            assert cfg["system_type"] in ("edge", "datacenter")
        assert (CONF / f"{name}.yaml").read_text().lstrip().startswith("#"), "comment line"


def test_auto_resolves_to_the_detected_platforms_config(tmp_path: Path, empty_path: str) -> None:
    """platform=auto: the plan of the detected platform composes that platform's YAML."""
    from hydra import compose, initialize_config_dir

    from tuner.config import register
    from tuner.study.plan import platform_settings

    register()
    f = detect(root=rpi4_tree(tmp_path / "root"), path=empty_path, runtimes=False)
    with initialize_config_dir(config_dir=str(CONF.parent), version_base="1.3"):
        cfg = compose("config", overrides=["+space=mobilenet", "platform=auto"])
    settings = platform_settings(cfg, f.platform)
    assert settings.name == "rpi4" and settings.tvm_target == "raspberry-pi/4b-aarch64"
    assert settings.threads == 4 and settings.system_type == "edge"


@pytest.mark.slow  # importing TVM takes ~5 s on a shared 2-core machine
def test_tvm_targets_build() -> None:
    pytest.importorskip("tvm")
    from backends.tvm_target import resolve_target

    for name in platforms.KNOWN_PLATFORMS:
        target = platforms.load_platform_config(name)["tvm_target"]
        spec = None if target == "auto" else target   # auto: the node's own host CPU
        assert resolve_target(spec).kind.name in ("llvm", "cuda"), name
