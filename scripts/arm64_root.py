"""A Debian bookworm arm64 root (Raspberry Pi OS's base) run under qemu-user: built once,
cached outside the repository, and the one place that enters it.

    python scripts/arm64_root.py [--root DIR]      # build (or finish building) the root

The build runs in stages, each finished by a marker file written last: a run killed in the
middle of debootstrap leaves no marker and the half-made root is removed and rebuilt; one
killed during the dependency install is resumed (pip skips what is already installed). The
deps marker holds a hash of the requirement list, so a changed pin reinstalls. Nothing is
used before its marker exists. Every command inside the root runs in a private mount
namespace (``unshare --mount``): the /proc, /sys, /dev and CPU-description bind mounts
vanish with it, and nothing is left mounted on the host.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = Path(os.environ.get("TUNER_ARM64_ROOT", "/var/cache/tuner/arm64-bookworm"))
MIRROR = "http://deb.debian.org/debian"
PACKAGES = "python3,python3-venv,python3-pip,python3-dev,g++,git,ca-certificates,procps"
VENV = "/opt/tuner-venv"            # inside the root: bookworm's pip refuses the system site
TREE = "/opt/tuner"                 # inside the root: the working tree, bind-mounted
EXTRAS = ("tvm", "litert", "dashboard", "test")
BOOTSTRAP_DONE = ".tuner-debootstrap-done"
DEPS_DONE = ".tuner-deps-done"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")  # this machine's (a proxy's CA may be in it)
CA_IN_ROOT = "/opt/host-ca.crt"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU = Path("/usr/bin/qemu-aarch64-static")

# What a Raspberry Pi 4 Model B shows (4x Cortex-A72, BCM2711): onnxruntime reads
# /proc/cpuinfo at import and crashes on qemu-user's x86 text, and our platform detection
# reads the board model. Values from a Pi 4's own /proc/cpuinfo.
PI4_CORE = """processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""
PI4_TAIL = """Hardware\t: BCM2835
Revision\t: c03114
Serial\t\t: 100000000000000a
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI4_MODEL = "Raspberry Pi 4 Model B Rev 1.4\0"
# qemu-user's CPU: its default ("max") offers SVE, i8mm and dot-product instructions a Pi 4
# lacks, and XNNPACK's int8 kernels for those gave wrong outputs here (LiteRT int8
# MobileNet: argmax agreeing with x86 on 0 of 16 inputs; with cortex-a72: 16 of 16,
# bit-identical). The Pi 4's own core is emulated instead: what a Pi would run.
QEMU_CPU = "cortex-a72"


class NotReady(RuntimeError):
    """Something this machine lacks to run an emulated arm64 root; the message is one line."""


def missing_prerequisite() -> str | None:
    """One line naming what is missing to run aarch64 binaries here, or None."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot and bind mounts): run it as root"
    for tool in ("debootstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} not found: apt-get install debootstrap util-linux coreutils"
    if not QEMU.exists():
        return f"{QEMU} not found: apt-get install qemu-user-static binfmt-support"
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
                       capture_output=True)
    if not (BINFMT / "register").exists():
        return (f"binfmt_misc is not mounted at {BINFMT} and could not be: "
                "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc")
    if not (BINFMT / "qemu-aarch64").exists() and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists() or "enabled" not in entry.read_text():
        return ("no binfmt_misc handler for aarch64: apt-get install binfmt-support "
                "qemu-user-static; update-binfmts --enable qemu-aarch64")
    return None


def reachable(host: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((host, port), timeout=10).close()
        return True
    except OSError:
        return False


def need_network(what: str, host: str, port: int) -> None:
    if not reachable(host, port):
        raise NotReady(f"no network: {what} needs {host}:{port} (the first build downloads "
                       "Debian packages and PyPI wheels; later runs use the cached root)")


def host_files_in(root: Path) -> None:
    """DNS, hosts and this machine's CA bundle, for pip inside the root."""
    for name in ("etc/resolv.conf", "etc/hosts"):
        shutil.copy(f"/{name}", root / name)
    if HOST_CA.exists():
        (root / "opt").mkdir(exist_ok=True)
        shutil.copy(HOST_CA, root / CA_IN_ROOT.lstrip("/"))


def pip_env(root: Path) -> dict[str, str]:
    return {"PIP_CERT": CA_IN_ROOT} if (root / CA_IN_ROOT.lstrip("/")).exists() else {}


def requirement_lines() -> list[str]:
    """The project's dependencies and the extras a fleet node uses, from pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in EXTRAS:
        lines += project["optional-dependencies"][extra]
    return lines


def deps_key() -> str:
    return hashlib.sha256("\n".join(requirement_lines()).encode()).hexdigest()[:16]


def is_ready(root: Path) -> bool:
    done = root / DEPS_DONE
    return done.exists() and done.read_text().strip() == deps_key()


def pi4_cpuinfo(cores: int = 4) -> str:
    return "\n".join(PI4_CORE.format(n=n) for n in range(cores)) + "\n" + PI4_TAIL


def identity_dir(root: Path) -> Path:
    """Host-side files bind-mounted over the root's CPU description and board model."""
    ident = root.parent / (root.name + "-pi4-identity")
    ident.mkdir(parents=True, exist_ok=True)
    (ident / "cpuinfo").write_text(pi4_cpuinfo())
    (ident / "model").write_text(PI4_MODEL)
    return ident


def chroot_command(root: Path, argv: list[str], *, tree: Path | None = None,
                   env: dict[str, str] | None = None) -> list[str]:
    """argv run inside the root, in its own mount namespace, as a Pi 4: qemu emulating a
    Cortex-A72, /proc, /sys and /dev bind-mounted, the Pi 4 CPU description over /proc/cpuinfo, the board model over
    /proc/device-tree/model, and (when given) the working tree at TREE."""
    ident = identity_dir(root)
    r = shlex.quote(str(root))
    mounts = [
        f"mount --rbind /proc {r}/proc", f"mount --rbind /sys {r}/sys",
        f"mount --rbind /dev {r}/dev",
        f"mount --bind {shlex.quote(str(ident / 'cpuinfo'))} {r}/proc/cpuinfo",
        f"mount -t tmpfs tmpfs {r}/tmp",
    ]
    # /proc/device-tree is a link into /sys/firmware/devicetree/base, absent on x86: a tmpfs
    # there carries the board model without touching the host's /sys.
    dt = f"{r}/run/tuner-firmware"
    mounts += [f"mkdir -p {dt} && mount -t tmpfs tmpfs {dt}",
               f"mkdir -p {dt}/devicetree/base",
               f"cp {shlex.quote(str(ident / 'model'))} {dt}/devicetree/base/model",
               f"mount --bind {dt} {r}/sys/firmware"]
    if tree is not None:
        mounts.append(f"mkdir -p {r}{TREE} && mount --bind {shlex.quote(str(tree))} {r}{TREE}")
    env = {"QEMU_CPU": QEMU_CPU, **(env or {})}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    inner = (f"exec env -i PATH={VENV}/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "
             f"LANG=C.UTF-8 {exports} " + " ".join(shlex.quote(a) for a in argv))
    script = " && ".join(mounts) + f" && exec chroot {r} /bin/sh -c {shlex.quote(inner)}"
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script]


def run_inside(root: Path, argv: list[str], **kw) -> None:
    cmd = chroot_command(root, argv, tree=kw.pop("tree", None), env=kw.pop("env", None))
    subprocess.run(cmd, check=True, **kw)


def debootstrap(root: Path, log) -> None:
    if (root / BOOTSTRAP_DONE).exists():
        return
    if root.exists():
        print(f"arm64 root: {root} was left half-made by a killed build; rebuilding it",
              file=log, flush=True)
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    need_network("debootstrap", MIRROR.split("/")[2], 80)
    t0 = time.monotonic()
    subprocess.run(["debootstrap", "--arch=arm64", "--variant=minbase",
                    f"--include={PACKAGES}", "bookworm", str(root), MIRROR],
                   check=True, stdout=log, stderr=subprocess.STDOUT)
    (root / BOOTSTRAP_DONE).write_text(f"{time.monotonic() - t0:.0f} s\n")


def install_deps(root: Path, log) -> None:
    if is_ready(root):
        return
    need_network("pip install", "pypi.org", 443)
    host_files_in(root)
    (root / "opt/requirements.txt").write_text("\n".join(requirement_lines()) + "\n")
    if not (root / VENV.lstrip("/") / "bin/python").exists():
        run_inside(root, ["/usr/bin/python3", "-m", "venv", VENV], stdout=log, stderr=log)
    t0 = time.monotonic()
    env = pip_env(root)
    run_inside(root, [f"{VENV}/bin/pip", "install", "--no-input", "--upgrade", "pip",
                      "setuptools>=77", "wheel"], env=env, stdout=log, stderr=log)
    run_inside(root, [f"{VENV}/bin/pip", "install", "--no-input", "-r",
                      "/opt/requirements.txt"], env=env, stdout=log, stderr=log)
    (root / DEPS_DONE).write_text(deps_key() + "\n")
    print(f"arm64 root: dependencies installed in {time.monotonic() - t0:.0f} s",
          file=log, flush=True)


def ensure_root(root: Path = DEFAULT_ROOT, log=sys.stderr) -> float:
    """Build whatever stage of the root is missing; returns the seconds it took (0 when
    cached). Raises NotReady (one line) when this machine cannot run it, and
    CalledProcessError when a stage failed (its output is in the log)."""
    problem = missing_prerequisite()
    if problem:
        raise NotReady(problem)
    if is_ready(root):
        return 0.0
    t0 = time.monotonic()
    debootstrap(root, log)
    install_deps(root, log)
    return time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    args = ap.parse_args(argv)
    try:
        took = ensure_root(args.root)
    except NotReady as e:
        print(f"arm64 root: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"arm64 root: a build step failed ({shlex.join(map(str, e.cmd))[:200]}); "
              "its output is above; run it again to resume", file=sys.stderr)
        return 1
    print(f"arm64 root ready at {args.root} ({'cached' if not took else f'built in {took:.0f} s'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
