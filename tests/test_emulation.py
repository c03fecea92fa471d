"""An emulated CPU is detected, not configured: fake /proc trees where the kernel's own
architecture (or init's ELF, or a binfmt handler) disagrees with what the process is told."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.test_platforms import rpi4_tree, write, x86_tree
from tuner.machine import platforms
from tuner.machine.emulation import elf_machine, read_emulation, runs_natively
from tuner.machine.platforms import detect


def elf(path: Path, machine: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # e_ident (16 bytes: magic, 64-bit, little-endian), e_type, e_machine
    path.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HH", 2, machine))


@pytest.fixture
def no_path(tmp_path: Path) -> str:
    (tmp_path / "bin").mkdir()
    return str(tmp_path / "bin")


def test_a_pi4_identity_on_an_x86_kernel_is_emulated(tmp_path, no_path, monkeypatch):
    root = rpi4_tree(tmp_path / "root")
    write(root, "/proc/sys/kernel/arch", "x86_64\n")
    monkeypatch.delenv("QEMU_CPU", raising=False)
    f = detect(root=root, path=no_path, runtimes=False)
    assert f.arch == "aarch64" and f.board.startswith("Raspberry Pi 4")
    assert f.emulated and f.emulation == {"host_arch": "x86_64", "translator": "qemu-user",
                                          "signal": "/proc/sys/kernel/arch"}
    # the name says it too, and an override cannot hide it
    assert f.platform == f.detected_platform == "rpi4-emulated"
    assert detect("rpi4", root=root, path=no_path, runtimes=False).platform == "rpi4-emulated"
    assert f.to_dict()["emulated"] is True
    monkeypatch.setenv("QEMU_CPU", "cortex-a72")  # the CPU qemu was told to be is said too
    assert detect(root=root, path=no_path, runtimes=False).emulation["emulated_cpu"] == \
        "cortex-a72"


def test_the_same_tree_on_an_arm_kernel_is_native(tmp_path, no_path):
    root = rpi4_tree(tmp_path / "root")
    write(root, "/proc/sys/kernel/arch", "aarch64\n")
    f = detect(root=root, path=no_path, runtimes=False)
    assert not f.emulated and f.emulation is None and f.platform == "rpi4"


def test_without_any_signal_nothing_is_claimed(tmp_path, no_path):
    f = detect(root=rpi4_tree(tmp_path / "root"), path=no_path, runtimes=False)
    assert not f.emulated and f.platform == "rpi4"


def test_init_elf_when_the_kernel_does_not_say(tmp_path):
    root = tmp_path / "root"
    elf(root / "proc/1/exe", 62)
    assert elf_machine(root / "proc/1/exe") == "x86_64"
    assert read_emulation(root, "aarch64")["signal"] == "ELF machine of /proc/1/exe"
    assert read_emulation(root, "x86_64") is None
    (root / "proc/1/exe").write_text("#!/bin/sh\n")  # not ELF: no answer from it
    assert read_emulation(root, "aarch64") is None


def test_binfmt_handler_for_the_own_arch_is_the_last_signal(tmp_path):
    root = tmp_path / "root"
    write(root, "/proc/sys/fs/binfmt_misc/qemu-aarch64",
          "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\n")
    found = read_emulation(root, "aarch64")
    assert found["translator"] == "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    assert read_emulation(root, "x86_64") is None
    write(root, "/proc/sys/fs/binfmt_misc/qemu-aarch64", "disabled\n")
    assert read_emulation(root, "aarch64") is None


@pytest.mark.parametrize("kernel,user,native", [
    ("aarch64", "armv7l", True),    # 32-bit Raspberry Pi OS on a 64-bit kernel: compat mode
    ("x86_64", "i686", True), ("arm64", "aarch64", True), ("x86_64", "aarch64", False),
    ("aarch64", "x86_64", False)])
def test_compat_modes_are_not_emulation(kernel, user, native):
    assert runs_natively(kernel, user) is native


def test_an_x86_node_is_never_emulated_on_an_x86_kernel(tmp_path, no_path):
    root = x86_tree(tmp_path / "root", "AMD EPYC 7763 64-Core Processor")
    write(root, "/proc/sys/kernel/arch", "x86_64\n")
    f = detect(root=root, path=no_path, runtimes=False)
    assert f.platform == "milan" and not f.emulated


def test_emulated_platforms_take_their_base_config():
    conf = platforms.load_platform_config("rpi4-emulated")
    assert conf["name"] == "rpi4-emulated"
    assert {k: v for k, v in conf.items() if k != "name"} == \
        {k: v for k, v in platforms.load_platform_config("rpi4").items() if k != "name"}
    assert platforms.check_platform_name("aarch64-emulated") == "aarch64-emulated"
    with pytest.raises(ValueError, match="unknown platform"):
        platforms.check_platform_name("pdp11-emulated")


def test_this_machine_is_not_emulated():
    assert not detect(runtimes=False).emulated


# ------------------------------------------------------------- what records and reports do

def record(platform: str, emulated: bool, latency: float, trial: int = 0) -> dict:
    system = {"arch": "aarch64" if emulated else "x86_64", "emulated": emulated}
    if emulated:
        system["facts"] = {"emulated": True, "emulation": {"host_arch": "x86_64",
                                                         "translator": "qemu-user"}}
    return {"platform": platform, "system": json.dumps(system), "fidelity": "short",
            "scenario": "SingleStream", "objective": "latency_ms", "latency_ms": latency,
            "accuracy": 0.5, "state": "ok", "trial": trial, "backend": "onnxruntime",
            "model": "m", "study": "s", "cause": "", "accuracy_source": "measured"}


def test_the_packer_refuses_an_emulated_measurement(tmp_path):
    from experiments.promoted_result import Result, refusals

    row = {**record("rpi4-emulated", True, 175.0), "fidelity": "compliant"}
    res = Result(row, {}, json.loads(row["system"]), tmp_path, "resnet", None, {})
    rules = dict(refusals(res))
    assert "qemu-user on x86_64" in rules["system.emulated"]
    native = {**record("x8664", False, 0.4), "fidelity": "compliant"}
    assert "system.emulated" not in dict(refusals(
        Result(native, {}, json.loads(native["system"]), tmp_path, "resnet", None, {})))


def test_reports_never_set_emulated_latencies_beside_native_ones():
    from experiments import compare, fleet_report, report_html
    from experiments.emulated import is_emulated

    rows = [record("x8664", False, 0.4), record("milan", False, 0.3),
            record("rpi4-emulated", True, 175.0)]
    assert [is_emulated(r) for r in rows] == [False, False, True]
    assert set(fleet_report.platform_fronts(rows)) == {"milan", "x8664"}
    other = compare.OtherFront("run", "s", "rpi4-emulated", "latency_ms", [rows[2]])
    assert compare.matching([other], "x8664", "latency_ms", other.metric) == []
    assert compare.matching([other], "aarch64-emulated", "latency_ms", other.metric)
    assert "EMULATED CPU" in report_html.scenario_note([rows[2]], "latency_ms")
    assert "EMULATED" not in report_html.scenario_note([rows[0]], "latency_ms")


# ------------------------------------------------------------- a slow node's Ray start

RAY_SAYS = ("Exception: The current node timed out during startup. This could happen because "
            "some of the raylet failed to startup or the GCS has become overloaded.")


def test_rays_fixed_raylet_wait_is_one_line_saying_what_to_try():
    from tuner.node.ray_start import startup_failure

    line = startup_failure("Traceback (most recent call last):\n  ...\n" + RAY_SAYS)
    assert line and "\n" not in line and "30 s" in line and "try again" in line
    assert startup_failure("ConnectionError: something else") is None


def test_a_local_driver_says_it_in_one_line(monkeypatch):
    import sys

    import tuner.fleet.dispatch as dispatch

    calls = []

    class SlowRay:
        def init(self, **kw):
            raise Exception(RAY_SAYS)

        def shutdown(self):
            calls.append("shutdown")

    monkeypatch.setitem(sys.modules, "ray", SlowRay())
    with pytest.raises(dispatch.DispatchError, match="Ray's fixed 30 s") as err:
        dispatch.RayDispatcher("local", platform="x8664")
    assert "\n" not in str(err.value) and calls == ["shutdown"]
