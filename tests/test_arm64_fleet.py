"""The emulated arm64 node (scripts/arm64_fleet.py, scripts/arm64_root.py).

Fast, in the default suite: what is missing is one line and exit 2; a root a killed build
left half-made is never used (rebuilt, or its dependency stage resumed); the Pi 4 identity
is what platform detection reads as a Raspberry Pi 4.

Opt-in (``TUNER_ARM64_TEST=1``, root, qemu-user-static, network or a cached root): the
whole fleet, a study over an x86 head and the emulated arm64 node; 20+ minutes, so never
part of the default run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import arm64_fleet  # noqa: E402
import arm64_root  # noqa: E402


def one_line_exit(capsys, argv) -> tuple[int, list[str]]:
    rc = arm64_fleet.main(argv)
    return rc, capsys.readouterr().err.strip().splitlines()


def test_without_root_it_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(arm64_root.os, "geteuid", lambda: 1000)
    rc, err = one_line_exit(capsys, ["--out", str(tmp_path / "run")])
    assert rc == 2 and len(err) == 1 and "needs root" in err[0]
    assert not (tmp_path / "run").exists()  # nothing started, nothing written


def test_without_qemu_it_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(arm64_root.os, "geteuid", lambda: 0)
    monkeypatch.setattr(arm64_root.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(arm64_root, "QEMU", tmp_path / "qemu-aarch64-static")
    rc, err = one_line_exit(capsys, ["--out", str(tmp_path / "run")])
    assert rc == 2 and len(err) == 1 and "apt-get install qemu-user-static" in err[0]


def test_without_a_binfmt_handler_it_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(arm64_root.os, "geteuid", lambda: 0)
    monkeypatch.setattr(arm64_root.shutil, "which", lambda name: None
                        if name == "update-binfmts" else f"/usr/bin/{name}")
    (tmp_path / "qemu").write_text("")
    monkeypatch.setattr(arm64_root, "QEMU", tmp_path / "qemu")
    binfmt = tmp_path / "binfmt_misc"
    binfmt.mkdir()
    (binfmt / "register").write_text("")
    monkeypatch.setattr(arm64_root, "BINFMT", binfmt)
    assert "no binfmt_misc handler for aarch64" in arm64_root.missing_prerequisite()
    (binfmt / "qemu-aarch64").write_text("enabled\ninterpreter /usr/bin/qemu-aarch64-static\n")
    assert arm64_root.missing_prerequisite() is None


def test_a_half_built_root_is_rebuilt_never_used(tmp_path, monkeypatch):
    root = tmp_path / "arm64"
    (root / "usr/bin").mkdir(parents=True)  # what a killed debootstrap leaves
    (root / "usr/bin/leftover").write_text("")
    assert not arm64_root.is_ready(root)
    ran = []

    def fake_run(cmd, **kw):
        ran.append(cmd[0])
        if cmd[0] == "debootstrap":
            assert not root.exists()  # the half-made root was removed first
            (root / "etc").mkdir(parents=True)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(arm64_root.subprocess, "run", fake_run)
    monkeypatch.setattr(arm64_root, "reachable", lambda host, port: True)
    arm64_root.debootstrap(root, log=open(os.devnull, "w"))
    assert ran == ["debootstrap"] and (root / arm64_root.BOOTSTRAP_DONE).exists()
    assert not (root / "usr/bin/leftover").exists() and not arm64_root.is_ready(root)
    # a finished debootstrap is kept: the next run goes on with the dependencies
    arm64_root.debootstrap(root, log=open(os.devnull, "w"))
    assert ran == ["debootstrap"]


def test_the_deps_marker_is_written_last_and_names_the_pins(tmp_path, monkeypatch):
    root = tmp_path / "arm64"
    (root / "etc").mkdir(parents=True)
    (root / arm64_root.BOOTSTRAP_DONE).write_text("1 s\n")
    monkeypatch.setattr(arm64_root, "reachable", lambda host, port: True)
    monkeypatch.setattr(arm64_root, "host_files_in", lambda r: (r / "opt").mkdir(exist_ok=True))

    def killed(root_, argv, **kw):
        if "-r" in argv:
            raise subprocess.CalledProcessError(137, argv)  # killed mid-install

    monkeypatch.setattr(arm64_root, "run_inside", killed)
    with pytest.raises(subprocess.CalledProcessError):
        arm64_root.install_deps(root, log=open(os.devnull, "w"))
    assert not arm64_root.is_ready(root)
    monkeypatch.setattr(arm64_root, "run_inside", lambda *a, **kw: None)
    arm64_root.install_deps(root, log=open(os.devnull, "w"))
    assert arm64_root.is_ready(root)
    (root / arm64_root.DEPS_DONE).write_text("another-pin-set\n")  # pyproject changed
    assert not arm64_root.is_ready(root)


def test_no_network_for_the_first_build_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(arm64_root, "reachable", lambda host, port: False)
    with pytest.raises(arm64_root.NotReady, match="no network: debootstrap needs"):
        arm64_root.debootstrap(tmp_path / "arm64", log=open(os.devnull, "w"))


def test_the_pi4_identity_detects_as_a_pi4(tmp_path):
    from tests.test_platforms import write
    from tuner.machine.platforms import detect

    ident = arm64_root.identity_dir(tmp_path / "arm64")
    root = tmp_path / "tree"
    write(root, "/proc/cpuinfo", (ident / "cpuinfo").read_text())
    write(root, "/sys/firmware/devicetree/base/model", (ident / "model").read_text())
    write(root, "/proc/sys/kernel/arch", "x86_64\n")
    (tmp_path / "bin").mkdir()
    f = detect(root=root, path=str(tmp_path / "bin"), runtimes=False)
    assert (f.arch, f.cpu_model, f.cores, f.platform) == \
        ("aarch64", "ARM Cortex-A72", 4, "rpi4-emulated")


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(os.environ.get("TUNER_ARM64_TEST") != "1",
                    reason="the emulated arm64 fleet takes 20+ minutes: set TUNER_ARM64_TEST=1")
def test_a_study_over_an_x86_head_and_an_emulated_arm64_node(tmp_path):
    run = tmp_path / "run"
    out = subprocess.run([sys.executable, "scripts/arm64_fleet.py", "--trials", "2",
                          "--out", str(run)], cwd=ROOT, capture_output=True, text=True,
                         timeout=3500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    from experiments.records import read

    rows = [r for r in read(run).to_pylist() if r["state"] == "complete"]
    by_platform: dict[str, list[dict]] = {}
    for r in rows:
        by_platform.setdefault(r["platform"], []).append(json.loads(r["system"]))
    assert "rpi4-emulated" in by_platform and len(by_platform) == 2, by_platform.keys()
    for platform, systems in by_platform.items():
        emulated = platform == "rpi4-emulated"
        for s in systems:
            assert s["emulated"] is emulated and s["facts"]["emulated"] is emulated
            assert s["arch"] == ("aarch64" if emulated else "x86_64")
            assert s["python"].startswith("3.11.")
    assert "stopped: no process of the fleet left" in out.stdout
